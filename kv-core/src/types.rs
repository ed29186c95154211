//! The option structs and results of the [`KvStore`](crate::KvStore) operations.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;

/// When a written key expires.
///
/// Instants are [`SystemTime`]s and durations [`Duration`]s everywhere in the API. On `wasm32`
/// read the current time with [`SystemClock`](crate::SystemClock) (`SystemTime::now()` panics
/// there).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::Expiry;
/// let in_a_minute = Expiry::Ttl(Duration::from_secs(60));
/// let at_new_year = Expiry::At(UNIX_EPOCH + Duration::from_secs(1_798_761_600));
/// assert_ne!(in_a_minute, at_new_year);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// Expire this long after the write. Must be at least the backend's
    /// [`min_ttl`](crate::Capabilities::min_ttl); backends round it up to their
    /// [`ttl_precision`](crate::Capabilities::ttl_precision).
    Ttl(Duration),
    /// Expire at this instant. Must be at least `min_ttl` from now and no later than the
    /// backend's [`latest_expiration`](crate::Capabilities::latest_expiration); backends round
    /// it up to their `ttl_precision` (whole seconds on Cloudflare).
    At(SystemTime),
}

impl Expiry {
    /// The instant this expiry ends for a write made at `now` (saturating far in the future),
    /// before any backend rounds it to its precision
    /// ([`Capabilities::expires_at`](crate::Capabilities::expires_at) does both).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::Expiry;
    /// let now = UNIX_EPOCH + Duration::from_millis(1_500);
    /// assert_eq!(Expiry::Ttl(Duration::from_secs(60)).ends_at(now), now + Duration::from_secs(60));
    /// let new_year = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
    /// assert_eq!(Expiry::At(new_year).ends_at(now), new_year);
    /// ```
    pub fn ends_at(self, now: SystemTime) -> SystemTime {
        match self {
            Expiry::Ttl(ttl) => crate::time::saturating_add(now, ttl),
            Expiry::At(at) => at,
        }
    }
}

/// `a TTL of 60s` or the instant in RFC 3339 form (`2038-01-19T03:14:07Z`).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::Expiry;
/// assert_eq!(Expiry::Ttl(Duration::from_secs(60)).to_string(), "a TTL of 60s");
/// assert_eq!(Expiry::At(UNIX_EPOCH + Duration::from_secs(60)).to_string(), "1970-01-01T00:01:00Z");
/// ```
impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expiry::Ttl(ttl) => write!(f, "a TTL of {ttl:?}"),
            Expiry::At(at) => write!(f, "{}", crate::time::rfc3339(*at)),
        }
    }
}

/// The version of an entry, as [`get_with_metadata`](crate::KvStore::get_with_metadata) read it:
/// an opaque token that changes whenever the entry does, for a compare-and-set with
/// [`PutOptions::if_version`] or [`KvStore::delete_if_version`](crate::KvStore::delete_if_version).
///
/// Compare versions only for equality, and only versions read from the same store. How a
/// backend makes them is its own: the memory store and Redis hash the entry's value, metadata
/// and expiration (a keyed hash in memory, SHA-1 on Redis), so a version costs no storage, and
/// rewriting a key with exactly the same content leaves its version as it was (a compare-and-set
/// against it then succeeds, which is what a read-modify-write needs: the entry is as it was
/// read).
///
/// ```
/// use kvkit_core::Version;
/// assert_eq!(Version::from_u64(7), Version::from_u64(7));
/// assert_ne!(Version::from_u64(7), Version::from_token("7"));
/// assert_eq!(Version::from_token("abc").to_string(), "abc");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(VersionRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum VersionRepr {
    Number(u64),
    Token(Box<str>),
}

impl Version {
    /// A version that is a number (for backend implementations).
    ///
    /// ```
    /// assert_eq!(kvkit_core::Version::from_u64(3).to_string(), "3");
    /// ```
    pub fn from_u64(number: u64) -> Self {
        Version(VersionRepr::Number(number))
    }

    /// A version that is a token (for backend implementations).
    ///
    /// ```
    /// let v = kvkit_core::Version::from_token("5d41402a");
    /// assert_eq!(v.as_token(), Some("5d41402a"));
    /// ```
    pub fn from_token(token: impl Into<Box<str>>) -> Self {
        Version(VersionRepr::Token(token.into()))
    }

    /// The number, if this version is one.
    ///
    /// ```
    /// assert_eq!(kvkit_core::Version::from_u64(3).as_u64(), Some(3));
    /// assert_eq!(kvkit_core::Version::from_token("3").as_u64(), None);
    /// ```
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            VersionRepr::Number(n) => Some(n),
            VersionRepr::Token(_) => None,
        }
    }

    /// The token, if this version is one.
    ///
    /// ```
    /// assert_eq!(kvkit_core::Version::from_u64(3).as_token(), None);
    /// ```
    pub fn as_token(&self) -> Option<&str> {
        match &self.0 {
            VersionRepr::Number(_) => None,
            VersionRepr::Token(t) => Some(t),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            VersionRepr::Number(n) => write!(f, "{n}"),
            VersionRepr::Token(t) => f.write_str(t),
        }
    }
}

