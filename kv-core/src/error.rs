//! The one error type every backend and pattern returns.

use std::time::Duration;

/// A boxed error from a backend's own client library, kept as the `source` of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, kvkit_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest excerpt of a user-supplied key or cursor that an error message repeats.
const EXCERPT_CHARS: usize = 64;

/// Returns `s`, cut to at most 64 characters (with `…` appended when it was cut), so that an
/// error naming an oversized key does not itself become huge.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

/// Everything that can go wrong when talking to a [`KvStore`](crate::KvStore).
///
/// A missing key is never an error: reads return `Ok(None)` for it. Input problems are reported
/// before any I/O, each with its own variant naming the offending value, so callers can match on
/// them. Failures of the backend itself keep their original error as `source`, and
/// [`Error::is_retryable`] tells whether trying again may help.
///
/// ```
/// use kvkit_core::{Error, KvStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = kvkit_memory::MemoryStore::new();
/// let err = store.get("").await.unwrap_err();
/// assert!(matches!(err, Error::EmptyKey));
/// assert!(!err.is_retryable());
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is the empty string.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is one the backend reserves (`.` or `..`).
    #[error("key {key:?} is reserved and cannot be used")]
    ReservedKey {
        /// The offending key.
        key: String,
    },
    /// The key is longer (in UTF-8 bytes) than the backend allows.
    #[error("key {key:?} is {len} bytes long; the limit is {max} bytes")]
    KeyTooLong {
        /// The first characters of the offending key.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The backend's limit in bytes.
        max: usize,
    },
    /// The value is larger than the backend allows.
    #[error("value for key {key:?} is {len} bytes; the limit is {max} bytes")]
    ValueTooLarge {
        /// The key the value was written to.
        key: String,
        /// The value's size in bytes.
        len: usize,
        /// The backend's limit in bytes.
        max: usize,
    },
    /// The metadata, serialized as JSON, is larger than the backend allows.
    #[error("metadata for key {key:?} is {len} bytes as JSON; the limit is {max} bytes")]
    MetadataTooLarge {
        /// The key the metadata was written to.
        key: String,
        /// The serialized size in bytes.
        len: usize,
        /// The backend's limit in bytes.
        max: usize,
    },
    /// A relative TTL is zero or shorter than the backend's minimum.
    #[error("TTL of {ttl:?} is shorter than the minimum of {min:?}")]
    TtlTooShort {
        /// The requested TTL.
        ttl: Duration,
        /// The backend's minimum TTL.
        min: Duration,
    },
    /// An absolute expiration (unix seconds) is not far enough in the future.
    #[error(
        "expiration {expiration} (unix seconds) is not in the future; the earliest allowed is {earliest}"
    )]
    ExpirationNotInFuture {
        /// The requested expiration, in seconds since the unix epoch.
        expiration: u64,
        /// The earliest expiration the backend would accept now.
        earliest: u64,
    },
    /// An expiry later than the latest the backend accepts
    /// ([`Capabilities::max_expiration_secs`](crate::Capabilities::max_expiration_secs): the end
    /// of year 9999, or 2038-01-19 on Cloudflare).
    #[error("expiry {expiry:?} ends after {latest} (unix seconds), the latest allowed")]
    ExpiryTooFar {
        /// The requested expiry.
        expiry: crate::Expiry,
        /// The latest expiration allowed, in seconds since the unix epoch.
        latest: u64,
    },
    /// A list limit outside `1..=max`.
    #[error("list limit {limit} is out of range; it must be between 1 and {max}")]
    InvalidListLimit {
        /// The requested limit.
        limit: usize,
        /// The backend's largest page.
        max: usize,
    },
    /// A list cursor this backend did not issue (or one issued for another prefix).
    #[error("cursor {cursor:?} was not issued by this store for this listing")]
    InvalidCursor {
        /// The first characters of the offending cursor.
        cursor: String,
    },
    /// A batch with more keys than the backend accepts in one call.
    #[error("batch of {len} keys is too large; the limit is {max}")]
    BatchTooLarge {
        /// Number of keys in the batch.
        len: usize,
        /// The backend's limit.
        max: usize,
    },
    /// A counter operation found a value that is not a decimal `i64`.
    #[error("value of key {key:?} is not an integer counter")]
    NotACounter {
        /// The counter's key.
        key: String,
    },
    /// A counter increment would overflow `i64`.
    #[error("incrementing counter {key:?} by {delta} would overflow")]
    CounterOverflow {
        /// The counter's key.
        key: String,
        /// The requested delta.
        delta: i64,
    },
    /// A stored value could not be decoded into the requested type.
    #[error("value of key {key:?} could not be decoded")]
    Decode {
        /// The key whose value failed to decode.
        key: String,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// A value could not be encoded before writing it.
    #[error("value for key {key:?} could not be encoded")]
    Encode {
        /// The key the value was meant for.
        key: String,
        /// The encoder's error.
        #[source]
        source: BoxError,
    },
    /// The backend refused the credentials or the operation.
    #[error("{backend}: permission denied: {message}")]
    PermissionDenied {
        /// Which backend refused.
        backend: &'static str,
        /// The backend's own explanation (never contains credentials).
        message: String,
    },
    /// The backend asked us to slow down.
    #[error("{backend}: rate limited{}", retry_after.map(|d| format!("; retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// Which backend refused.
        backend: &'static str,
        /// How long the backend asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The operation did not finish within its time limit.
    #[error("{backend}: {operation} timed out after {after:?}")]
    Timeout {
        /// Which backend timed out.
        backend: &'static str,
        /// The operation that timed out.
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The backend does not offer this operation.
    #[error("{backend} does not support {operation}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// The operation that is not available.
        operation: &'static str,
    },
    /// The backend failed; `source` is its own error.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend failed.
        backend: &'static str,
        /// What we were doing when it failed.
        message: String,
        /// Whether trying again may succeed (connection loss, 5xx, …).
        retryable: bool,
        /// The backend client's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again later: timeouts, rate limiting, and backend
    /// failures flagged as transient (lost connections, 5xx responses). Input errors never are.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = kvkit_core::Error::Timeout { backend: "redis", operation: "get", after: Duration::from_secs(1) };
    /// assert!(err.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Timeout { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Builds an [`Error::Backend`] around a client error.
    ///
    /// ```
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    /// let err = kvkit_core::Error::backend("redis", "GET failed", true, io);
    /// assert!(err.is_retryable());
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    pub fn backend(
        backend: &'static str,
        message: impl Into<String>,
        retryable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend,
            message: message.into(),
            retryable,
            source: Some(source.into()),
        }
    }

    /// Builds an [`Error::Decode`] for `key`, keeping `source`.
    ///
    /// ```
    /// let source = serde_json::from_str::<u32>("x").unwrap_err();
    /// let err = kvkit_core::Error::decode("user:1", source);
    /// assert!(err.to_string().contains("user:1"));
    /// ```
    pub fn decode(key: &str, source: impl Into<BoxError>) -> Self {
        Error::Decode {
            key: excerpt(key),
            source: source.into(),
        }
    }

    /// Builds an [`Error::Encode`] for `key`, keeping `source`.
    ///
    /// ```
    /// let source = std::io::Error::other("not representable");
    /// let err = kvkit_core::Error::encode("user:1", source);
    /// assert!(matches!(err, kvkit_core::Error::Encode { .. }));
    /// ```
    pub fn encode(key: &str, source: impl Into<BoxError>) -> Self {
        Error::Encode {
            key: excerpt(key),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_strings_on_char_boundaries() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn retryable_classification() {
        assert!(
            Error::RateLimited {
                backend: "x",
                retry_after: None
            }
            .is_retryable()
        );
        assert!(!Error::EmptyKey.is_retryable());
        assert!(
            !Error::Backend {
                backend: "x",
                message: "bad".into(),
                retryable: false,
                source: None
            }
            .is_retryable()
        );
    }
}
