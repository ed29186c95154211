//! What a backend allows and guarantees, and the validation every backend runs before any I/O.

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, RedactedKey, Result};
use crate::types::{Expiry, ListOptions};

/// How soon a write is visible to readers.
///
/// ```
/// use kvkit_core::KvStore;
/// let caps = kvkit_memory::MemoryStore::new().capabilities().clone();
/// assert_eq!(caps.consistency, kvkit_core::Consistency::Strong);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Consistency {
    /// Every read after a write returns (at least) that write, from any client.
    Strong,
    /// Writes become visible to other readers after a delay (Cloudflare KV: 60 s or more).
    Eventual,
}

/// The limits and guarantees of one backend, readable before calling it.
///
/// Every backend validates its input against these limits before any I/O, so a call that would be
/// refused by the server fails fast with a typed [`Error`] that names the offending value.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::Capabilities;
/// let cf = Capabilities::cloudflare("my-backend");
/// assert_eq!(cf.max_key_bytes, 512);
/// assert_eq!(cf.min_ttl, Duration::from_secs(60));
/// assert!(cf.check_key(&"k".repeat(513)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A short name of the backend, used in errors and traces.
    pub backend: &'static str,
    /// The shortest TTL accepted, and how far in the future an absolute expiration must be.
    pub min_ttl: Duration,
    /// TTLs are rounded up to a multiple of this, and a key may outlive its TTL by up to this
    /// much where the backend keeps expirations in whole units of it (Cloudflare: seconds).
    pub ttl_precision: Duration,
    /// The longest key, in UTF-8 bytes.
    pub max_key_bytes: usize,
    /// The largest value, in bytes.
    pub max_value_bytes: usize,
    /// The largest metadata, in bytes of serialized JSON.
    pub max_metadata_bytes: usize,
    /// The largest list page (1000 on every backend).
    pub max_list_limit: usize,
    /// The most keys in one [`get_many`](crate::KvStore::get_many) call (100 on every backend).
    pub max_batch_get: usize,
    /// Whether writes are immediately visible everywhere.
    pub consistency: Consistency,
    /// `true` when [`increment`](crate::KvStore::increment) is exact under concurrency;
    /// `false` when it is a best-effort read-modify-write that can lose concurrent increments.
    pub atomic_counter: bool,
    /// `true` when exactly one of many concurrent
    /// [`put_if_absent`](crate::KvStore::put_if_absent) calls wins; `false` when several may.
    pub atomic_put_if_absent: bool,
    /// `true` when conditional writes ([`PutOptions::if_absent`](crate::PutOptions::if_absent),
    /// [`PutOptions::if_version`](crate::PutOptions::if_version),
    /// [`delete_if_version`](crate::KvStore::delete_if_version)) are exact and entries carry a
    /// [`Version`](crate::Version); `false` when the store refuses them with
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    pub conditional_writes: bool,
    /// `true` when every JSON value round-trips exactly as metadata; `false` when metadata passes
    /// through JavaScript (Cloudflare): JSON `null` metadata is no metadata and reads back as
    /// `None`, and numbers are IEEE doubles, so integers beyond ±2⁵³ change.
    pub exact_metadata: bool,
    /// The latest expiration accepted, in unix seconds: [`MAX_EXPIRATION_SECS`] (the end of year
    /// 9999), or less where the backend stores expirations in fewer bits (Cloudflare's runtime
    /// takes 32-bit seconds: 2038-01-19).
    pub max_expiration_secs: u64,
}

/// Cloudflare KV's key limit in bytes.
pub const CLOUDFLARE_MAX_KEY_BYTES: usize = 512;
/// Cloudflare KV's value limit in bytes (25 MiB).
pub const CLOUDFLARE_MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Cloudflare KV's metadata limit in bytes of serialized JSON.
pub const CLOUDFLARE_MAX_METADATA_BYTES: usize = 1024;
/// Cloudflare KV's minimum TTL.
pub const CLOUDFLARE_MIN_TTL: Duration = Duration::from_secs(60);
/// The latest expiration accepted, in unix seconds: 9999-12-31T23:59:59Z.
pub const MAX_EXPIRATION_SECS: u64 = 253_402_300_799;
/// The latest expiration Cloudflare KV accepts, in unix seconds: its runtime takes expirations as
/// 32-bit seconds (2038-01-19T03:14:07Z).
pub const CLOUDFLARE_MAX_EXPIRATION_SECS: u64 = 2_147_483_647;
/// The largest list page on every backend.
pub const MAX_LIST_LIMIT: usize = 1000;
/// The most keys in one batch get on every backend.
pub const MAX_BATCH_GET: usize = 100;

