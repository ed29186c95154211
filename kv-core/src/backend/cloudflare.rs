//! Cloudflare Workers KV's profile, in one place: its limits (through
//! [`Capabilities::cloudflare`]), the rule for the expiration an increment writes back, cursors
//! bound to their prefix, and batch de-duplication. The memory store's `cloudflare_limits()`,
//! the REST backend (`kvkit-cloudflare`) and the Worker binding backend (`kvkit-worker`) use
//! these, so code tested on one behaves the same on the others.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::{cursor, from_unix_secs, stable_hash, unix_ms, unix_secs_ceil};
use crate::{Capabilities, Error, Expiry, RedactedKey, Result};

/// The longest key, in bytes.
///
/// ```
/// assert_eq!(kvkit_core::Capabilities::cloudflare("x").max_key_bytes, kvkit_core::backend::cloudflare::MAX_KEY_BYTES);
/// ```
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value, in bytes (25 MiB).
///
/// ```
/// assert_eq!(kvkit_core::backend::cloudflare::MAX_VALUE_BYTES, 25 << 20);
/// ```
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// The largest metadata, in bytes of serialized JSON.
///
/// ```
/// assert_eq!(kvkit_core::backend::cloudflare::MAX_METADATA_BYTES, 1024);
/// ```
pub const MAX_METADATA_BYTES: usize = 1024;
/// The shortest TTL, and how far ahead an absolute expiration must be.
///
/// ```
/// assert_eq!(kvkit_core::backend::cloudflare::MIN_TTL.as_secs(), 60);
/// ```
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// The latest expiration, in unix seconds: the runtime takes 32-bit seconds
/// (2038-01-19T03:14:07Z).
pub(crate) const LATEST_EXPIRATION_SECS: u64 = 2_147_483_647;

/// The expiry an increment writes back with the new count of a counter that expires at
/// `expiration`: that same instant, unless it is too close for Cloudflare to accept (it takes
/// expirations at least 60 s past its current whole second; one second more is allowed for the
/// request to get there), and then a 60 s TTL, the earliest it accepts. So an increment in
/// the last minute of a counter's life moves its expiry to 60 s from now.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::Expiry;
/// use kvkit_core::backend::cloudflare::counter_expiry;
/// let now = UNIX_EPOCH + Duration::from_millis(1_000_500);
/// let later = UNIX_EPOCH + Duration::from_secs(1_000 + 3_600);
/// assert_eq!(counter_expiry(later, now), Expiry::At(later));
/// let soon = UNIX_EPOCH + Duration::from_secs(1_000 + 30);
/// assert_eq!(counter_expiry(soon, now), Expiry::Ttl(Duration::from_secs(60)));
/// ```
pub fn counter_expiry(expiration: SystemTime, now: SystemTime) -> Expiry {
    let earliest = from_unix_secs(unix_ms(now) / 1000 + 1 + MIN_TTL.as_secs());
    if expiration >= earliest {
        Expiry::At(expiration)
    } else {
        Expiry::Ttl(MIN_TTL)
    }
}

/// What a write sends Cloudflare for its expiry: the `expiration` or the `expiration_ttl` of the
/// REST API and of the binding's put options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteExpiry {
    /// `expiration`: an absolute time, in unix seconds.
    Expiration(u64),
    /// `expiration_ttl`: seconds after Cloudflare's current whole second.
    ExpirationTtl(u64),
}

/// The expiry a write made at `now` sends for `expiry` (already checked by
/// [`Capabilities::check_expiry`], so whole seconds). An absolute expiration goes as it is. A TTL
/// gets one second more when `now` is inside a second: Cloudflare adds the TTL to its current
/// whole second, so without it the entry would live up to a second less than asked.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::Expiry;
/// use kvkit_core::backend::cloudflare::{WriteExpiry, write_expiry};
/// let ttl = Expiry::Ttl(Duration::from_secs(60));
/// let whole = UNIX_EPOCH + Duration::from_secs(1_000);
/// assert_eq!(write_expiry(ttl, whole), WriteExpiry::ExpirationTtl(60));
/// let started = whole + Duration::from_millis(1);
/// assert_eq!(write_expiry(ttl, started), WriteExpiry::ExpirationTtl(61));
/// let at = Expiry::At(UNIX_EPOCH + Duration::from_secs(5_000));
/// assert_eq!(write_expiry(at, started), WriteExpiry::Expiration(5_000));
/// ```
pub fn write_expiry(expiry: Expiry, now: SystemTime) -> WriteExpiry {
    match expiry {
        Expiry::At(at) => WriteExpiry::Expiration(unix_secs_ceil(at)),
        Expiry::Ttl(ttl) => {
            let started = u64::from(!unix_ms(now).is_multiple_of(1000));
            WriteExpiry::ExpirationTtl(ttl.as_secs().saturating_add(started))
        }
    }
}

