//! The one error type every backend and pattern returns.

use std::time::{Duration, SystemTime};

/// A boxed error from a backend's own client library, kept as the `source` of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, kvkit_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A key (or cursor) an error is about: kept whole for the caller, shown only as its length and
/// its stable hash.
///
/// Keys can be credentials (a session id, an API key) and error messages end up in logs, so no
/// `Display` or `Debug` of an error repeats a key. The hash is [`stable_hash`](crate::backend::stable_hash)
/// in hex, the `key_hash` that `kvkit_layers::Traced` records, so a failure can be matched to its
/// span without either holding the key; [`as_str`](Self::as_str) gives the key itself to callers
/// that want it.
///
/// ```
/// use kvkit_core::{Capabilities, Error};
/// let secret = "session:0f8c2a2e-7d1b-4b3a-9a55-2f1c6e9d8b77";
/// let err = Capabilities::new("x").with_max_value_bytes(1).check_value(secret, 2).unwrap_err();
/// let Error::ValueTooLarge { key, .. } = &err else { unreachable!() };
/// assert_eq!(key.as_str(), secret);
/// assert_eq!(key.len(), secret.len());
/// for shown in [err.to_string(), format!("{err:?}")] {
///     assert!(!shown.contains("0f8c2a2e"), "{shown}");
///     assert!(shown.contains(&format!("{:016x}", kvkit_core::backend::stable_hash(secret))), "{shown}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedKey(Box<str>);

impl RedactedKey {
    /// Keeps `key`, to be shown redacted.
    ///
    /// ```
    /// let key = kvkit_core::RedactedKey::new("api-key:s3cr3t");
    /// assert_eq!(key.to_string(), format!("#{:016x} (14 bytes)", kvkit_core::backend::stable_hash("api-key:s3cr3t")));
    /// ```
    pub fn new(key: &str) -> Self {
        RedactedKey(key.into())
    }

    /// The key itself.
    ///
    /// ```
    /// assert_eq!(kvkit_core::RedactedKey::new("k").as_str(), "k");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's length in UTF-8 bytes.
    ///
    /// ```
    /// assert_eq!(kvkit_core::RedactedKey::new("é").len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    ///
    /// ```
    /// assert!(kvkit_core::RedactedKey::new("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key's [`stable_hash`](crate::backend::stable_hash), as shown.
    ///
    /// ```
    /// let key = kvkit_core::RedactedKey::new("k");
    /// assert_eq!(key.hash(), kvkit_core::backend::stable_hash("k"));
    /// ```
    pub fn hash(&self) -> u64 {
        crate::backend::stable_hash(&self.0)
    }
}

impl std::fmt::Display for RedactedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{:016x} ({} bytes)", self.hash(), self.len())
    }
}

