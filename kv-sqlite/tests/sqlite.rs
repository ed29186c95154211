//! Behaviour specific to the SQLite backend: bad files and full disks give typed errors and lose
//! nothing acknowledged, another process's lock is waited for and then reported, expired rows
//! are reclaimed in the background and their pages reused, and cancelled calls never leave a
//! write half applied.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TempDir;
use kvkit_core::{
    Capabilities, Error, ErrorKind, KvStore, KvStoreExt, ManualClock, PutItem, PutOptions,
};
use kvkit_patterns::{Session, SessionManager};
use kvkit_sqlite::SqliteStore;
use kvkit_testsuite::secrets::assert_hides_session_id;

async fn open(path: &Path) -> kvkit_core::Result<SqliteStore> {
    SqliteStore::builder().path(path).open().await
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("a raw connection")
}

fn integrity(path: &Path) -> String {
    raw(path)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = TempDir::new();
    let path = dir.path().join("notes.txt");
    let text = "not a database, but somebody's notes\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    assert!(
        err.to_string()
            .contains("not name a usable SQLite database"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_an_older_one_migrated() {
    let dir = TempDir::new();
    let newer = dir.path().join("newer.db");
    raw(&newer).pragma_update(None, "user_version", 99).unwrap();
    let err = open(&newer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    assert!(err.to_string().contains("schema version 99"), "{err}");

    // Version 0: a SQLite file this store never set up, here with a table of its own.
    let older = dir.path().join("older.db");
    raw(&older)
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('kept');")
        .unwrap();
    let store = open(&older).await.unwrap();
    store.put("k", "v".into(), PutOptions::new()).await.unwrap();
    drop(store);
    let conn = raw(&older);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let note: String = conn
        .query_row("SELECT body FROM notes", [], |row| row.get(0))
        .unwrap();
    assert_eq!(note, "kept");
    drop(conn);
    let store = open(&older).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Undoes `chattr +i` on drop, so the directory can be removed.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

fn writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

#[tokio::test]
async fn a_read_only_file_is_refused_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let path = dir.path().join("kv.db");
    let store = open(&path).await.unwrap();
    store.put("k", "v".into(), PutOptions::new()).await.unwrap();
    drop(store);
    // Once the store's connections are gone, the last connection to close checkpoints the WAL
    // into the file and removes it. Which one is last is up to the threads (a read-only reader
    // closing last leaves the WAL), so a connection of the test's own reads and closes last.
    let wal = path.with_extension("db-wal");
    assert!(
        eventually(async || {
            let conn = raw(&path);
            let _: i64 = conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            drop(conn);
            !wal.exists()
        })
        .await,
        "the WAL outlived the store"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Root ignores permissions; the immutable attribute stops it (where the file system has one).
    let mut _immutable = None;
    if writable(&path) {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status();
        if status.is_ok_and(|s| s.success()) {
            _immutable = Some(Immutable(&path));
        }
    }
    if writable(&path) {
        eprintln!("SKIPPED a_read_only_file_is_refused_at_open: this user can write any file");
        return;
    }
    let err = open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    drop(_immutable);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(&path).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// A full disk, emulated with a size limit (`max_page_count`): mounting a small tmpfs needs
/// privileges a test cannot assume, and SQLite reports both as `SQLITE_FULL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_and_loses_nothing_acknowledged() {
    let dir = TempDir::new();
    let path = dir.path().join("kv.db");
    let store = SqliteStore::builder()
        .path(&path)
        .max_size(256 * 1024)
        .open()
        .await
        .unwrap();
    let value = vec![b'x'; 4000];
    let mut acked = Vec::new();
    let err = loop {
        // Eight writes at once, so that some fail inside a shared transaction.
        let keys: Vec<String> = (acked.len()..acked.len() + 8)
            .map(|i| format!("k{i:04}"))
            .collect();
        let results = futures_util::future::join_all(
            keys.iter()
                .map(|k| store.put(k, value.clone().into(), PutOptions::new())),
        )
        .await;
        let mut failed = None;
        for (key, result) in keys.into_iter().zip(results) {
            match result {
                Ok(()) => acked.push(key),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            break e;
        }
        assert!(acked.len() < 1000, "the size limit never hit");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    let session_like = "session:0f8c2a2e-7d1b-4b3a-9a55-2f1c6e9d8b77";
    let too_big = vec![b'x'; 300 * 1024];
    let err = store
        .put(session_like, too_big.into(), PutOptions::new())
        .await
        .unwrap_err();
    assert_hides_session_id(&err, Some("0f8c2a2e-7d1b-4b3a-9a55-2f1c6e9d8b77"));
    for key in &acked {
        assert_eq!(
            store.get(key).await.unwrap().as_deref(),
            Some(&value[..]),
            "{key}"
        );
    }
    // Deleting frees pages, and writes reuse them.
    store.delete_many(&acked[..8]).await.unwrap();
    store
        .put("after", value.clone().into(), PutOptions::new())
        .await
        .unwrap();
    drop(store);

    let store = open(&path).await.unwrap();
    for key in &acked[8..] {
        assert!(store.get(key).await.unwrap().is_some(), "{key} lost");
    }
    assert!(store.get("after").await.unwrap().is_some());
    assert_eq!(store.get(session_like).await.unwrap(), None);
    assert_eq!(
        store.list_stream("k").count_keys().await,
        acked.len() - 8,
        "a failed write left a row"
    );
    drop(store);
    assert_eq!(integrity(&path), "ok");
}

/// Counting a listing's keys.
trait CountKeys {
    async fn count_keys(self) -> usize;
}

impl<S: futures_util::Stream<Item = kvkit_core::Result<kvkit_core::KeyInfo>>> CountKeys for S {
    async fn count_keys(self) -> usize {
        use futures_util::TryStreamExt;
        self.try_collect::<Vec<_>>().await.unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_lock_is_waited_for_then_reported_and_reads_go_on() {
    let dir = TempDir::new();
    let path = dir.path().join("kv.db");
    let store = SqliteStore::builder()
        .path(&path)
        .busy_timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    store
        .put("k", "before".into(), PutOptions::new())
        .await
        .unwrap();
    // Another connection (as another process would) holds the write lock.
    let other = raw(&path);
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store
        .put("k", "during".into(), PutOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                backend: "sqlite",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // Readers do not wait for the lock.
    assert_eq!(
        store.get("k").await.unwrap().as_deref(),
        Some(&b"before"[..])
    );
    other.execute_batch("COMMIT").unwrap();
    store
        .put("k", "after".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        store.get("k").await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

/// Waits, up to a generous bound, until `done` holds: the store's threads (which reclaim
/// expired rows, and close the connections of a dropped store) run on their own, so there is
/// nothing to await.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn page_count(path: &Path) -> i64 {
    raw(path)
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_reclaimed_in_the_background_and_their_pages_reused() {
    let dir = TempDir::new();
    let path = dir.path().join("kv.db");
    let clock = ManualClock::new();
    let store = SqliteStore::builder()
        .path(&path)
        .clock(clock.clone())
        .reap_interval(Duration::from_millis(10))
        .open()
        .await
        .unwrap();
    let expiring = |round: usize| -> Vec<PutItem> {
        (0..1000)
            .map(|i| {
                PutItem::new(format!("tmp:{round}:{i:04}"), vec![b'v'; 200])
                    .options(PutOptions::new().ttl(Duration::from_secs(1)))
            })
            .collect()
    };
    let permanent = (0..10)
        .map(|i| PutItem::new(format!("keep:{i}"), "v"))
        .collect();
    store.put_many(permanent).await.unwrap();
    let mut first_pages = 0;
    for round in 0..4 {
        store.put_many(expiring(round)).await.unwrap();
        assert_eq!(store.stored_entries().await.unwrap(), 1010);
        if round == 0 {
            first_pages = page_count(&path);
        }
        clock.advance(Duration::from_millis(1500));
        assert!(
            eventually(async || store.stored_entries().await.unwrap() == 10).await,
            "expired rows still held in round {round}"
        );
        assert_eq!(store.list_stream("").count_keys().await, 10);
    }
    // Each generation fits in the pages the one before freed (give or take a page of the
    // b-trees' shape): without reuse the file would hold four times as many.
    let pages = page_count(&path);
    assert!(
        pages <= first_pages + first_pages / 4,
        "the file grew from {first_pages} to {pages} pages instead of reusing free ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_are_applied_whole_or_not_at_all() {
    let dir = TempDir::new();
    let store = open(&dir.path().join("kv.db")).await.unwrap();
    let batches = 200;
    let tasks: Vec<_> = (0..batches)
        .map(|b| {
            let store = store.clone();
            tokio::spawn(async move {
                let items = (0..5)
                    .map(|i| PutItem::new(format!("b{b:03}:{i}"), "v"))
                    .collect();
                store.put_many(items).await
            })
        })
        .collect();
    // Cancel every other call at once, while most are still queued or in flight.
    let mut kept = Vec::new();
    for (b, task) in tasks.into_iter().enumerate() {
        if b % 2 == 0 {
            task.abort();
        } else {
            kept.push(task);
        }
    }
    for task in kept {
        task.await.unwrap().unwrap();
    }
    let mut applied = 0;
    for b in 0..batches {
        let keys: Vec<String> = (0..5).map(|i| format!("b{b:03}:{i}")).collect();
        let present = store
            .get_many(&keys)
            .await
            .unwrap()
            .iter()
            .filter(|v| v.is_some())
            .count();
        assert!(
            present == 0 || present == 5,
            "batch {b} half applied: {present} of 5"
        );
        if b % 2 == 1 {
            assert_eq!(present, 5, "an awaited batch is missing");
        }
        applied += usize::from(present == 5);
    }
    assert!(applied >= batches / 2);
    // The store goes on working.
    store
        .put("after", "v".into(), PutOptions::new())
        .await
        .unwrap();
    assert!(store.get("after").await.unwrap().is_some());
}

#[tokio::test]
async fn a_refused_session_write_hides_the_id() {
    let caps = Capabilities::new("sqlite").with_max_value_bytes(16);
    let store = SqliteStore::builder()
        .in_memory()
        .capabilities(caps)
        .open()
        .await
        .unwrap();
    let sessions = SessionManager::<_, Session>::new(store);
    let session = Session {
        user_id: "u1".into(),
        email: "ada@example.com".into(),
        role: "admin".into(),
        created_at: std::time::UNIX_EPOCH,
    };
    let error = sessions.create(&session).await.unwrap_err();
    assert!(matches!(error, Error::ValueTooLarge { .. }), "{error:?}");
    assert_hides_session_id(&error, None);
}

/// Concurrent writes share commits: 64 puts at once leave far fewer WAL frames than the two
/// (the row's leaf page and the version counter's) that each would write in a commit of its
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let dir = TempDir::new();
    let path = dir.path().join("kv.db");
    let store = open(&path).await.unwrap();
    let wal = path.with_extension("db-wal");
    let frames = || {
        let bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
        // A 32-byte header, then frames of a 24-byte header and a 4096-byte page.
        bytes.saturating_sub(32) / (24 + 4096)
    };
    let before = frames();
    let writes = (0..64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put(&format!("k{i:02}"), "v".into(), PutOptions::new())
                .await
        })
    });
    for write in futures_util::future::join_all(writes).await {
        write.unwrap().unwrap();
    }
    let written = frames() - before;
    println!("64 concurrent puts wrote {written} WAL frames");
    assert!(written < 64, "{written} frames: the puts were not grouped");
    assert_eq!(store.stored_entries().await.unwrap(), 64);
}

/// A prefix ending in a multi-byte character has an upper bound that is not UTF-8 (its last
/// byte incremented); the range still holds exactly the keys with the prefix, in byte order,
/// NUL characters included.
#[tokio::test]
async fn listing_ranges_hold_multi_byte_and_nul_keys() {
    let store = SqliteStore::builder().in_memory().open().await.unwrap();
    let keys = [
        "é",
        "é\u{0}",
        "é\u{0}a",
        "éa",
        "é\u{10ffff}",
        "ê",
        "e\u{301}",
        "f",
        "\u{0}",
    ];
    for key in keys {
        store.put(key, key.into(), PutOptions::new()).await.unwrap();
    }
    let listed = |prefix: &'static str| {
        let store = store.clone();
        async move {
            let page = store
                .list(kvkit_core::ListOptions::new().prefix(prefix))
                .await
                .unwrap();
            page.keys.into_iter().map(|k| k.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("é").await,
        ["é", "é\u{0}", "é\u{0}a", "éa", "é\u{10ffff}"]
    );
    assert_eq!(listed("é\u{0}").await, ["é\u{0}", "é\u{0}a"]);
    assert_eq!(listed("\u{0}").await, ["\u{0}"]);
    let all = listed("").await;
    let mut sorted: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    for key in keys {
        assert_eq!(
            store.get(key).await.unwrap().as_deref(),
            Some(key.as_bytes())
        );
    }
}
