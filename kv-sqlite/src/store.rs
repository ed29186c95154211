//! The store: its threads, and the [`KvStore`] methods that validate input and hand the SQL to
//! them.

use std::fmt;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kvkit_core::backend::{cursor, unix_ms};
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result, Version, WriteCondition,
};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::builder::{Durability, Location, SqliteBuilder};
use crate::errors::{BACKEND, sqlite_error, stopped};
use crate::reader::{self, ReadFailure, ReadJob, ReadResult};
use crate::schema::{Role, connect};
use crate::writer::{Job, Pending, Writer};
use crate::writes::{self, Failure, RECLAIM_BATCH, Row, Txn};

/// A durable key-value store in one SQLite file, exact across threads and processes. Cheap to
/// clone: clones share the same threads and connections, which stop when the last clone is
/// dropped.
///
/// ```
/// use kvkit_core::{KvStore, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("kvkit-sqlite-doc-store-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("kv.db");
/// let store = kvkit_sqlite::SqliteStore::builder().path(&path).open().await?;
/// store.put("user:1", "Ada".into(), PutOptions::new()).await?;
/// drop(store);
/// // The data is in the file: a store opened on it again finds it.
/// let again = kvkit_sqlite::SqliteStore::builder().path(&path).open().await?;
/// assert_eq!(again.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
/// # drop(again); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Where reads go: the reader pool of a file database, or the writer of an in-memory one.
enum Reads {
    Pool(Sender<ReadJob>),
    Writer,
}

struct Inner {
    writes: Sender<Job>,
    reads: Reads,
    caps: Capabilities,
    clock: Arc<dyn Clock>,
    busy_timeout: Duration,
    location: Location,
    durability: Durability,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .field("durability", &self.inner.durability)
            .field("capabilities", &self.inner.caps)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// Starts a thread named `name` that opens its connection with `open`, reports how that went on
/// `opened`, and then runs `serve` on it.
fn spawn(
    name: &str,
    open: impl FnOnce() -> Result<Connection> + Send + 'static,
    serve: impl FnOnce(Connection) + Send + 'static,
) -> Result<oneshot::Receiver<Result<()>>> {
    let (opened, ready) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || match open() {
            Ok(conn) => {
                if opened.send(Ok(())).is_ok() {
                    serve(conn);
                }
            }
            Err(e) => {
                let _ = opened.send(Err(e));
            }
        })
        .map_err(|e| Error::backend(BACKEND, "could not start a SQLite thread", false, e))?;
    Ok(ready)
}

async fn ready(started: oneshot::Receiver<Result<()>>) -> Result<()> {
    started.await.map_err(|_| stopped("open"))?
}

impl SqliteStore {
    /// A builder to configure a store; see [`SqliteBuilder`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// use kvkit_core::KvStore;
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().open().await?;
    /// assert_eq!(store.capabilities().backend, "sqlite");
    /// # Ok(()) }
    /// ```
    pub fn builder() -> SqliteBuilder {
        SqliteBuilder::default()
    }

