//! The classification of SQLite's errors into [`Error`]s.
//!
//! rusqlite's errors carry SQLite's message, which names tables and columns but never a bound
//! parameter, so no key or value reaches an error through them.

use std::time::Duration;

use kvkit_core::Error;
use rusqlite::ErrorCode;

/// The backend's name, in capabilities and errors.
pub(crate) const BACKEND: &str = "sqlite";

/// Maps a rusqlite error met while doing `operation` to the contract's error.
///
/// - `SQLITE_BUSY`/`SQLITE_LOCKED` (another process held the lock for longer than the busy
///   timeout): [`Error::Timeout`], retryable.
/// - `SQLITE_READONLY`, `SQLITE_PERM`, `SQLITE_AUTH`: [`Error::PermissionDenied`].
/// - `SQLITE_FULL` (the disk, or the `max_page_count` limit) and `SQLITE_IOERR`: a retryable
///   [`Error::Backend`] (kind `Unavailable`); the transaction that met it is rolled back.
/// - `SQLITE_NOTADB`, `SQLITE_CANTOPEN`: [`Error::Configuration`]: the path names no usable
///   database.
/// - anything else (`SQLITE_CORRUPT` among them): a non-retryable [`Error::Backend`].
pub(crate) fn sqlite_error(
    operation: &'static str,
    busy_timeout: Duration,
    e: rusqlite::Error,
) -> Error {
    let Some(code) = e.sqlite_error_code() else {
        return Error::backend(BACKEND, format!("{operation} failed"), false, e);
    };
    match code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Timeout {
            backend: BACKEND,
            operation,
            after: busy_timeout,
        },
        ErrorCode::ReadOnly
        | ErrorCode::PermissionDenied
        | ErrorCode::AuthorizationForStatementDenied => Error::PermissionDenied {
            backend: BACKEND,
            message: format!("{operation}: the database file cannot be written ({e})"),
        },
        ErrorCode::DiskFull => Error::backend(
            BACKEND,
            format!(
                "{operation}: the disk (or the database's size limit) is full; nothing was written"
            ),
            true,
            e,
        ),
        ErrorCode::SystemIoFailure => {
            Error::backend(BACKEND, format!("{operation}: disk I/O error"), true, e)
        }
        ErrorCode::NotADatabase | ErrorCode::CannotOpen => Error::Configuration {
            backend: BACKEND,
            message: format!("{operation}: the path does not name a usable SQLite database"),
            source: Some(Box::new(e)),
        },
        _ => Error::backend(BACKEND, format!("{operation} failed"), false, e),
    }
}

/// The error of a call whose worker thread is gone (it only stops when the store is dropped, or
/// if it panicked).
pub(crate) fn stopped(operation: &'static str) -> Error {
    Error::Backend {
        backend: BACKEND,
        message: format!("{operation}: the store's SQLite thread has stopped"),
        retryable: false,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvkit_core::ErrorKind;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn classifies_sqlite_codes() {
        let t = Duration::from_secs(5);
        let kind = |code| sqlite_error("put", t, failure(code)).kind();
        assert_eq!(kind(rusqlite::ffi::SQLITE_BUSY), ErrorKind::Timeout);
        assert_eq!(
            kind(rusqlite::ffi::SQLITE_READONLY),
            ErrorKind::PermissionDenied
        );
        assert_eq!(kind(rusqlite::ffi::SQLITE_FULL), ErrorKind::Unavailable);
        assert_eq!(kind(rusqlite::ffi::SQLITE_NOTADB), ErrorKind::Configuration);
        assert_eq!(kind(rusqlite::ffi::SQLITE_CORRUPT), ErrorKind::Internal);
        assert_eq!(
            sqlite_error("get", t, rusqlite::Error::InvalidQuery).kind(),
            ErrorKind::Internal
        );
        assert_eq!(stopped("get").kind(), ErrorKind::Internal);
    }
}