impl Capabilities {
    /// Generous limits for a strongly consistent backend with atomic operations and millisecond
    /// TTLs: keys up to 64 KiB, values up to 512 MiB, metadata up to 64 KiB.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("mine");
    /// assert!(caps.atomic_counter);
    /// assert_eq!(caps.max_list_limit, 1000);
    /// ```
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            min_ttl: Duration::from_millis(1),
            ttl_precision: Duration::from_millis(1),
            max_key_bytes: 64 * 1024,
            max_value_bytes: 512 * 1024 * 1024,
            max_metadata_bytes: 64 * 1024,
            max_list_limit: MAX_LIST_LIMIT,
            max_batch_get: MAX_BATCH_GET,
            consistency: Consistency::Strong,
            atomic_counter: true,
            atomic_put_if_absent: true,
            conditional_writes: true,
            exact_metadata: true,
            max_expiration_secs: MAX_EXPIRATION_SECS,
        }
    }

    /// Cloudflare KV's limits (key ≤ 512 bytes, value ≤ 25 MiB, metadata ≤ 1024 bytes, TTL ≥ 60 s
    /// in whole seconds, expirations no later than [`CLOUDFLARE_MAX_EXPIRATION_SECS`]), still
    /// strongly consistent and atomic: adjust those for a real Cloudflare backend. The one
    /// profile of Cloudflare's limits, used by the memory store's `cloudflare_limits()`, the REST
    /// backend and the Worker binding backend alike.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, Error, Expiry, CLOUDFLARE_MAX_EXPIRATION_SECS};
    /// let caps = Capabilities::cloudflare("memory");
    /// assert_eq!(caps.max_value_bytes, 25 * 1024 * 1024);
    /// assert_eq!(caps.max_expiration_secs, CLOUDFLARE_MAX_EXPIRATION_SECS);
    /// let after_2038 = Expiry::At(CLOUDFLARE_MAX_EXPIRATION_SECS + 1);
    /// assert!(matches!(caps.check_expiry(Some(after_2038), 0), Err(Error::ExpiryTooFar { .. })));
    /// ```
    pub fn cloudflare(backend: &'static str) -> Self {
        Self {
            min_ttl: CLOUDFLARE_MIN_TTL,
            ttl_precision: Duration::from_secs(1),
            max_key_bytes: CLOUDFLARE_MAX_KEY_BYTES,
            max_value_bytes: CLOUDFLARE_MAX_VALUE_BYTES,
            max_metadata_bytes: CLOUDFLARE_MAX_METADATA_BYTES,
            max_expiration_secs: CLOUDFLARE_MAX_EXPIRATION_SECS,
            ..Self::new(backend)
        }
    }

    /// Sets the maximum key length.
    ///
    /// ```
    /// assert_eq!(kvkit_core::Capabilities::new("x").with_max_key_bytes(10).max_key_bytes, 10);
    /// ```
    pub fn with_max_key_bytes(mut self, max: usize) -> Self {
        self.max_key_bytes = max;
        self
    }

    /// Sets the maximum value size.
    ///
    /// ```
    /// assert_eq!(kvkit_core::Capabilities::new("x").with_max_value_bytes(10).max_value_bytes, 10);
    /// ```
    pub fn with_max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
        self
    }

    /// Sets the maximum metadata size.
    ///
    /// ```
    /// assert_eq!(kvkit_core::Capabilities::new("x").with_max_metadata_bytes(10).max_metadata_bytes, 10);
    /// ```
    pub fn with_max_metadata_bytes(mut self, max: usize) -> Self {
        self.max_metadata_bytes = max;
        self
    }

    /// Sets the minimum TTL.
    ///
    /// ```
    /// use std::time::Duration;
    /// let caps = kvkit_core::Capabilities::new("x").with_min_ttl(Duration::from_secs(1));
    /// assert_eq!(caps.min_ttl, Duration::from_secs(1));
    /// ```
    pub fn with_min_ttl(mut self, min: Duration) -> Self {
        self.min_ttl = min;
        self
    }

    /// Sets the consistency guarantee.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, Consistency};
    /// let caps = Capabilities::new("x").with_consistency(Consistency::Eventual);
    /// assert_eq!(caps.consistency, Consistency::Eventual);
    /// ```
    pub fn with_consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Declares whether the counter and put-if-absent are atomic.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_atomic(false, false);
    /// assert!(!caps.atomic_counter && !caps.atomic_put_if_absent);
    /// ```
    pub fn with_atomic(mut self, counter: bool, put_if_absent: bool) -> Self {
        self.atomic_counter = counter;
        self.atomic_put_if_absent = put_if_absent;
        self
    }

    /// Declares whether conditional writes are exact (and entries versioned).
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_conditional_writes(false);
    /// assert!(!caps.conditional_writes);
    /// ```
    pub fn with_conditional_writes(mut self, exact: bool) -> Self {
        self.conditional_writes = exact;
        self
    }

    /// Declares whether metadata round-trips exactly (see [`Capabilities::exact_metadata`]).
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_exact_metadata(false);
    /// assert!(!caps.exact_metadata);
    /// ```
    pub fn with_exact_metadata(mut self, exact: bool) -> Self {
        self.exact_metadata = exact;
        self
    }

    /// Sets the latest expiration accepted, in unix seconds.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_max_expiration_secs(2_147_483_647);
    /// assert!(caps.check_expiry(Some(kvkit_core::Expiry::At(2_147_483_648)), 0).is_err());
    /// ```
    pub fn with_max_expiration_secs(mut self, latest: u64) -> Self {
        self.max_expiration_secs = latest;
        self
    }

    /// Refuses a write condition the store cannot honour, before any I/O: any but
    /// [`WriteCondition::Always`](crate::WriteCondition::Always) where `conditional_writes` is
    /// false, and in `operation`s that take none (batches, `put_if_absent`) when `allowed` is false.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, Error, WriteCondition};
    /// let cf = Capabilities::new("cloudflare").with_conditional_writes(false);
    /// assert!(cf.check_condition(&WriteCondition::Always, "put", true).is_ok());
    /// assert!(matches!(cf.check_condition(&WriteCondition::IfAbsent, "put", true), Err(Error::Unsupported { .. })));
    /// let memory = Capabilities::new("memory");
    /// assert!(memory.check_condition(&WriteCondition::IfAbsent, "put", true).is_ok());
    /// assert!(memory.check_condition(&WriteCondition::IfAbsent, "put_many", false).is_err());
    /// ```
    pub fn check_condition(
        &self,
        condition: &crate::WriteCondition,
        operation: &'static str,
        allowed: bool,
    ) -> Result<()> {
        if *condition == crate::WriteCondition::Always {
            return Ok(());
        }
        if !self.conditional_writes {
            return Err(Error::Unsupported {
                backend: self.backend,
                operation: "conditional writes",
            });
        }
        if !allowed {
            return Err(Error::Unsupported {
                backend: self.backend,
                operation,
            });
        }
        Ok(())
    }

    /// Checks a key: not empty, not `.` or `..`, at most `max_key_bytes` long.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x");
    /// assert!(caps.check_key("user:1").is_ok());
    /// assert!(matches!(caps.check_key(".."), Err(kvkit_core::Error::ReservedKey { .. })));
    /// ```
    pub fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key == "." || key == ".." {
            return Err(Error::ReservedKey {
                key: RedactedKey::new(key),
            });
        }
        if key.len() > self.max_key_bytes {
            return Err(Error::KeyTooLong {
                key: RedactedKey::new(key),
                len: key.len(),
                max: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Checks the size of a value written to `key`.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_max_value_bytes(3);
    /// assert!(caps.check_value("k", 3).is_ok());
    /// assert!(matches!(caps.check_value("k", 4), Err(kvkit_core::Error::ValueTooLarge { len: 4, max: 3, .. })));
    /// ```
    pub fn check_value(&self, key: &str, len: usize) -> Result<()> {
        if len > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                key: RedactedKey::new(key),
                len,
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Checks metadata written to `key` and returns it serialized as JSON, as backends store it.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x").with_max_metadata_bytes(8);
    /// let json = caps.check_metadata("k", Some(&serde_json::json!([1, 2]))).unwrap();
    /// assert_eq!(json.as_deref(), Some("[1,2]"));
    /// assert!(caps.check_metadata("k", Some(&serde_json::json!("a long string"))).is_err());
    /// ```
    pub fn check_metadata(&self, key: &str, metadata: Option<&Value>) -> Result<Option<String>> {
        let Some(metadata) = metadata else {
            return Ok(None);
        };
        let json = metadata.to_string();
        if json.len() > self.max_metadata_bytes {
            return Err(Error::MetadataTooLarge {
                key: RedactedKey::new(key),
                len: json.len(),
                max: self.max_metadata_bytes,
            });
        }
        Ok(Some(json))
    }

    /// Checks an expiry against `min_ttl`, given the current time in unix milliseconds, and
    /// returns it with a TTL rounded up to `ttl_precision`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{Capabilities, Error, Expiry};
    /// let caps = Capabilities::cloudflare("x");
    /// let now_ms = 1_700_000_000_000;
    /// assert!(matches!(caps.check_expiry(Some(Expiry::Ttl(Duration::from_secs(59))), now_ms),
    ///     Err(Error::TtlTooShort { .. })));
    /// assert_eq!(caps.check_expiry(Some(Expiry::Ttl(Duration::from_millis(60_001))), now_ms).unwrap(),
    ///     Some(Expiry::Ttl(Duration::from_secs(61))));
    /// assert!(matches!(caps.check_expiry(Some(Expiry::At(1_700_000_030)), now_ms),
    ///     Err(Error::ExpirationNotInFuture { earliest: 1_700_000_060, .. })));
    /// ```
    pub fn check_expiry(&self, expiry: Option<Expiry>, now_ms: u64) -> Result<Option<Expiry>> {
        match expiry {
            None => Ok(None),
            Some(Expiry::Ttl(ttl)) => {
                if ttl.is_zero() || ttl < self.min_ttl {
                    return Err(Error::TtlTooShort {
                        ttl,
                        min: self.min_ttl,
                    });
                }
                let ttl = round_up(ttl, self.ttl_precision);
                let ends = Duration::from_millis(now_ms).saturating_add(ttl);
                if ends.as_secs() >= self.max_expiration_secs {
                    return Err(Error::ExpiryTooFar {
                        expiry: Expiry::Ttl(ttl),
                        latest: self.max_expiration_secs,
                    });
                }
                Ok(Some(Expiry::Ttl(ttl)))
            }
            Some(Expiry::At(at)) => {
                let min_ms = u64::try_from(self.min_ttl.as_millis()).unwrap_or(u64::MAX);
                let earliest = now_ms.saturating_add(min_ms).div_ceil(1000);
                if at < earliest {
                    return Err(Error::ExpirationNotInFuture {
                        expiration: at,
                        earliest,
                    });
                }
                if at > self.max_expiration_secs {
                    return Err(Error::ExpiryTooFar {
                        expiry: Expiry::At(at),
                        latest: self.max_expiration_secs,
                    });
                }
                Ok(Some(Expiry::At(at)))
            }
        }
    }

    /// Checks the limit of a listing and returns the page size to use.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, ListOptions};
    /// let caps = Capabilities::new("x");
    /// assert_eq!(caps.check_list(&ListOptions::new()).unwrap(), 1000);
    /// assert!(caps.check_list(&ListOptions::new().limit(0)).is_err());
    /// assert!(caps.check_list(&ListOptions::new().limit(1001)).is_err());
    /// ```
    pub fn check_list(&self, options: &ListOptions) -> Result<usize> {
        let limit = options.limit.unwrap_or(self.max_list_limit);
        if limit == 0 || limit > self.max_list_limit {
            return Err(Error::InvalidListLimit {
                limit,
                max: self.max_list_limit,
            });
        }
        Ok(limit)
    }

    /// Checks the number of keys in one batch get.
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("x");
    /// assert!(caps.check_batch_get(100).is_ok());
    /// assert!(matches!(caps.check_batch_get(101), Err(kvkit_core::Error::BatchTooLarge { len: 101, max: 100 })));
    /// ```
    pub fn check_batch_get(&self, len: usize) -> Result<()> {
        if len > self.max_batch_get {
            return Err(Error::BatchTooLarge {
                len,
                max: self.max_batch_get,
            });
        }
        Ok(())
    }

    /// Runs every check of a write (key, write condition, value size, metadata, expiry) and
    /// returns the expiry to apply and the metadata as JSON.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, PutOptions};
    /// let caps = Capabilities::new("x");
    /// let checked = caps.check_put("k", 1, &PutOptions::new(), 0).unwrap();
    /// assert_eq!(checked.expiry, None);
    /// assert_eq!(checked.metadata_json, None);
    /// ```
    pub fn check_put(
        &self,
        key: &str,
        value_len: usize,
        options: &crate::PutOptions,
        now_ms: u64,
    ) -> Result<CheckedPut> {
        self.check_key(key)?;
        self.check_condition(&options.condition, "put", true)?;
        self.check_value(key, value_len)?;
        let metadata_json = self.check_metadata(key, options.metadata.as_ref())?;
        let expiry = self.check_expiry(options.expiry, now_ms)?;
        Ok(CheckedPut {
            expiry,
            metadata_json,
        })
    }
}

/// The validated parts of a write, from [`Capabilities::check_put`].
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{Capabilities, Expiry, PutOptions};
/// let checked = Capabilities::new("x")
///     .check_put("k", 0, &PutOptions::new().ttl(Duration::from_micros(1500)), 0)
///     .unwrap();
/// assert_eq!(checked.expiry, Some(Expiry::Ttl(Duration::from_millis(2))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedPut {
    /// The expiry, with a TTL rounded up to the backend's precision.
    pub expiry: Option<Expiry>,
    /// The metadata serialized as JSON.
    pub metadata_json: Option<String>,
}

impl CheckedPut {
    /// The absolute expiry in unix milliseconds for a write made at `now_ms`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{Capabilities, PutOptions};
    /// let checked = Capabilities::new("x").check_put("k", 0, &PutOptions::new().ttl(Duration::from_secs(1)), 5).unwrap();
    /// assert_eq!(checked.expires_at_ms(5), Some(1005));
    /// ```
    pub fn expires_at_ms(&self, now_ms: u64) -> Option<u64> {
        expires_at_ms(self.expiry, now_ms)
    }
}

/// The absolute time in unix milliseconds at which `expiry`, applied at `now_ms`, ends.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{Expiry, expires_at_ms};
/// assert_eq!(expires_at_ms(Some(Expiry::Ttl(Duration::from_millis(10))), 100), Some(110));
/// assert_eq!(expires_at_ms(Some(Expiry::At(2)), 100), Some(2000));
/// assert_eq!(expires_at_ms(None, 100), None);
/// ```
pub fn expires_at_ms(expiry: Option<Expiry>, now_ms: u64) -> Option<u64> {
    match expiry? {
        Expiry::Ttl(ttl) => {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            Some(now_ms.saturating_add(ms))
        }
        Expiry::At(secs) => Some(secs.saturating_mul(1000)),
    }
}

/// Parses a stored counter: a canonical decimal `i64` (`0`, or an optional `-` then a digit 1-9
/// then digits), the format every backend writes and Redis `INCRBY` accepts. Anything else,
/// including `+1`, `01`, `-0` or surrounding spaces, is not a counter.
///
/// ```
/// use kvkit_core::parse_counter;
/// assert_eq!(parse_counter(b"42"), Some(42));
/// assert_eq!(parse_counter(b"-7"), Some(-7));
/// assert_eq!(parse_counter(b"0"), Some(0));
/// assert_eq!(parse_counter(b"007"), None);
/// assert_eq!(parse_counter(b"+1"), None);
/// assert_eq!(parse_counter(b"9223372036854775808"), None);
/// ```
pub fn parse_counter(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [b'0'] => bytes.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Adds `delta` to a stored counter value, as every backend's `increment` does: the value must
/// be a canonical decimal `i64` ([`parse_counter`]), and the sum must not overflow.
///
/// ```
/// use kvkit_core::{Error, add_to_counter};
/// assert_eq!(add_to_counter("n", b"41", 1).unwrap(), 42);
/// assert!(matches!(add_to_counter("n", b"x", 1), Err(Error::NotACounter { .. })));
/// assert!(matches!(add_to_counter("n", b"9223372036854775807", 1), Err(Error::CounterOverflow { .. })));
/// ```
pub fn add_to_counter(key: &str, stored: &[u8], delta: i64) -> Result<i64> {
    let current = parse_counter(stored).ok_or_else(|| Error::NotACounter {
        key: RedactedKey::new(key),
    })?;
    current
        .checked_add(delta)
        .ok_or_else(|| Error::CounterOverflow {
            key: RedactedKey::new(key),
            delta,
        })
}

/// A stable 64-bit hash of a key (FNV-1a): the same in every process and on every machine, for
/// sharding keys and for correlating them in traces without recording them. Not keyed, so not
/// a defence against chosen keys: use it only where collisions cost balance, not correctness.
///
/// ```
/// assert_eq!(kvkit_core::stable_hash("a"), kvkit_core::stable_hash("a"));
/// assert_ne!(kvkit_core::stable_hash("a"), kvkit_core::stable_hash("b"));
/// ```
pub fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Rounds `d` up to a multiple of `precision` (a zero precision leaves it unchanged).
fn round_up(d: Duration, precision: Duration) -> Duration {
    let p = precision.as_nanos();
    if p == 0 {
        return d;
    }
    let n = d.as_nanos().div_ceil(p).saturating_mul(p);
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits.
    let nanos = u32::try_from(n % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_to_precision() {
        let ms = Duration::from_millis(1);
        assert_eq!(round_up(Duration::from_micros(1), ms), ms);
        assert_eq!(
            round_up(Duration::from_millis(5), ms),
            Duration::from_millis(5)
        );
        assert_eq!(
            round_up(Duration::from_millis(1001), Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert!(round_up(Duration::MAX, ms) >= Duration::from_secs(u64::MAX));
        assert_eq!(
            round_up(Duration::from_nanos(3), Duration::ZERO),
            Duration::from_nanos(3)
        );
    }

    #[test]
    fn huge_expiries_never_overflow() {
        assert_eq!(expires_at_ms(Some(Expiry::At(u64::MAX)), 0), Some(u64::MAX));
        assert_eq!(
            expires_at_ms(Some(Expiry::Ttl(Duration::MAX)), u64::MAX - 1),
            Some(u64::MAX)
        );
        let caps = Capabilities::new("x").with_min_ttl(Duration::MAX);
        assert!(matches!(
            caps.check_expiry(Some(Expiry::At(u64::MAX)), u64::MAX),
            Err(Error::ExpiryTooFar { .. })
        ));
        let caps = Capabilities::new("x");
        for expiry in [Expiry::At(u64::MAX), Expiry::At(MAX_EXPIRATION_SECS + 1)] {
            assert!(matches!(
                caps.check_expiry(Some(expiry), 0),
                Err(Error::ExpiryTooFar { .. })
            ));
        }
        assert!(matches!(
            caps.check_expiry(Some(Expiry::Ttl(Duration::MAX)), u64::MAX),
            Err(Error::ExpiryTooFar { .. })
        ));
        assert!(
            caps.check_expiry(Some(Expiry::At(MAX_EXPIRATION_SECS)), 0)
                .is_ok()
        );
    }
}
