//! The durable embedded backend of `kvkit`: the whole [`KvStore`](kvkit_core::KvStore) contract
//! in one SQLite file, so sessions, caches and rate-limit counters survive a restart, exact
//! across the threads of a process and across processes sharing the file.
//!
//! ```
//! use std::time::Duration;
//! use kvkit_core::{KvStore, KvStoreExt, PutOptions};
//! use kvkit_sqlite::{Durability, SqliteStore};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("kvkit-sqlite-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let store = SqliteStore::builder()
//!     .path(dir.join("kv.db"))
//!     .durability(Durability::Full)
//!     .open()
//!     .await?;
//! store.put_with_ttl("session:1", "data", Duration::from_secs(3600)).await?;
//! assert_eq!(store.increment("hits", 1, Default::default()).await?, 1);
//! assert!(store.get("session:1").await?.is_some());
//! # drop(store); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```
//!
//! # Opening
//!
//! [`SqliteStore::builder`] with a [`path`](SqliteBuilder::path) (or
//! [`in_memory`](SqliteBuilder::in_memory) for tests), or [`SqliteStore::open`] with a URL:
//! `sqlite:path/to/file.db`, `sqlite:///absolute/path.db`, `sqlite::memory:`, each optionally
//! with `?durability=normal` ([`SqliteBuilder::from_url`]).
//!
//! # Layout
//!
//! One `WITHOUT ROWID` table, `kv`, whose primary key is the key as TEXT: rows are stored in
//! key order, and SQLite's default BINARY collation compares keys with `memcmp`, which is the
//! byte order of their UTF-8 encoding that listings promise. Each row holds the value (BLOB),
//! the metadata (JSON text), the expiry (unix milliseconds, NULL for never) and a version. A
//! partial index holds the rows that expire, by expiry, and nothing for the others. The schema
//! version is `PRAGMA user_version`: a file of an older version is migrated forward when
//! opened, one of a newer version is refused with [`Error::Configuration`](kvkit_core::Error).
//!
//! - **Reads** are one primary-key lookup. **Listings** are a range of the primary key (`key >=
//!   prefix AND key < upper_bound(prefix)`, or `key > cursor_key`) with `ORDER BY key LIMIT`,
//!   O(log n + limit) however many other keys the table holds. Cursors are bound to their prefix
//!   ([`kvkit_core::backend::cursor`]).
//! - **Expired rows are invisible** to every read, listing and batch at once: each statement
//!   filters on the store's clock. The writer thread also **reclaims** them in the background,
//!   through the expiry index, at most 256 rows per short transaction (never a long write
//!   lock); their pages go to the file's free list and new rows reuse them, so the file does not
//!   grow with dead keys.
//! - **Versions** are numbers from a counter in the database, taken under the write lock, so
//!   every write gives its entry a version no entry of this file had before, across processes.
//!
//! # Durability
//!
//! The database runs in WAL mode. A write is acknowledged only after the transaction holding it
//! has committed. What it then survives is the [`Durability`]: with the default
//! [`Durability::Full`] (`synchronous=FULL`) a process crash **and** a power loss; with
//! [`Durability::Normal`] (`synchronous=NORMAL`) a process crash, but not necessarily a power
//! loss, which may lose the last commits (never the database's consistency).
//!
//! # Group commit
//!
//! Every write goes to one writer thread (a `std::thread`, not a tokio worker), which takes all
//! the requests waiting, runs them in one `BEGIN IMMEDIATE` transaction, each inside its own
//! `SAVEPOINT` so that one failing request (a condition that does not hold, a value that is not
//! a counter) is rolled back alone, commits once, and only then answers each caller. Under
//! concurrency, many writes share one commit and one sync, so durable write throughput grows
//! with the number of writers instead of being one `fsync` per write. When fewer requests are
//! waiting than the last commit held, the writer waits for more a little (a quarter of the last
//! commit's time, at most 2 ms): the callers it just answered are about to send their next
//! writes. A lone writer (whose last commit held one request) never waits.
//!
//! Reads go to a small pool of reader connections, each on its own thread (4 by default,
//! [`SqliteBuilder::readers`]). In WAL mode they never wait for the writer, nor it for them.
//! No SQLite call ever runs on the caller's thread or a tokio worker.
//!
//! **Cancellation**: dropping a call's future before the writer reaches its request means it is
//! never applied; once applied, it is committed whole. The connections belong to their threads,
//! so no cancelled future can leave one inside a transaction.
//!
//! # Several processes
//!
//! Processes (and stores) sharing one file are exact with each other: conditional writes and
//! put-if-absent are single statements, and an increment reads and writes, all inside `BEGIN
//! IMMEDIATE`, which takes the database's write lock before the transaction reads anything (the
//! "database is locked" failure of read-then-upgrade transactions cannot happen). A connection
//! waits up to the [busy timeout](SqliteBuilder::busy_timeout) (5 s) for another process's
//! lock; past it, the call fails with [`Error::Timeout`](kvkit_core::Error::Timeout). The file
//! must be on a local file system (WAL needs shared memory between the processes).
//!
//! # Errors
//!
//! SQLite's failures map to the contract's [`Error`](kvkit_core::Error) kinds: a file that is
//! not a database, and a schema from a newer version, to `Configuration`; a read-only file to
//! `PermissionDenied` (at open); a full disk (or a `max_page_count` limit) to a retryable
//! `Backend` error (kind `Unavailable`), whose transaction is rolled back: nothing acknowledged
//! is lost, and nothing of the failed batch is written; a lock held past the busy timeout to
//! `Timeout`. Keys never appear in errors (they may be credentials): SQLite's messages hold no
//! bound values, and the contract's errors show keys only as a [`RedactedKey`](kvkit_core::RedactedKey).

mod builder;
mod errors;
mod reader;
mod schema;
mod store;
mod writer;
mod writes;

pub use builder::{Durability, SqliteBuilder};
pub use store::SqliteStore;