    /// Opens the store a `sqlite:` URL names (see [`SqliteBuilder::from_url`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// use kvkit_core::{KvStore, PutOptions};
    /// let store = kvkit_sqlite::SqliteStore::open("sqlite::memory:").await?;
    /// store.put("k", "v".into(), PutOptions::new()).await?;
    /// assert_eq!(store.get("k").await?.as_deref(), Some(&b"v"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Self> {
        SqliteBuilder::from_url(url)?.open().await
    }

    pub(crate) async fn start(builder: SqliteBuilder) -> Result<Self> {
        let Some(location) = builder.location.clone() else {
            return Err(Error::configuration(
                BACKEND,
                "a SQLite store needs a path (SqliteBuilder::path) or in_memory()",
            ));
        };
        let (durability, busy_timeout) = (builder.durability, builder.busy_timeout);
        let max_size = builder.max_size;
        let (writes, jobs) = mpsc::channel();
        let writer = {
            let (location, clock) = (location.clone(), builder.clock.clone());
            let reap_interval = builder.reap_interval;
            spawn(
                "kvkit-sqlite-writer",
                move || connect(&location, durability, busy_timeout, Role::Writer, max_size),
                move |conn| {
                    let writer = Writer {
                        conn,
                        clock,
                        reap_interval,
                    };
                    writer.run(&jobs);
                },
            )?
        };
        ready(writer).await?;
        let reads = match &location {
            Location::Memory => Reads::Writer,
            Location::File(_) => {
                let (reads, jobs) = mpsc::channel::<ReadJob>();
                let jobs = Arc::new(Mutex::new(jobs));
                let mut started = Vec::with_capacity(builder.readers);
                for _ in 0..builder.readers {
                    let (location, jobs) = (location.clone(), jobs.clone());
                    started.push(spawn(
                        "kvkit-sqlite-reader",
                        move || connect(&location, durability, busy_timeout, Role::Reader, None),
                        move |conn| reader::serve(&conn, &jobs),
                    )?);
                }
                for reader in started {
                    ready(reader).await?;
                }
                Reads::Pool(reads)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                writes,
                reads,
                caps: builder.caps,
                clock: builder.clock,
                busy_timeout,
                location,
                durability,
            }),
        })
    }

    /// How many rows the database holds, counting expired rows not yet reclaimed: what the
    /// background reclamation brings down to the live keys.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// use kvkit_core::{KvStore, PutOptions};
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().open().await?;
    /// store.put("k", "v".into(), PutOptions::new()).await?;
    /// assert_eq!(store.stored_entries().await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn stored_entries(&self) -> Result<usize> {
        self.read("count", reader::count).await
    }

    /// Deletes every row expired by the store's clock now, in transactions of at most 256 rows,
    /// and returns how many; what the writer thread also does in the background.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStoreExt, ManualClock};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = ManualClock::new();
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().clock(clock.clone()).open().await?;
    /// store.put_with_ttl("tmp", "v", Duration::from_secs(1)).await?;
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(store.purge_expired().await?, 1);
    /// assert_eq!(store.stored_entries().await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn purge_expired(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let now = self.now_ms();
            let deleted = self
                .write("purge expired rows", move |txn| {
                    Ok(writes::reclaim(txn.conn, now)?)
                })
                .await?;
            total += deleted;
            if deleted < RECLAIM_BATCH {
                return Ok(total);
            }
        }
    }

    fn now_ms(&self) -> i64 {
        ms(self.inner.clock.now())
    }

    /// Queues a write for the next group commit and waits for its answer.
    async fn write<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> std::result::Result<T, Failure> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Pending::new(operation, self.inner.busy_timeout, work, reply);
        self.inner
            .writes
            .send(Job::Write(Box::new(job)))
            .map_err(|_| stopped(operation))?;
        answer.await.map_err(|_| stopped(operation))?
    }

    /// Runs a read on a reader's connection and waits for its answer.
    async fn read<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> ReadResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let busy_timeout = self.inner.busy_timeout;
        let job: ReadJob = Box::new(move |conn| {
            if reply.is_closed() {
                return;
            }
            let result = work(conn).map_err(|failure| match failure {
                ReadFailure::Invalid(e) => e,
                ReadFailure::Sqlite(e) => sqlite_error(operation, busy_timeout, e),
            });
            let _ = reply.send(result);
        });
        let sent = match &self.inner.reads {
            Reads::Pool(pool) => pool.send(job).is_ok(),
            Reads::Writer => self.inner.writes.send(Job::Read(job)).is_ok(),
        };
        if !sent {
            return Err(stopped(operation));
        }
        answer.await.map_err(|_| stopped(operation))?
    }

    /// Validates a put made at `now` and makes its row.
    fn row(&self, key: &str, value: Bytes, options: &PutOptions, now: SystemTime) -> Result<Row> {
        let checked = self.inner.caps.check_put(key, value.len(), options, now)?;
        Ok(Row {
            key: key.to_owned(),
            value,
            expires_at: checked.expires_at(now).map(ms),
            metadata: checked.metadata_json,
        })
    }
}

