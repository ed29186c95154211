//! What a backend allows and guarantees, and the validation every backend runs before any I/O.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::error::{Error, RedactedKey, Result};
use crate::time::{from_unix_secs, saturating_add};
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
    /// The latest expiration accepted: the end of year 9999 (9999-12-31T23:59:59Z), or earlier
    /// where the backend stores expirations in fewer bits (Cloudflare's runtime takes 32-bit
    /// seconds: 2038-01-19T03:14:07Z).
    pub latest_expiration: SystemTime,
}

/// The latest expiration accepted by default, in unix seconds: 9999-12-31T23:59:59Z.
const LATEST_EXPIRATION_SECS: u64 = 253_402_300_799;
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
            latest_expiration: from_unix_secs(LATEST_EXPIRATION_SECS),
        }
    }

    /// Cloudflare KV's limits (key ≤ 512 bytes, value ≤ 25 MiB, metadata ≤ 1024 bytes, TTL ≥ 60 s
    /// in whole seconds, expirations no later than 2038-01-19T03:14:07Z), still strongly
    /// consistent and atomic: adjust those for a real Cloudflare backend. The one profile of
    /// Cloudflare's limits ([`backend::cloudflare`](crate::backend::cloudflare)), used by the
    /// memory store's `cloudflare_limits()`, the REST backend and the Worker binding backend alike.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Capabilities, Error, Expiry};
    /// let caps = Capabilities::cloudflare("memory");
    /// assert_eq!(caps.max_value_bytes, 25 * 1024 * 1024);
    /// assert_eq!(caps.latest_expiration, UNIX_EPOCH + Duration::from_secs(2_147_483_647));
    /// let after_2038 = Expiry::At(caps.latest_expiration + Duration::from_secs(1));
    /// assert!(matches!(caps.check_expiry(Some(after_2038), UNIX_EPOCH), Err(Error::ExpiryTooFar { .. })));
    /// ```
    pub fn cloudflare(backend: &'static str) -> Self {
        use crate::backend::cloudflare;
        Self {
            min_ttl: cloudflare::MIN_TTL,
            ttl_precision: Duration::from_secs(1),
            max_key_bytes: cloudflare::MAX_KEY_BYTES,
            max_value_bytes: cloudflare::MAX_VALUE_BYTES,
            max_metadata_bytes: cloudflare::MAX_METADATA_BYTES,
            latest_expiration: from_unix_secs(cloudflare::LATEST_EXPIRATION_SECS),
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

    /// Sets the latest expiration accepted.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Capabilities, Expiry};
    /// let latest = UNIX_EPOCH + Duration::from_secs(2_147_483_647);
    /// let caps = Capabilities::new("x").with_latest_expiration(latest);
    /// assert!(caps.check_expiry(Some(Expiry::At(latest)), UNIX_EPOCH).is_ok());
    /// assert!(caps.check_expiry(Some(Expiry::At(latest + Duration::from_secs(1))), UNIX_EPOCH).is_err());
    /// ```
    pub fn with_latest_expiration(mut self, latest: SystemTime) -> Self {
        self.latest_expiration = latest;
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

    /// Checks an expiry against `min_ttl` and `latest_expiration`, given the current time, and
    /// returns it rounded up to `ttl_precision` (a TTL to a multiple of it, an instant to a
    /// multiple of it since the unix epoch), so a key never expires before it was asked to.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Capabilities, Error, Expiry};
    /// let caps = Capabilities::cloudflare("x");
    /// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// assert!(matches!(caps.check_expiry(Some(Expiry::Ttl(Duration::from_secs(59))), now),
    ///     Err(Error::TtlTooShort { .. })));
    /// assert_eq!(caps.check_expiry(Some(Expiry::Ttl(Duration::from_millis(60_001))), now).unwrap(),
    ///     Some(Expiry::Ttl(Duration::from_secs(61))));
    /// assert!(matches!(caps.check_expiry(Some(Expiry::At(now + Duration::from_secs(30))), now),
    ///     Err(Error::ExpirationNotInFuture { earliest, .. }) if earliest == now + Duration::from_secs(60)));
    /// assert_eq!(caps.check_expiry(Some(Expiry::At(now + Duration::from_millis(60_500))), now).unwrap(),
    ///     Some(Expiry::At(now + Duration::from_secs(61))));
    /// ```
    pub fn check_expiry(&self, expiry: Option<Expiry>, now: SystemTime) -> Result<Option<Expiry>> {
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
                if saturating_add(now, ttl) > self.latest_expiration {
                    return Err(Error::ExpiryTooFar {
                        expiry: Expiry::Ttl(ttl),
                        latest: self.latest_expiration,
                    });
                }
                Ok(Some(Expiry::Ttl(ttl)))
            }
            Some(Expiry::At(at)) => {
                let at = crate::time::round_up(at, self.ttl_precision);
                let earliest =
                    crate::time::round_up(saturating_add(now, self.min_ttl), self.ttl_precision);
                if at < earliest {
                    return Err(Error::ExpirationNotInFuture {
                        expiration: at,
                        earliest,
                    });
                }
                if at > self.latest_expiration {
                    return Err(Error::ExpiryTooFar {
                        expiry: Expiry::At(at),
                        latest: self.latest_expiration,
                    });
                }
                Ok(Some(Expiry::At(at)))
            }
        }
    }

    /// When `expiry`, applied at `now`, ends, rounded up to `ttl_precision` since the unix epoch:
    /// the instant a backend stores and reports for it.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Capabilities, Expiry};
    /// let now = UNIX_EPOCH + Duration::from_millis(100);
    /// let in_a_minute = Some(Expiry::Ttl(Duration::from_secs(60)));
    /// assert_eq!(Capabilities::new("x").expires_at(in_a_minute, now), Some(now + Duration::from_secs(60)));
    /// assert_eq!(Capabilities::cloudflare("x").expires_at(in_a_minute, now), Some(UNIX_EPOCH + Duration::from_secs(61)));
    /// assert_eq!(Capabilities::new("x").expires_at(None, now), None);
    /// ```
    pub fn expires_at(&self, expiry: Option<Expiry>, now: SystemTime) -> Option<SystemTime> {
        expiry.map(|expiry| crate::time::round_up(expiry.ends_at(now), self.ttl_precision))
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
    /// let checked = caps.check_put("k", 1, &PutOptions::new(), std::time::UNIX_EPOCH).unwrap();
    /// assert_eq!(checked.expiry, None);
    /// assert_eq!(checked.metadata_json, None);
    /// ```
    pub fn check_put(
        &self,
        key: &str,
        value_len: usize,
        options: &crate::PutOptions,
        now: SystemTime,
    ) -> Result<CheckedPut> {
        self.check_key(key)?;
        self.check_condition(&options.condition, "put", true)?;
        self.check_value(key, value_len)?;
        let metadata_json = self.check_metadata(key, options.metadata.as_ref())?;
        let expiry = self.check_expiry(options.expiry, now)?;
        Ok(CheckedPut {
            expiry,
            metadata_json,
            precision: self.ttl_precision,
        })
    }
}

/// The validated parts of a write, from [`Capabilities::check_put`].
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::{Capabilities, Expiry, PutOptions};
/// let checked = Capabilities::new("x")
///     .check_put("k", 0, &PutOptions::new().ttl(Duration::from_micros(1500)), UNIX_EPOCH)
///     .unwrap();
/// assert_eq!(checked.expiry, Some(Expiry::Ttl(Duration::from_millis(2))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedPut {
    /// The expiry, rounded up to the backend's precision.
    pub expiry: Option<Expiry>,
    /// The metadata serialized as JSON.
    pub metadata_json: Option<String>,
    /// The backend's `ttl_precision`.
    precision: Duration,
}