/// Where a listing continues: Cloudflare's cursor of the page to read (`None` for the first),
/// and, when the previous page stopped inside that page, the last key it returned. Encoded as
/// a [`cursor`] bound to the prefix it was issued for.
///
/// ```
/// use kvkit_core::Error;
/// use kvkit_core::backend::cloudflare::ListCursor;
/// let next = ListCursor { cf_cursor: Some("opaque".into()), after: None };
/// let raw = next.encode("user:");
/// assert_eq!(ListCursor::decode(&raw, "user:").unwrap(), next);
/// assert!(matches!(ListCursor::decode(&raw, "user"), Err(Error::InvalidCursor { .. })));
/// assert!(matches!(ListCursor::decode("made up", "user:"), Err(Error::InvalidCursor { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListCursor {
    /// Cloudflare's cursor of the page to read next; `None` for its first page.
    #[serde(rename = "c")]
    pub cf_cursor: Option<String>,
    /// The last key returned from that page, when the previous page stopped inside it.
    #[serde(rename = "a")]
    pub after: Option<String>,
}

/// A [`ListCursor`] with the hash of the prefix it belongs to.
#[derive(Serialize, Deserialize)]
struct Bound {
    #[serde(rename = "p")]
    prefix_hash: u64,
    #[serde(flatten)]
    state: ListCursor,
}

impl ListCursor {
    /// The cursor to hand out for continuing a listing of `prefix`.
    pub fn encode(&self, prefix: &str) -> String {
        let bound = Bound {
            prefix_hash: stable_hash(prefix),
            state: self.clone(),
        };
        // Serializing strings and an integer cannot fail.
        cursor::encode("", &serde_json::to_string(&bound).unwrap_or_default())
    }

    /// Decodes a cursor issued by [`encode`](Self::encode) for a listing of exactly `prefix`;
    /// anything else is [`Error::InvalidCursor`].
    pub fn decode(raw: &str, prefix: &str) -> Result<Self> {
        let invalid = || Error::InvalidCursor {
            cursor: RedactedKey::new(raw),
        };
        let json = cursor::decode(raw, "")?;
        let bound: Bound = serde_json::from_str(&json).map_err(|_| invalid())?;
        if bound.prefix_hash != stable_hash(prefix) {
            return Err(invalid());
        }
        Ok(bound.state)
    }
}

/// The last write of each key of a batch, in the order of their first appearance: a bulk
/// request with one key twice has no defined winner on Cloudflare, the contract says the last.
///
/// ```
/// use kvkit_core::backend::cloudflare::last_per_key;
/// let items = vec![("a".to_owned(), 1), ("b".to_owned(), 2), ("a".to_owned(), 3)];
/// assert_eq!(last_per_key(items), vec![("a".to_owned(), 3), ("b".to_owned(), 2)]);
/// ```
pub fn last_per_key<T>(items: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut at: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<(String, T)> = Vec::with_capacity(items.len());
    for (key, item) in items {
        match at.get(&key) {
            Some(&i) => out[i].1 = item,
            None => {
                at.insert(key.clone(), out.len());
                out.push((key, item));
            }
        }
    }
    out
}

/// What a conditional delete gets where Workers KV has no conditional operations: the key is
/// checked, then the call is refused with [`Error::Unsupported`], never applied on a best-effort
/// basis.
///
/// ```
/// use kvkit_core::{Capabilities, Error};
/// use kvkit_core::backend::cloudflare::refuse_conditional_delete;
/// let caps = Capabilities::cloudflare("cloudflare").with_conditional_writes(false);
/// assert!(matches!(refuse_conditional_delete(&caps, "k"), Err(Error::Unsupported { .. })));
/// assert!(matches!(refuse_conditional_delete(&caps, ""), Err(Error::EmptyKey)));
/// ```
pub fn refuse_conditional_delete(caps: &Capabilities, key: &str) -> Result<()> {
    caps.check_key(key)?;
    Err(Error::Unsupported {
        backend: caps.backend,
        operation: "conditional writes",
    })
}