impl std::fmt::Debug for RedactedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedactedKey({self})")
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
    #[error("key {key} is reserved and cannot be used")]
    ReservedKey {
        /// The offending key.
        key: RedactedKey,
    },
    /// The key is longer (in UTF-8 bytes) than the backend allows.
    #[error("key {key} is {len} bytes long; the limit is {max} bytes")]
    KeyTooLong {
        /// The offending key.
        key: RedactedKey,
        /// Its length in bytes.
        len: usize,
        /// The backend's limit in bytes.
        max: usize,
    },
    /// The value is larger than the backend allows.
    #[error("value for key {key} is {len} bytes; the limit is {max} bytes")]
    ValueTooLarge {
        /// The key the value was written to.
        key: RedactedKey,
        /// The value's size in bytes.
        len: usize,
        /// The backend's limit in bytes.
        max: usize,
    },
    /// The metadata, serialized as JSON, is larger than the backend allows.
    #[error("metadata for key {key} is {len} bytes as JSON; the limit is {max} bytes")]
    MetadataTooLarge {
        /// The key the metadata was written to.
        key: RedactedKey,
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
    /// An absolute expiration is not far enough in the future (at least `min_ttl` from now).
    #[error(
        "expiration {} is not far enough in the future; the earliest allowed is {}",
        crate::time::rfc3339(*expiration),
        crate::time::rfc3339(*earliest)
    )]
    ExpirationNotInFuture {
        /// The requested expiration (rounded up to the backend's precision).
        expiration: SystemTime,
        /// The earliest expiration the backend would accept now.
        earliest: SystemTime,
    },
    /// An expiry later than the latest the backend accepts
    /// ([`Capabilities::latest_expiration`](crate::Capabilities::latest_expiration): the end of
    /// year 9999, or 2038-01-19 on Cloudflare).
    #[error("{expiry} ends after {}, the latest allowed", crate::time::rfc3339(*latest))]
    ExpiryTooFar {
        /// The requested expiry.
        expiry: crate::Expiry,
        /// The latest expiration allowed.
        latest: SystemTime,
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
    #[error("cursor {cursor} was not issued by this store for this listing")]
    InvalidCursor {
        /// The offending cursor (cursors can hold keys).
        cursor: RedactedKey,
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
    #[error("value of key {key} is not an integer counter")]
    NotACounter {
        /// The counter's key.
        key: RedactedKey,
    },
    /// A counter increment would overflow `i64`.
    #[error("incrementing counter {key} by {delta} would overflow")]
    CounterOverflow {
        /// The counter's key.
        key: RedactedKey,
        /// The requested delta.
        delta: i64,
    },
    /// A stored value could not be decoded into the requested type.
    #[error("value of key {key} could not be decoded")]
    Decode {
        /// The key whose value failed to decode.
        key: RedactedKey,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// A value could not be encoded before writing it.
    #[error("value for key {key} could not be encoded")]
    Encode {
        /// The key the value was meant for.
        key: RedactedKey,
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
    /// A write the primary applied was not confirmed by as many replicas as the store requires
    /// within the time allowed (Redis `WAIT`, see `kvkit_redis::RedisBuilder::wait_for_replicas`).
    /// The write may still have been applied, and may still reach the replicas later; it may
    /// also be lost if the primary fails before they have it.
    #[error(
        "{backend}: {operation} was confirmed by {acknowledged} of the {required} replicas \
         required within {after:?}; it may still have been applied"
    )]
    NotReplicated {
        /// Which backend wrote.
        backend: &'static str,
        /// The write.
        operation: &'static str,
        /// How many replicas confirmed it in time.
        acknowledged: u32,
        /// How many the store requires.
        required: u32,
        /// How long the store waited for them.
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
    /// A conditional write's condition did not hold (the key was present for
    /// [`PutOptions::if_absent`](crate::PutOptions::if_absent), or absent or changed for
    /// [`PutOptions::if_version`](crate::PutOptions::if_version)): nothing was written.
    #[error("the condition of the write to key {key} did not hold")]
    ConditionFailed {
        /// The key written to.
        key: RedactedKey,
    },
    /// The store was configured wrongly (a builder's missing or malformed setting, a bad URL):
    /// trying again cannot help until the configuration changes.
    #[error("{backend}: invalid configuration: {message}")]
    Configuration {
        /// Which backend was being configured.
        backend: &'static str,
        /// What is wrong, and how to set it (never contains credentials).
        message: String,
        /// The client library's error, when it reported the problem.
        #[source]
        source: Option<BoxError>,
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

/// What kind of failure an [`Error`] is: a small, stable classification that callers and
/// wrappers branch on (retry or not, which HTTP status to answer, which metric label to count),
/// whatever the backend. New kinds may be added, so a `match` needs a catch-all arm.
///
/// ```
/// use kvkit_core::{Error, ErrorKind, KvStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = kvkit_memory::MemoryStore::new();
/// let err = store.get("").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.kind().as_str(), "invalid_input");
/// assert!(!err.kind().is_retryable());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call's input was refused before any I/O: a key, value, metadata, expiry, list limit,
    /// cursor or batch outside the store's [`Capabilities`](crate::Capabilities), or a value
    /// that could not be encoded.
    InvalidInput,
    /// The stored value cannot be used as a counter: not a decimal `i64`, or the increment
    /// would overflow it.
    NotACounter,
    /// A conditional write found the entry other than its condition required.
    Conflict,
    /// A stored value could not be decoded as the caller asked.
    InvalidData,
    /// The backend refused the credentials or the operation.
    PermissionDenied,
    /// The backend asked the caller to slow down.
    RateLimited,
    /// The call did not finish in time. It may still have been applied.
    Timeout,
    /// A write was not confirmed by enough replicas in time. It may still have been applied.
    NotReplicated,
    /// The backend could not be reached or failed transiently (a lost connection, a failover,
    /// a 5xx answer). A write may still have been applied.
    Unavailable,
    /// The backend does not offer the operation.
    Unsupported,
    /// The store is configured wrongly.
    Configuration,
    /// The backend failed in a way that trying again will not fix.
    Internal,
}

impl ErrorKind {
    /// The kind as a `snake_case` label, stable across releases, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(kvkit_core::ErrorKind::Unavailable.as_str(), "unavailable");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotACounter => "not_a_counter",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotReplicated => "not_replicated",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether an error of this kind may go away if the same call is tried again later:
    /// [`Timeout`](Self::Timeout), [`NotReplicated`](Self::NotReplicated),
    /// [`RateLimited`](Self::RateLimited) and [`Unavailable`](Self::Unavailable).
    ///
    /// ```
    /// use kvkit_core::ErrorKind;
    /// assert!(ErrorKind::Timeout.is_retryable());
    /// assert!(ErrorKind::NotReplicated.is_retryable());
    /// assert!(!ErrorKind::InvalidInput.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout
                | ErrorKind::NotReplicated
                | ErrorKind::RateLimited
                | ErrorKind::Unavailable
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// This error's [`ErrorKind`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{Error, ErrorKind};
    /// let err = Error::Timeout { backend: "redis", operation: "get", after: Duration::from_secs(1) };
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// let late = Error::NotReplicated {
    ///     backend: "redis", operation: "put", acknowledged: 0, required: 1, after: Duration::from_secs(1),
    /// };
    /// assert_eq!(late.kind(), ErrorKind::NotReplicated);
    /// assert!(late.to_string().contains("may still have been applied"));
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    /// assert_eq!(Error::backend("redis", "GET failed", true, io).kind(), ErrorKind::Unavailable);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::EmptyKey
            | Error::ReservedKey { .. }
            | Error::KeyTooLong { .. }
            | Error::ValueTooLarge { .. }
            | Error::MetadataTooLarge { .. }
            | Error::TtlTooShort { .. }
            | Error::ExpirationNotInFuture { .. }
            | Error::ExpiryTooFar { .. }
            | Error::InvalidListLimit { .. }
            | Error::InvalidCursor { .. }
            | Error::BatchTooLarge { .. }
            | Error::Encode { .. } => ErrorKind::InvalidInput,
            Error::NotACounter { .. } | Error::CounterOverflow { .. } => ErrorKind::NotACounter,
            Error::ConditionFailed { .. } => ErrorKind::Conflict,
            Error::Decode { .. } => ErrorKind::InvalidData,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::NotReplicated { .. } => ErrorKind::NotReplicated,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Configuration { .. } => ErrorKind::Configuration,
            Error::Backend {
                retryable: true, ..
            } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Internal,
        }
    }

    /// Builds an [`Error::ConditionFailed`] for `key`.
    ///
    /// ```
    /// let err = kvkit_core::Error::condition_failed("session:abc");
    /// assert_eq!(err.kind(), kvkit_core::ErrorKind::Conflict);
    /// assert!(!err.to_string().contains("abc"));
    /// ```
    pub fn condition_failed(key: &str) -> Self {
        Error::ConditionFailed {
            key: RedactedKey::new(key),
        }
    }

    /// Builds an [`Error::Configuration`].
    ///
    /// ```
    /// let err = kvkit_core::Error::configuration("redis", "a single-server store needs exactly one URL");
    /// assert_eq!(err.kind(), kvkit_core::ErrorKind::Configuration);
    /// assert_eq!(err.to_string(), "redis: invalid configuration: a single-server store needs exactly one URL");
    /// ```
    pub fn configuration(backend: &'static str, message: impl Into<String>) -> Self {
        Error::Configuration {
            backend,
            message: message.into(),
            source: None,
        }
    }

    /// Whether the same call may succeed if tried again later: timeouts, rate limiting, and backend
    /// failures flagged as transient (lost connections, 5xx responses). Input errors never are.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = kvkit_core::Error::Timeout { backend: "redis", operation: "get", after: Duration::from_secs(1) };
    /// assert!(err.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
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
    /// assert!(matches!(&err, kvkit_core::Error::Decode { key, .. } if key.as_str() == "user:1"));
    /// assert!(!err.to_string().contains("user:1"));
    /// ```
    pub fn decode(key: &str, source: impl Into<BoxError>) -> Self {
        Error::Decode {
            key: RedactedKey::new(key),
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
            key: RedactedKey::new(key),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
