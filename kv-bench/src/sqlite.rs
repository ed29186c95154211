//! The SQLite backend against raw `rusqlite` used the way an async service would: a pool of
//! connections driven through `spawn_blocking`, the same pragmas (WAL, `synchronous=FULL`, a
//! busy timeout), prepared statements, one transaction per write. Both databases hold 1M keys,
//! in files of a temporary directory on the local disk.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvkit_core::{KvStore, ListOptions, ManualClock, PutItem, PutOptions};
use kvkit_sqlite::{Durability, SqliteStore};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Semaphore;

use crate::{Rng, alternate, line, median, throughput};

const KEYS: usize = 1_000_000;
const VALUE_BYTES: usize = 100;
const CONCURRENCY: usize = 64;
/// Connections in the raw pool, and reader connections of the store.
const CONNECTIONS: usize = 4;
const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 5;
const LISTS: usize = 2000;
const EXPIRING: usize = 100_000;

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

fn value(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; VALUE_BYTES]
}

/// A directory for the database files, removed at the end.
struct BenchDir(PathBuf);

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The raw side: a pool of connections, each used by one `spawn_blocking` call at a time; a
/// caller waits (asynchronously, as with deadpool) for a free one.
#[derive(Clone)]
struct Raw {
    pool: Arc<Mutex<Vec<Connection>>>,
    free: Arc<Semaphore>,
}

impl Raw {
    fn open(path: &Path) -> Self {
        let pool = (0..CONNECTIONS)
            .map(|_| {
                let conn = Connection::open(path).expect("raw open");
                conn.busy_timeout(Duration::from_secs(5))
                    .expect("busy_timeout");
                conn.pragma_update(None, "journal_mode", "WAL")
                    .expect("WAL");
                conn.pragma_update(None, "synchronous", "FULL")
                    .expect("synchronous");
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, \
                     value BLOB NOT NULL) WITHOUT ROWID",
                )
                .expect("raw table");
                conn
            })
            .collect();
        Self {
            pool: Arc::new(Mutex::new(pool)),
            free: Arc::new(Semaphore::new(CONNECTIONS)),
        }
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> T {
        let pool = self.pool.clone();
        let permit = self.free.clone().acquire_owned().await.expect("the pool");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.lock().expect("pool").pop().expect("a free connection");
            let out = f(&conn);
            pool.lock().expect("pool").push(conn);
            out
        })
        .await
        .expect("blocking task")
    }

    async fn get(&self, key: String) -> Option<Vec<u8>> {
        self.with(move |conn| {
            conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .expect("prepare")
                .query_row([key], |row| row.get(0))
                .optional()
                .expect("raw get")
        })
        .await
    }

    async fn put(&self, key: String, value: Vec<u8>) {
        self.with(move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
                .expect("prepare")
                .execute(rusqlite::params![key, value])
                .expect("raw put")
        })
        .await;
    }

    async fn list(&self, prefix: String, upper: String) -> usize {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT 101",
                )
                .expect("prepare");
            let keys: Vec<String> = stmt
                .query_map([prefix, upper], |row| row.get(0))
                .expect("raw list")
                .collect::<Result<_, _>>()
                .expect("raw list rows");
            keys.len()
        })
        .await
    }
}

/// The database's size once its WAL is checkpointed into it.
fn file_bytes(path: &Path) -> u64 {
    let conn = Connection::open(path).expect("open for checkpoint");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    std::fs::metadata(path).expect("file size").len()
}