/// When a put may write: always (the default), only if the key is absent (or expired), or only
/// if the entry still has the [`Version`] the caller read. A put whose condition does not hold
/// writes nothing and fails with [`Error::ConditionFailed`](crate::Error::ConditionFailed).
///
/// Exact where [`Capabilities::conditional_writes`](crate::Capabilities::conditional_writes)
/// is true: of many concurrent conditional puts against one version, exactly one succeeds.
/// Elsewhere (Cloudflare KV) a condition is refused with
/// [`Error::Unsupported`](crate::Error::Unsupported), never applied on a best-effort basis.
///
/// ```
/// use kvkit_core::{PutOptions, Version, WriteCondition};
/// assert_eq!(PutOptions::new().condition, WriteCondition::Always);
/// assert_eq!(PutOptions::new().if_absent().condition, WriteCondition::IfAbsent);
/// let v = Version::from_u64(1);
/// assert_eq!(PutOptions::new().if_version(v.clone()).condition, WriteCondition::IfVersion(v));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteCondition {
    /// Write whatever the key holds.
    #[default]
    Always,
    /// Write only if the key is absent or expired.
    IfAbsent,
    /// Write only if the key is present with this version.
    IfVersion(Version),
}

/// Options for [`KvStore::put`](crate::KvStore::put) and
/// [`KvStore::put_if_absent`](crate::KvStore::put_if_absent).
///
/// A put replaces the value, the metadata and the expiration together: a put without metadata
/// removes metadata written earlier, a put without expiry makes the key permanent.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::PutOptions;
/// let opts = PutOptions::new()
///     .ttl(Duration::from_secs(300))
///     .metadata(serde_json::json!({"etag": "abc"}));
/// assert!(opts.expiry.is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// When the key expires; `None` keeps it until deleted.
    pub expiry: Option<Expiry>,
    /// JSON metadata stored beside the value, returned by
    /// [`get_with_metadata`](crate::KvStore::get_with_metadata) and [`list`](crate::KvStore::list).
    pub metadata: Option<Value>,
    /// When the put may write; see [`WriteCondition`]. Only [`KvStore::put`](crate::KvStore::put)
    /// honours it: batches and [`put_if_absent`](crate::KvStore::put_if_absent) refuse any but
    /// [`WriteCondition::Always`] with [`Error::Unsupported`](crate::Error::Unsupported).
    pub condition: WriteCondition,
}

impl PutOptions {
    /// No expiry, no metadata.
    ///
    /// ```
    /// assert_eq!(kvkit_core::PutOptions::new(), kvkit_core::PutOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire `ttl` after the write.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = kvkit_core::PutOptions::new().ttl(Duration::from_secs(60));
    /// assert_eq!(opts.expiry, Some(kvkit_core::Expiry::Ttl(Duration::from_secs(60))));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry = Some(Expiry::Ttl(ttl));
        self
    }

    /// Expire at `at`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let at = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    /// let opts = kvkit_core::PutOptions::new().expire_at(at);
    /// assert_eq!(opts.expiry, Some(kvkit_core::Expiry::At(at)));
    /// ```
    pub fn expire_at(mut self, at: SystemTime) -> Self {
        self.expiry = Some(Expiry::At(at));
        self
    }

    /// Sets the expiry (or clears it with `None`).
    ///
    /// ```
    /// let opts = kvkit_core::PutOptions::new().expire_at(std::time::UNIX_EPOCH).expiry(None);
    /// assert_eq!(opts.expiry, None);
    /// ```
    pub fn expiry(mut self, expiry: Option<Expiry>) -> Self {
        self.expiry = expiry;
        self
    }

    /// Stores `metadata` beside the value.
    ///
    /// ```
    /// let opts = kvkit_core::PutOptions::new().metadata(serde_json::json!({"v": 1}));
    /// assert_eq!(opts.metadata, Some(serde_json::json!({"v": 1})));
    /// ```
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Writes only if the key is absent or expired ([`WriteCondition::IfAbsent`]).
    ///
    /// ```
    /// use kvkit_core::{Error, KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("k", "first".into(), PutOptions::new().if_absent()).await?;
    /// let again = store.put("k", "second".into(), PutOptions::new().if_absent()).await;
    /// assert!(matches!(again, Err(Error::ConditionFailed { .. })));
    /// assert_eq!(store.get("k").await?.as_deref(), Some(&b"first"[..]));
    /// # Ok(()) }
    /// ```
    pub fn if_absent(mut self) -> Self {
        self.condition = WriteCondition::IfAbsent;
        self
    }

    /// Writes only if the key still has `version` ([`WriteCondition::IfVersion`]): a
    /// compare-and-set, for a read-modify-write that never overwrites a change it did not see.
    ///
    /// ```
    /// use kvkit_core::{Error, KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("n", "1".into(), PutOptions::new()).await?;
    /// let read = store.get_with_metadata("n").await?.expect("written");
    /// let version = read.version.expect("the memory store versions entries");
    /// store.put("n", "2".into(), PutOptions::new().if_version(version.clone())).await?;
    /// // The entry changed since `version` was read: the second compare-and-set fails.
    /// let stale = store.put("n", "3".into(), PutOptions::new().if_version(version)).await;
    /// assert!(matches!(stale, Err(Error::ConditionFailed { .. })));
    /// assert_eq!(store.get("n").await?.as_deref(), Some(&b"2"[..]));
    /// # Ok(()) }
    /// ```
    pub fn if_version(mut self, version: Version) -> Self {
        self.condition = WriteCondition::IfVersion(version);
        self
    }

    /// Sets the write condition.
    ///
    /// ```
    /// use kvkit_core::{PutOptions, WriteCondition};
    /// let opts = PutOptions::new().condition(WriteCondition::IfAbsent);
    /// assert_eq!(opts.condition, WriteCondition::IfAbsent);
    /// ```
    pub fn condition(mut self, condition: WriteCondition) -> Self {
        self.condition = condition;
        self
    }
}