impl CheckedPut {
    /// When the entry expires, for a write made at `now`, rounded up to the backend's
    /// `ttl_precision` since the unix epoch (so on Cloudflare's profile, a whole second).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Capabilities, PutOptions};
    /// let now = UNIX_EPOCH + Duration::from_millis(5);
    /// let ttl = PutOptions::new().ttl(Duration::from_secs(60));
    /// let checked = Capabilities::new("x").check_put("k", 0, &ttl, now).unwrap();
    /// assert_eq!(checked.expires_at(now), Some(now + Duration::from_secs(60)));
    /// let checked = Capabilities::cloudflare("x").check_put("k", 0, &ttl, now).unwrap();
    /// assert_eq!(checked.expires_at(now), Some(UNIX_EPOCH + Duration::from_secs(61)));
    /// ```
    pub fn expires_at(&self, now: SystemTime) -> Option<SystemTime> {
        self.expiry
            .map(|expiry| crate::time::round_up(expiry.ends_at(now), self.precision))
    }
}

/// Parses a stored counter: a canonical decimal `i64` (`0`, or an optional `-` then a digit 1-9
/// then digits), the format every backend writes and Redis `INCRBY` accepts. Anything else,
/// including `+1`, `01`, `-0` or surrounding spaces, is not a counter.
///
/// ```
/// use kvkit_core::backend::parse_counter;
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
/// use kvkit_core::Error;
/// use kvkit_core::backend::add_to_counter;
/// assert_eq!(add_to_counter("n", b"41", 1).unwrap(), 42);
/// assert!(matches!(add_to_counter("n", b"x", 1), Err(Error::NotACounter { .. })));
/// assert!(matches!(add_to_counter("n", b"9223372036854775807", 1), Err(Error::CounterOverflow { .. })));
/// ```
pub fn add_to_counter(key: &str, stored: &[u8], delta: i64) -> Result<i64> {
    let current = parse_counter(stored).ok_or_else(|| Error::NotACounter {
        key: RedactedKey::new(key),
    })?;
    add_to_count(key, current, delta)
}