pub(crate) async fn run() {
    let dir =
        BenchDir(std::env::temp_dir().join(format!("kv-bench-sqlite-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("bench directory");
    let ours_path = dir.0.join("ours.db");
    let raw_path = dir.0.join("raw.db");
    let store = SqliteStore::builder()
        .path(&ours_path)
        .durability(Durability::Full)
        .readers(CONNECTIONS)
        .open()
        .await
        .expect("store");
    let raw = Raw::open(&raw_path);

    // Load 1M keys into both: ours in batches from several tasks, raw in large transactions.
    let start = Instant::now();
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for chunk in (t * KEYS / 4..(t + 1) * KEYS / 4)
                    .collect::<Vec<_>>()
                    .chunks(1000)
                {
                    let items = chunk
                        .iter()
                        .map(|&i| PutItem::new(key(i), value(i)))
                        .collect();
                    store.put_many(items).await.expect("load");
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.await.expect("loader");
    }
    line(
        "sqlite_load_1m_s",
        format!("{:.1}", start.elapsed().as_secs_f64()),
    );
    raw.with(|conn| {
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
            let tx = conn.unchecked_transaction().expect("begin");
            {
                let mut stmt = tx
                    .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
                    .expect("prepare");
                for &i in chunk {
                    stmt.execute(rusqlite::params![key(i), value(i)])
                        .expect("raw load");
                }
            }
            tx.commit().expect("commit");
        }
    })
    .await;

    // Point reads from 64 tasks.
    let (ours_get, raw_get, get_ratio) = alternate(
        ROUNDS,
        || {
            let store = store.clone();
            throughput(CONCURRENCY, ROUND, KEYS, move |_, i| {
                let store = store.clone();
                async move {
                    black_box(store.get(&key(i)).await.expect("get"));
                }
            })
        },
        || {
            let raw = raw.clone();
            throughput(CONCURRENCY, ROUND, KEYS, move |_, i| {
                let raw = raw.clone();
                async move {
                    black_box(raw.get(key(i)).await);
                }
            })
        },
    )
    .await;
    line("sqlite_get_ops_c64", format!("{ours_get:.0}"));
    line("sqlite_raw_get_ops_c64", format!("{raw_get:.0}"));
    line("sqlite_get_ratio_vs_raw_c64", format!("{get_ratio:.2}"));

    // Durable puts (synchronous=FULL) from 64 tasks: ours share group commits, raw commits
    // (and syncs) each put on its own.
    let (ours_put, raw_put, put_ratio) = alternate(
        ROUNDS,
        || {
            let store = store.clone();
            throughput(CONCURRENCY, ROUND, KEYS, move |_, i| {
                let store = store.clone();
                async move {
                    let v = Bytes::from(value(i + 1));
                    store.put(&key(i), v, PutOptions::new()).await.expect("put");
                }
            })
        },
        || {
            let raw = raw.clone();
            throughput(CONCURRENCY, ROUND, KEYS, move |_, i| {
                let raw = raw.clone();
                async move { raw.put(key(i), value(i + 1)).await }
            })
        },
    )
    .await;
    line("sqlite_durable_put_ops_c64", format!("{ours_put:.0}"));
    line("sqlite_raw_durable_put_ops_c64", format!("{raw_put:.0}"));
    line(
        "sqlite_durable_put_ratio_vs_raw_c64",
        format!("{put_ratio:.2}"),
    );

    // Listing 100 keys under a prefix, with 1M keys stored.
    let mut rng = Rng::new(0x5eed);
    let (mut ours_us, mut raw_us) = (Vec::with_capacity(LISTS), Vec::with_capacity(LISTS));
    for _ in 0..LISTS {
        let n = rng.below(KEYS / 100);
        let prefix = format!("key:{n:06}");
        let start = Instant::now();
        let page = store
            .list(ListOptions::new().prefix(prefix.clone()))
            .await
            .expect("list");
        ours_us.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(page.keys.len(), 100);
        let start = Instant::now();
        let listed = raw.list(prefix, format!("key:{:06}", n + 1)).await;
        raw_us.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(listed, 100);
    }
    line("sqlite_list_1m_p50_us", format!("{:.0}", median(ours_us)));
    line(
        "sqlite_raw_list_1m_p50_us",
        format!("{:.0}", median(raw_us)),
    );

    // File size per key, each WAL checkpointed into its database.
    let ours_bytes = file_bytes(&ours_path) as f64 / KEYS as f64;
    let raw_bytes = file_bytes(&raw_path) as f64 / KEYS as f64;
    line("sqlite_file_bytes_per_key", format!("{ours_bytes:.0}"));
    line("sqlite_raw_file_bytes_per_key", format!("{raw_bytes:.0}"));
    drop((store, raw));

    // Expired rows reclaimed in the background, without reads.
    let clock = ManualClock::new();
    let store = SqliteStore::builder()
        .path(dir.0.join("expiry.db"))
        .clock(clock.clone())
        .reap_interval(Duration::from_millis(100))
        .open()
        .await
        .expect("store");
    for chunk in (0..EXPIRING).collect::<Vec<_>>().chunks(1000) {
        let items = chunk
            .iter()
            .map(|&i| {
                PutItem::new(key(i), value(i))
                    .options(PutOptions::new().ttl(Duration::from_secs(1)))
            })
            .collect();
        store.put_many(items).await.expect("expiring load");
    }
    clock.advance(Duration::from_secs(2));
    let start = Instant::now();
    let mut left = store.stored_entries().await.expect("count");
    while left > 0 && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = store.stored_entries().await.expect("count");
    }
    let reclaimed = 1.0 - left as f64 / EXPIRING as f64;
    line("sqlite_expired_reclaimed", format!("{reclaimed:.3}"));
    line(
        "sqlite_expired_reclaim_100k_ms",
        format!("{:.0}", start.elapsed().as_secs_f64() * 1e3),
    );
}
