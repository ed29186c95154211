//! The SQL of every write, run by the writer thread inside its `BEGIN IMMEDIATE` transaction.
//!
//! Each function is one request's work. Conditions are part of the statement (`UPDATE … WHERE
//! version = ?`, an UPSERT whose update only replaces an expired row), so a request needs no
//! read before its write but for an increment, whose read and write are exact all the same: the
//! transaction holds the database's write lock from `BEGIN IMMEDIATE` on, against this
//! process's other writes and every other process's.

use bytes::Bytes;
use kvkit_core::Error;
use kvkit_core::backend::add_to_counter;
use rusqlite::{Connection, OptionalExtension, params};

/// A failure of one request: refused by the contract, or by SQLite.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request's condition did not hold, or its counter is not one: nothing was written.
    Refused(Error),
    /// SQLite failed; the transaction may be gone with it.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Refused(e)
    }
}

/// What a request sees of the transaction it runs in.
pub(crate) struct Txn<'c> {
    pub(crate) conn: &'c Connection,
    /// The version the next written entry gets; the writer stores it back before committing.
    pub(crate) next_version: i64,
}

impl Txn<'_> {
    /// A fresh version for an entry written now: versions only grow, across processes too, as
    /// the counter lives in the database and changes under the write lock.
    fn version(&mut self) -> i64 {
        let version = self.next_version;
        self.next_version += 1;
        version
    }
}

/// An entry to write, validated.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) value: Bytes,
    pub(crate) metadata: Option<String>,
    /// Unix milliseconds; `None` for never.
    pub(crate) expires_at: Option<i64>,
}

/// The condition that selects a live row: one that never expires or expires after `?now`.
macro_rules! live {
    ($now:literal) => {
        concat!("(expires_at IS NULL OR expires_at > ", $now, ")")
    };
}

const UPSERT: &str = "INSERT INTO kv (key, value, metadata, expires_at, version) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
     metadata = excluded.metadata, expires_at = excluded.expires_at, version = excluded.version";

/// Inserts, or replaces only a row that has expired by `?6`.
const INSERT_IF_ABSENT: &str = "INSERT INTO kv (key, value, metadata, expires_at, version) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
     metadata = excluded.metadata, expires_at = excluded.expires_at, version = excluded.version \
     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?6";

/// Writes `row` whatever was there.
pub(crate) fn put(txn: &mut Txn<'_>, row: &Row) -> Result<(), Failure> {
    let version = txn.version();
    txn.conn.prepare_cached(UPSERT)?.execute(params![
        row.key,
        &row.value[..],
        row.metadata,
        row.expires_at,
        version
    ])?;
    Ok(())
}

/// Writes `row` only if its key is absent or expired at `now`; returns whether it wrote.
pub(crate) fn put_if_absent(txn: &mut Txn<'_>, row: &Row, now: i64) -> Result<bool, Failure> {
    let version = txn.version();
    let changed = txn.conn.prepare_cached(INSERT_IF_ABSENT)?.execute(params![
        row.key,
        &row.value[..],
        row.metadata,
        row.expires_at,
        version,
        now
    ])?;
    Ok(changed == 1)
}

/// Writes `row` only if its key is live at `now` with `expected` as its version.
pub(crate) fn put_if_version(
    txn: &mut Txn<'_>,
    row: &Row,
    expected: i64,
    now: i64,
) -> Result<bool, Failure> {
    let version = txn.version();
    let sql = concat!(
        "UPDATE kv SET value = ?2, metadata = ?3, expires_at = ?4, version = ?5 ",
        "WHERE key = ?1 AND version = ?6 AND ",
        live!("?7")
    );
    let changed = txn.conn.prepare_cached(sql)?.execute(params![
        row.key,
        &row.value[..],
        row.metadata,
        row.expires_at,
        version,
        expected,
        now
    ])?;
    Ok(changed == 1)
}

/// Deletes `key`, present or not.
pub(crate) fn delete(txn: &mut Txn<'_>, key: &str) -> Result<(), Failure> {
    txn.conn
        .prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Deletes `key` only if it is live at `now` with `expected` as its version.
pub(crate) fn delete_if_version(
    txn: &mut Txn<'_>,
    key: &str,
    expected: i64,
    now: i64,
) -> Result<bool, Failure> {
    let sql = concat!(
        "DELETE FROM kv WHERE key = ?1 AND version = ?2 AND ",
        live!("?3")
    );
    let changed = txn
        .conn
        .prepare_cached(sql)?
        .execute(params![key, expected, now])?;
    Ok(changed == 1)
}

/// Adds `delta` to the counter at `key` (absent or expired at `now`: created with `delta`,
/// no metadata and `expires_at`); an existing counter keeps its metadata and expiry.
pub(crate) fn increment(
    txn: &mut Txn<'_>,
    key: &str,
    delta: i64,
    expires_at: Option<i64>,
    now: i64,
) -> Result<i64, Failure> {
    let sql = concat!("SELECT value FROM kv WHERE key = ?1 AND ", live!("?2"));
    let current: Option<Vec<u8>> = txn
        .conn
        .prepare_cached(sql)?
        .query_row(params![key, now], |row| row.get(0))
        .optional()?;
    let Some(current) = current else {
        let row = Row {
            key: key.to_owned(),
            value: Bytes::from(delta.to_string()),
            metadata: None,
            expires_at,
        };
        put(txn, &row)?;
        return Ok(delta);
    };
    let next = add_to_counter(key, &current, delta)?;
    let version = txn.version();
    txn.conn
        .prepare_cached("UPDATE kv SET value = ?2, version = ?3 WHERE key = ?1")?
        .execute(params![key, next.to_string().as_bytes(), version])?;
    Ok(next)
}

/// The most expired rows one reclamation deletes in one transaction, so that it never holds
/// the write lock for long.
pub(crate) const RECLAIM_BATCH: usize = 256;

/// Deletes up to [`RECLAIM_BATCH`] rows expired at `now`, found through the expiry index;
/// returns how many. Their pages go to the file's free list, which later writes reuse.
pub(crate) fn reclaim(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM kv WHERE key IN \
         (SELECT key FROM kv WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    )?
    .execute(params![now, RECLAIM_BATCH])
}
