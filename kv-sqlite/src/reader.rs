//! The reader threads, and the SQL of every read.
//!
//! A file database is read through a small pool of connections, each on its own thread, taking
//! jobs from one queue. In WAL mode a reader sees the last commit when its statement starts and
//! never waits for the writer, nor the writer for it.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use kvkit_core::backend::{cursor, from_unix_ms};
use kvkit_core::{Entry, Error, KeyInfo, ListPage, Version};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

/// One read: runs on a reader's connection and answers its caller itself.
pub(crate) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Serves jobs from the shared queue on `conn` until every sender is gone.
pub(crate) fn serve(conn: &Connection, jobs: &Arc<Mutex<Receiver<ReadJob>>>) {
    loop {
        // The lock is held only to take one job; the job runs without it.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(conn),
            Err(_) => break,
        }
    }
}

/// A read's failure: the contract's error, or SQLite's.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    Invalid(Error),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for ReadFailure {
    fn from(e: rusqlite::Error) -> Self {
        ReadFailure::Sqlite(e)
    }
}

pub(crate) type ReadResult<T> = Result<T, ReadFailure>;

const GET: &str = "SELECT value FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// The value of `key`, if live at `now`.
pub(crate) fn get(conn: &Connection, key: &str, now: i64) -> ReadResult<Option<Bytes>> {
    let value: Option<Vec<u8>> = conn
        .prepare_cached(GET)?
        .query_row(params![key, now], |row| row.get(0))
        .optional()?;
    Ok(value.map(Bytes::from))
}

/// The values of `keys`, each if live at `now`, read in one transaction (one snapshot).
pub(crate) fn get_many(
    conn: &Connection,
    keys: &[String],
    now: i64,
) -> ReadResult<Vec<Option<Bytes>>> {
    let tx = conn.unchecked_transaction()?;
    let mut stmt = tx.prepare_cached(GET)?;
    let values = keys
        .iter()
        .map(|key| {
            let value: Option<Vec<u8>> = stmt
                .query_row(params![key, now], |row| row.get(0))
                .optional()?;
            Ok(value.map(Bytes::from))
        })
        .collect::<ReadResult<Vec<_>>>()?;
    drop(stmt);
    tx.finish()?;
    Ok(values)
}

/// The metadata column parsed back into JSON.
fn metadata(key: &str, json: Option<String>) -> ReadResult<Option<serde_json::Value>> {
    json.map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| ReadFailure::Invalid(Error::decode(key, e)))
}

fn expiration(expires_at: Option<i64>) -> Option<SystemTime> {
    expires_at.map(|ms| from_unix_ms(u64::try_from(ms).unwrap_or(0)))
}

/// The entry at `key` with its metadata, expiration and version, if live at `now`.
pub(crate) fn get_entry(conn: &Connection, key: &str, now: i64) -> ReadResult<Option<Entry>> {
    let row = conn
        .prepare_cached(
            "SELECT value, metadata, expires_at, version FROM kv \
             WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )?
        .query_row(params![key, now], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<i64>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((value, json, expires_at, version)) = row else {
        return Ok(None);
    };
    let entry = Entry::new(
        Bytes::from(value),
        metadata(key, json)?,
        expiration(expires_at),
    )
    .with_version(Version::from_u64(u64::try_from(version).unwrap_or(0)));
    Ok(Some(entry))
}

/// The first key after every key that starts with `prefix`, in byte order: the prefix with its
/// last byte incremented (no UTF-8 byte is above `0xf4`, so the increment never overflows).
/// `None` for the empty prefix, which every key starts with.
fn upper_bound(prefix: &str) -> Option<Vec<u8>> {
    let mut bound = prefix.as_bytes().to_vec();
    let last = bound.last_mut()?;
    *last += 1;
    Some(bound)
}

/// The listing statements: from the prefix (inclusive) or after the cursor's key (exclusive),
/// to the prefix's upper bound (exclusive) when there is one. Each is a range of the primary
/// key, so a page costs O(log n + limit) however many other keys the table holds.
const LIST_FROM: &str = "SELECT key, metadata, expires_at FROM kv WHERE key >= ?1 AND key < ?2 \
     AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key LIMIT ?4";
const LIST_AFTER: &str = "SELECT key, metadata, expires_at FROM kv WHERE key > ?1 AND key < ?2 \
     AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key LIMIT ?4";
const LIST_FROM_ALL: &str = "SELECT key, metadata, expires_at FROM kv WHERE key >= ?1 \
     AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key LIMIT ?4";
const LIST_AFTER_ALL: &str = "SELECT key, metadata, expires_at FROM kv WHERE key > ?1 \
     AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key LIMIT ?4";

/// One page of at most `limit` keys under `prefix` live at `now`, after `after` when it
/// continues a listing.
pub(crate) fn list(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    now: i64,
) -> ReadResult<ListPage> {
    let upper = upper_bound(prefix);
    let sql = match (after.is_some(), upper.is_some()) {
        (false, true) => LIST_FROM,
        (true, true) => LIST_AFTER,
        (false, false) => LIST_FROM_ALL,
        (true, false) => LIST_AFTER_ALL,
    };
    // The bound may not be valid UTF-8 (a multi-byte character's last byte incremented), so it
    // is bound as TEXT bytes as they are: BINARY collation compares them with memcmp.
    let upper = ToSqlOutput::Borrowed(ValueRef::Text(upper.as_deref().unwrap_or_default()));
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![after.unwrap_or(prefix), upper, now, limit + 1])?;
    let mut keys = Vec::with_capacity(limit.min(128));
    let mut more = false;
    while let Some(row) = rows.next()? {
        if keys.len() == limit {
            more = true;
            break;
        }
        let name: String = row.get(0)?;
        let json: Option<String> = row.get(1)?;
        let meta = metadata(&name, json)?;
        keys.push(KeyInfo::new(name, expiration(row.get(2)?), meta));
    }
    let cursor = match keys.last() {
        Some(last) if more => Some(cursor::encode(prefix, &last.name)),
        _ => None,
    };
    Ok(ListPage::new(keys, cursor))
}

/// How many rows the table holds, expired ones not yet reclaimed included.
pub(crate) fn count(conn: &Connection) -> ReadResult<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM kv")?
        .query_row([], |row| row.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::upper_bound;

    #[test]
    fn upper_bounds_follow_every_key_with_the_prefix() {
        assert_eq!(upper_bound(""), None);
        assert_eq!(upper_bound("user:").as_deref(), Some(&b"user;"[..]));
        let wide = upper_bound("é").unwrap();
        assert_eq!(wide, [0xc3, 0xaa]);
        for key in ["é", "éa", "é\u{10ffff}"] {
            assert!(key.as_bytes() < &wide[..]);
        }
        assert!("ê".as_bytes() >= &wide[..]);
    }
}
