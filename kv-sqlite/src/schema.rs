//! The database layout, its version, and how every connection is opened.

use std::time::Duration;

use kvkit_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};

use crate::builder::{Durability, Location};
use crate::errors::{BACKEND, sqlite_error};

/// The schema this build writes. `PRAGMA user_version` holds the version of a database file:
/// 0 for a file this store never set up, which [`MIGRATIONS`] brings forward one step at a time.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[i]` takes a database from version `i` to `i + 1`.
///
/// Version 1: the entries in key order (`WITHOUT ROWID`, so the table is the primary key's
/// b-tree, and TEXT keys compare with `memcmp`: UTF-8 byte order), an index of the expiring
/// ones only, and the next entry version.
const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE kv (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        metadata TEXT,
        expires_at INTEGER,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE kv_meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO kv_meta (name, value) VALUES ('next_version', 1);
"];

/// How a connection is used: the writer sets the database up; readers only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// Opens one connection to `location` with the store's pragmas; the writer also checks the file
/// and migrates its schema, so that readers open a database that is ready, and caps the
/// database at `max_size` bytes (only the writer grows it, so only the writer needs the cap).
pub(crate) fn connect(
    location: &Location,
    durability: Durability,
    busy_timeout: Duration,
    role: Role,
    max_size: Option<u64>,
) -> Result<Connection> {
    let fail = |operation| move |e| sqlite_error(operation, busy_timeout, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match location {
        Location::File(path) => Connection::open_with_flags(path, flags),
        Location::Memory => Connection::open_in_memory(),
    }
    .map_err(fail("open"))?;
    conn.busy_timeout(busy_timeout).map_err(fail("open"))?;
    conn.set_prepared_statement_cache_capacity(32);
    // A file SQLite could only open read-only (write-protected, or in a read-only directory)
    // is refused here, not at the first write.
    if role == Role::Writer && conn.is_readonly(rusqlite::MAIN_DB).map_err(fail("open"))? {
        return Err(Error::PermissionDenied {
            backend: BACKEND,
            message: "the database file is read-only".to_owned(),
        });
    }
    // Reading the schema version is the first read of the file: a file that is not a database
    // fails here with SQLITE_NOTADB.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail("open"))?;
    if version > SCHEMA_VERSION {
        return Err(newer_schema(version));
    }
    if matches!(location, Location::File(_)) {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(fail("open"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::configuration(
                BACKEND,
                format!("the database file refused WAL mode (journal_mode is {mode})"),
            ));
        }
    }
    conn.pragma_update(None, "synchronous", durability.pragma())
        .map_err(fail("open"))?;
    match role {
        Role::Writer => {
            migrate(&conn, busy_timeout)?;
            if let Some(bytes) = max_size {
                let page_size: u64 = conn
                    .pragma_query_value(None, "page_size", |row| row.get(0))
                    .map_err(fail("open"))?;
                let pages = (bytes / page_size.max(1)).max(1);
                conn.pragma_update(None, "max_page_count", pages)
                    .map_err(fail("open"))?;
            }
        }
        Role::Reader => conn
            .pragma_update(None, "query_only", true)
            .map_err(fail("open"))?,
    }
    Ok(conn)
}

fn newer_schema(version: i64) -> Error {
    Error::configuration(
        BACKEND,
        format!(
            "the database has schema version {version}, newer than the {SCHEMA_VERSION} this \
             build of kvkit-sqlite knows; open it with a newer kvkit-sqlite"
        ),
    )
}

/// Brings the schema to [`SCHEMA_VERSION`] in one `BEGIN IMMEDIATE` transaction, so that two
/// processes opening a new file at once set it up once.
fn migrate(conn: &Connection, busy_timeout: Duration) -> Result<()> {
    let fail = |e| sqlite_error("migrate the schema", busy_timeout, e);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(fail)?;
    let migrated = (|| {
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(version));
        }
        let from = usize::try_from(version).unwrap_or(0);
        for step in &MIGRATIONS[from..] {
            conn.execute_batch(step).map_err(fail)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail)?;
        conn.execute_batch("COMMIT").map_err(fail)
    })();
    if migrated.is_err() && !conn.is_autocommit() {
        // The transaction is being abandoned; a failed rollback leaves nothing to undo either.
        let _ = conn.execute_batch("ROLLBACK");
    }
    migrated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_has_its_migration() {
        assert_eq!(MIGRATIONS.len(), usize::try_from(SCHEMA_VERSION).unwrap());
        let conn = connect(
            &Location::Memory,
            Durability::Full,
            Duration::from_secs(1),
            Role::Writer,
            None,
        )
        .unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Migrating again finds nothing to do.
        migrate(&conn, Duration::from_secs(1)).unwrap();
        let next: i64 = conn
            .query_row(
                "SELECT value FROM kv_meta WHERE name = 'next_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(next, 1);
    }
}