/// Adds `delta` to a counter `key` already holds as an integer (a backend that keeps counters
/// parsed), failing on overflow as [`add_to_counter`] does.
///
/// ```
/// use kvkit_core::Error;
/// use kvkit_core::backend::add_to_count;
/// assert_eq!(add_to_count("n", 41, 1).unwrap(), 42);
/// assert!(matches!(add_to_count("n", i64::MIN, -1), Err(Error::CounterOverflow { delta: -1, .. })));
/// ```
pub fn add_to_count(key: &str, current: i64, delta: i64) -> Result<i64> {
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
/// use kvkit_core::backend::stable_hash;
/// assert_eq!(stable_hash("a"), stable_hash("a"));
/// assert_ne!(stable_hash("a"), stable_hash("b"));
/// ```
pub fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Rounds `d` up to a multiple of `precision` (a zero precision leaves it unchanged).
pub(crate) fn round_up(d: Duration, precision: Duration) -> Duration {
    const SECOND: u32 = 1_000_000_000;
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    // The usual precisions (a millisecond, a second) in 64-bit arithmetic: every write and
    // counter rounds its expiry, and 128-bit division is slow.
    match (precision.as_secs(), precision.subsec_nanos()) {
        (0, 0) => return d,
        (0, p) if SECOND.is_multiple_of(p) => {
            let nanos = nanos.div_ceil(p) * p;
            return if nanos == SECOND {
                secs.checked_add(1)
                    .map_or(Duration::MAX, Duration::from_secs)
            } else {
                Duration::new(secs, nanos)
            };
        }
        (p, 0) => {
            let whole = secs.saturating_add(u64::from(nanos > 0));
            return Duration::from_secs(whole.div_ceil(p).saturating_mul(p));
        }
        _ => {}
    }
    let p = precision.as_nanos();
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

    /// The 64-bit shortcuts agree with rounding the nanoseconds in 128 bits.
    #[test]
    fn round_up_shortcuts_agree_with_the_general_rule() {
        let reference = |d: Duration, p: Duration| {
            let p = p.as_nanos();
            let n = d.as_nanos().div_ceil(p) * p;
            Duration::new(
                u64::try_from(n / 1_000_000_000).unwrap(),
                u32::try_from(n % 1_000_000_000).unwrap(),
            )
        };
        let precisions = [
            1,
            1_000,
            1_000_000,
            250_000_000,
            1_000_000_000,
            60_000_000_000,
            7,
        ]
        .map(Duration::from_nanos)
        .into_iter()
        .chain([Duration::from_millis(1_500)]);
        for p in precisions {
            for secs in [0, 1, 59, 60, 61, 1_767_225_600] {
                for nanos in [
                    0,
                    1,
                    999_999,
                    1_000_000,
                    1_000_001,
                    500_000_000,
                    999_999_999,
                ] {
                    let d = Duration::new(secs, nanos);
                    assert_eq!(round_up(d, p), reference(d, p), "{d:?} to {p:?}");
                }
            }
        }
    }

    #[test]
    fn huge_expiries_never_overflow() {
        use std::time::UNIX_EPOCH;
        let far = crate::time::from_unix_ms(u64::MAX);
        assert_eq!(Expiry::At(far).ends_at(UNIX_EPOCH), far);
        assert!(Expiry::Ttl(Duration::MAX).ends_at(far) >= far);
        let caps = Capabilities::new("x").with_min_ttl(Duration::MAX);
        assert!(matches!(
            caps.check_expiry(Some(Expiry::At(far)), far),
            Err(Error::ExpirationNotInFuture { .. })
        ));
        let caps = Capabilities::new("x");
        let latest = from_unix_secs(LATEST_EXPIRATION_SECS);
        for at in [far, latest + Duration::from_secs(1)] {
            assert!(matches!(
                caps.check_expiry(Some(Expiry::At(at)), UNIX_EPOCH),
                Err(Error::ExpiryTooFar { .. })
            ));
        }
        assert!(matches!(
            caps.check_expiry(Some(Expiry::Ttl(Duration::MAX)), far),
            Err(Error::ExpiryTooFar { .. })
        ));
        assert!(
            caps.check_expiry(Some(Expiry::At(latest)), UNIX_EPOCH)
                .is_ok()
        );
    }
}