/// Options for [`KvStore::increment`](crate::KvStore::increment).
///
/// ```
/// use std::time::Duration;
/// let opts = kvkit_core::CounterOptions::new().ttl(Duration::from_secs(60));
/// assert!(opts.expiry_on_create.is_some());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterOptions {
    /// The expiry given to the counter when the increment creates it. An increment of an existing
    /// counter keeps that counter's expiry, so a fixed window stays fixed.
    pub expiry_on_create: Option<Expiry>,
}

impl CounterOptions {
    /// No expiry.
    ///
    /// ```
    /// assert_eq!(kvkit_core::CounterOptions::new().expiry_on_create, None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire `ttl` after the increment that creates the counter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = kvkit_core::CounterOptions::new().ttl(Duration::from_secs(1));
    /// assert_eq!(opts.expiry_on_create, Some(kvkit_core::Expiry::Ttl(Duration::from_secs(1))));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry_on_create = Some(Expiry::Ttl(ttl));
        self
    }

    /// Expire at `at` when the increment creates the counter.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let at = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    /// let opts = kvkit_core::CounterOptions::new().expire_at(at);
    /// assert_eq!(opts.expiry_on_create, Some(kvkit_core::Expiry::At(at)));
    /// ```
    pub fn expire_at(mut self, at: SystemTime) -> Self {
        self.expiry_on_create = Some(Expiry::At(at));
        self
    }
}

/// A value read together with its metadata and expiration.
///
/// ```
/// use kvkit_core::{KvStore, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_memory::MemoryStore::new();
/// store.put("k", "v".into(), PutOptions::new().metadata(serde_json::json!(1))).await?;
/// let entry = store.get_with_metadata("k").await?.expect("present");
/// assert_eq!(entry.value, "v");
/// assert_eq!(entry.metadata, Some(serde_json::json!(1)));
/// assert_eq!(entry.expiration, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The stored bytes.
    pub value: Bytes,
    /// The metadata written with the value, if any.
    pub metadata: Option<Value>,
    /// When the key expires, if it does, at the backend's precision (milliseconds on memory and
    /// Redis, whole seconds rounded up on Cloudflare).
    pub expiration: Option<SystemTime>,
    /// The entry's version, for a compare-and-set ([`PutOptions::if_version`]); `None` where
    /// the store has no conditional writes
    /// ([`Capabilities::conditional_writes`](crate::Capabilities::conditional_writes)).
    pub version: Option<Version>,
}

impl Entry {
    /// Builds an entry (for backend implementations).
    ///
    /// ```
    /// let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    /// let e = kvkit_core::Entry::new("v".into(), None, Some(at));
    /// assert_eq!(e.expiration, Some(at));
    /// ```
    pub fn new(value: Bytes, metadata: Option<Value>, expiration: Option<SystemTime>) -> Self {
        Self {
            value,
            metadata,
            expiration,
            version: None,
        }
    }

    /// The entry with its version (for backend implementations).
    ///
    /// ```
    /// use kvkit_core::{Entry, Version};
    /// let e = Entry::new("v".into(), None, None).with_version(Version::from_u64(9));
    /// assert_eq!(e.version, Some(Version::from_u64(9)));
    /// ```
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }
}