/// An instant in unix milliseconds, as the table stores it (instants up to the year 9999, the
/// latest expiration allowed, fit with room to spare).
pub(crate) fn ms(at: SystemTime) -> i64 {
    i64::try_from(unix_ms(at)).unwrap_or(i64::MAX)
}

/// The number of a version this store issued, if `version` is one.
fn version_number(version: &Version) -> Option<i64> {
    version.as_u64().and_then(|n| i64::try_from(n).ok())
}

#[async_trait::async_trait]
impl KvStore for SqliteStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.caps.check_key(key)?;
        let (key, now) = (key.to_owned(), self.now_ms());
        self.read("get", move |conn| reader::get(conn, &key, now))
            .await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        let (key, now) = (key.to_owned(), self.now_ms());
        self.read("get_with_metadata", move |conn| {
            reader::get_entry(conn, &key, now)
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let now = self.inner.clock.now();
        let row = self.row(key, value, &options, now)?;
        let now = ms(now);
        let written = match options.condition {
            WriteCondition::Always => {
                return self.write("put", move |txn| writes::put(txn, &row)).await;
            }
            WriteCondition::IfAbsent => {
                self.write("put", move |txn| writes::put_if_absent(txn, &row, now))
                    .await?
            }
            WriteCondition::IfVersion(version) => match version_number(&version) {
                Some(expected) => {
                    self.write("put", move |txn| {
                        writes::put_if_version(txn, &row, expected, now)
                    })
                    .await?
                }
                // Not a version of this store: no entry has it.
                None => false,
            },
            _ => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "this write condition",
                });
            }
        };
        if written {
            Ok(())
        } else {
            Err(Error::condition_failed(key))
        }
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let caps = &self.inner.caps;
        caps.check_condition(&options.condition, "conditions in put_if_absent", false)?;
        let now = self.inner.clock.now();
        let row = self.row(key, value, &options, now)?;
        let now = ms(now);
        self.write("put_if_absent", move |txn| {
            writes::put_if_absent(txn, &row, now)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.caps.check_key(key)?;
        let key = key.to_owned();
        self.write("delete", move |txn| writes::delete(txn, &key))
            .await
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.inner.caps.check_key(key)?;
        let deleted = match version_number(version) {
            Some(expected) => {
                let (owned, now) = (key.to_owned(), self.now_ms());
                self.write("delete_if_version", move |txn| {
                    writes::delete_if_version(txn, &owned, expected, now)
                })
                .await?
            }
            None => false,
        };
        if deleted {
            Ok(())
        } else {
            Err(Error::condition_failed(key))
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.inner.caps.check_list(&options)?;
        let after = options
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, &options.prefix))
            .transpose()?;
        let (prefix, now) = (options.prefix, self.now_ms());
        self.read("list", move |conn| {
            reader::list(conn, &prefix, after.as_deref(), limit, now)
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let caps = &self.inner.caps;
        caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (keys, now) = (keys.to_vec(), self.now_ms());
        self.read("get_many", move |conn| reader::get_many(conn, &keys, now))
            .await
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let caps = &self.inner.caps;
        let now = self.inner.clock.now();
        let rows = items
            .into_iter()
            .map(|item| {
                caps.check_condition(&item.options.condition, "conditions in put_many", false)?;
                self.row(&item.key, item.value, &item.options, now)
            })
            .collect::<Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.write("put_many", move |txn| {
            rows.iter().try_for_each(|row| writes::put(txn, row))
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let caps = &self.inner.caps;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.to_vec();
        self.write("delete_many", move |txn| {
            keys.iter().try_for_each(|key| writes::delete(txn, key))
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        let caps = &self.inner.caps;
        caps.check_key(key)?;
        let now = self.inner.clock.now();
        let expiry = caps.check_expiry(options.expiry_on_create, now)?;
        let expires_at = caps.expires_at(expiry, now).map(ms);
        let (key, now) = (key.to_owned(), ms(now));
        self.write("increment", move |txn| {
            writes::increment(txn, &key, delta, expires_at, now)
        })
        .await
    }
}