/// Options for [`KvStore::list`](crate::KvStore::list).
///
/// ```
/// let opts = kvkit_core::ListOptions::new().prefix("user:").limit(10);
/// assert_eq!(opts.prefix, "user:");
/// assert_eq!(opts.limit, Some(10));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only keys starting with these bytes. Empty lists every key.
    pub prefix: String,
    /// The most keys in one page: 1 to [`max_list_limit`](crate::Capabilities::max_list_limit)
    /// (1000 on every backend); `None` means the maximum.
    pub limit: Option<usize>,
    /// The cursor of the previous page, to continue after it.
    pub cursor: Option<String>,
}

impl ListOptions {
    /// Every key, first page, largest page size.
    ///
    /// ```
    /// assert_eq!(kvkit_core::ListOptions::new().limit, None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Only keys starting with `prefix`.
    ///
    /// ```
    /// assert_eq!(kvkit_core::ListOptions::new().prefix("a").prefix, "a");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// At most `limit` keys in the page.
    ///
    /// ```
    /// assert_eq!(kvkit_core::ListOptions::new().limit(7).limit, Some(7));
    /// ```
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continue after the page that returned `cursor`.
    ///
    /// ```
    /// let opts = kvkit_core::ListOptions::new().cursor(Some("abc".to_string()));
    /// assert_eq!(opts.cursor.as_deref(), Some("abc"));
    /// ```
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// One key of a [`ListPage`].
///
/// ```
/// let key = kvkit_core::KeyInfo::new("a".into(), None, None);
/// assert_eq!(key.name, "a");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key.
    pub name: String,
    /// When it expires, if it does, at the backend's precision (as [`Entry::expiration`]).
    pub expiration: Option<SystemTime>,
    /// Its metadata, if any.
    pub metadata: Option<Value>,
}

impl KeyInfo {
    /// Builds a key description (for backend implementations).
    ///
    /// ```
    /// let at = std::time::UNIX_EPOCH;
    /// let key = kvkit_core::KeyInfo::new("a".into(), Some(at), Some(serde_json::json!(true)));
    /// assert_eq!(key.expiration, Some(at));
    /// ```
    pub fn new(name: String, expiration: Option<SystemTime>, metadata: Option<Value>) -> Self {
        Self {
            name,
            expiration,
            metadata,
        }
    }
}

/// One page of a listing.
///
/// ```
/// use kvkit_core::{KvStore, ListOptions, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_memory::MemoryStore::new();
/// for k in ["b", "a", "c"] {
///     store.put(k, "x".into(), PutOptions::new()).await?;
/// }
/// let page = store.list(ListOptions::new().limit(2)).await?;
/// let names: Vec<_> = page.keys.iter().map(|k| k.name.as_str()).collect();
/// assert_eq!(names, ["a", "b"]);
/// assert!(!page.list_complete);
/// let rest = store.list(ListOptions::new().limit(2).cursor(page.cursor)).await?;
/// assert_eq!(rest.keys[0].name, "c");
/// assert!(rest.list_complete);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ListPage {
    /// The keys of this page, in byte-lexicographic order.
    pub keys: Vec<KeyInfo>,
    /// `true` when there is nothing after this page.
    pub list_complete: bool,
    /// Pass to [`ListOptions::cursor`] to get the next page; `None` when `list_complete`.
    pub cursor: Option<String>,
}

impl ListPage {
    /// Builds a page (for backend implementations). `cursor` must be `None` exactly when the
    /// listing is complete.
    ///
    /// ```
    /// let page = kvkit_core::ListPage::new(vec![], None);
    /// assert!(page.list_complete);
    /// ```
    pub fn new(keys: Vec<KeyInfo>, cursor: Option<String>) -> Self {
        Self {
            keys,
            list_complete: cursor.is_none(),
            cursor,
        }
    }
}

/// One write of a [`KvStore::put_many`](crate::KvStore::put_many) batch.
///
/// ```
/// let item = kvkit_core::PutItem::new("k", "v").options(kvkit_core::PutOptions::new());
/// assert_eq!(item.key, "k");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PutItem {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Its expiry and metadata.
    pub options: PutOptions,
}

impl PutItem {
    /// A write of `value` to `key` with default options.
    ///
    /// ```
    /// let item = kvkit_core::PutItem::new("k", vec![1u8, 2]);
    /// assert_eq!(&item.value[..], &[1, 2]);
    /// ```
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            options: PutOptions::default(),
        }
    }

    /// Sets the expiry and metadata.
    ///
    /// ```
    /// use std::time::Duration;
    /// let item = kvkit_core::PutItem::new("k", "v").options(kvkit_core::PutOptions::new().ttl(Duration::from_secs(60)));
    /// assert!(item.options.expiry.is_some());
    /// ```
    pub fn options(mut self, options: PutOptions) -> Self {
        self.options = options;
        self
    }
}
