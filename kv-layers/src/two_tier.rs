//! [`TwoTier`]: a bounded local memory tier in front of a remote store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kvkit_core::{
    Capabilities, Clock, Consistency, CounterOptions, Entry, KvStore, ListOptions, ListPage,
    PutItem, PutOptions, Result, SystemClock, Version,
};
use serde_json::Value;
use tokio::time::Instant;

const SHARDS: usize = 16;

/// What an [`Invalidator`] tells a local tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// Another instance changed these keys: drop them.
    Keys(Vec<String>),
    /// Messages may have been lost (the channel was down): drop everything, and do not cache
    /// until the channel is `Up` again.
    Down,
    /// The channel works (again): caching may resume.
    Up,
}

/// Where a local tier's invalidations are delivered; dropped tiers stop receiving.
#[derive(Clone)]
pub struct InvalidationSink {
    tier: Weak<Local>,
}

impl fmt::Debug for InvalidationSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidationSink")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl InvalidationSink {
    /// Delivers one invalidation; returns `false` once the tier is gone, so the listener can stop.
    pub fn deliver(&self, invalidation: Invalidation) -> bool {
        let Some(tier) = self.tier.upgrade() else {
            return false;
        };
        match invalidation {
            Invalidation::Keys(keys) => keys.iter().for_each(|k| tier.remove(k)),
            Invalidation::Down => {
                tier.usable.store(false, Ordering::SeqCst);
                tier.clear();
            }
            Invalidation::Up => {
                tier.clear();
                tier.usable.store(true, Ordering::SeqCst);
            }
        }
        true
    }

    /// Whether the tier still exists.
    pub fn is_alive(&self) -> bool {
        self.tier.strong_count() > 0
    }
}

/// Tells other instances which keys changed, and this instance what others changed.
///
/// Implemented over Redis pub/sub by `kvkit_redis::RedisInvalidator` (feature `layers` of
/// `kvkit-redis`), which connects with the store's own settings.
#[async_trait::async_trait]
pub trait Invalidator: Send + Sync + fmt::Debug + 'static {
    /// Announces that `keys` changed.
    async fn publish(&self, keys: &[String]) -> Result<()>;

    /// Starts delivering what other instances announce to `sink`, beginning with
    /// [`Invalidation::Down`] until the subscription is established.
    fn subscribe(&self, sink: InvalidationSink);
}

/// A cached value.
#[derive(Debug)]
struct Cached {
    value: Bytes,
    metadata: Option<Value>,
    /// As the remote reported it.
    expiration: Option<SystemTime>,
    /// The remote's version of the entry: a compare-and-set against a stale copy fails, safely.
    version: Option<Version>,
    fetched: Instant,
    size: usize,
    generation: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<String, Cached>,
    /// Insertion order for eviction; entries whose generation no longer matches are skipped.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    generation: u64,
    /// Bumped by every invalidation, so a fetch that raced one does not cache what it read.
    epoch: u64,
}

/// The local tier: sharded maps bounded by entries and bytes, evicting the oldest insertions.
#[derive(Debug)]
struct Local {
    shards: Box<[Mutex<Shard>]>,
    max_entries: AtomicUsize,
    max_bytes: AtomicUsize,
    /// Whether cached entries may be served (false while invalidations may be missed).
    usable: AtomicBool,
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Local {
    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let hash = kvkit_core::backend::stable_hash(key);
        // The modulo keeps the index below SHARDS.
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    fn get(&self, key: &str, max_age: Duration, now: SystemTime) -> Option<Entry> {
        if !self.usable.load(Ordering::Relaxed) {
            return None;
        }
        let shard = lock(self.shard(key));
        let cached = shard.map.get(key)?;
        if cached.fetched.elapsed() >= max_age {
            return None;
        }
        if let Some(expiration) = cached.expiration {
            // Expirations come rounded up to the remote's precision (at most a second), so
            // the key may end up to a second before `expiration`: a copy is served only until
            // that earliest possible end.
            if now + Duration::from_secs(1) >= expiration {
                return None;
            }
        }
        let entry = Entry::new(
            cached.value.clone(),
            cached.metadata.clone(),
            cached.expiration,
        );
        Some(match &cached.version {
            Some(version) => entry.with_version(version.clone()),
            None => entry,
        })
    }

    /// The shard's invalidation epoch, to pass to [`Local::insert`] after fetching `key`.
    fn epoch(&self, key: &str) -> u64 {
        lock(self.shard(key)).epoch
    }

    /// Caches what was fetched for `key`, unless an invalidation of its shard happened since
    /// `epoch` was read (the value may be older than the write that caused it).
    fn insert(&self, key: &str, entry: &Entry, fetched: Instant, epoch: u64) {
        let metadata_size = entry.metadata.as_ref().map_or(0, |m| m.to_string().len());
        let size = key.len() + entry.value.len() + metadata_size;
        let per_shard_bytes = self.max_bytes.load(Ordering::Relaxed) / SHARDS;
        if size > per_shard_bytes || !self.usable.load(Ordering::Relaxed) {
            return;
        }
        let mut shard = lock(self.shard(key));
        if shard.epoch != epoch {
            return;
        }
        shard.generation += 1;
        let generation = shard.generation;
        let cached = Cached {
            value: entry.value.clone(),
            metadata: entry.metadata.clone(),
            expiration: entry.expiration,
            version: entry.version.clone(),
            fetched,
            size,
            generation,
        };
        if let Some(old) = shard.map.insert(key.to_owned(), cached) {
            shard.bytes -= old.size;
        }
        shard.bytes += size;
        shard.order.push_back((key.to_owned(), generation));
        let max_entries = (self.max_entries.load(Ordering::Relaxed) / SHARDS).max(1);
        while shard.map.len() > max_entries || shard.bytes > per_shard_bytes {
            let Some((oldest, generation)) = shard.order.pop_front() else {
                break;
            };
            if shard
                .map
                .get(&oldest)
                .is_some_and(|c| c.generation == generation)
                && let Some(evicted) = shard.map.remove(&oldest)
            {
                shard.bytes -= evicted.size;
            }
        }
        if shard.order.len() > 2 * shard.map.len() + 64 {
            let Shard { map, order, .. } = &mut *shard;
            order.retain(|(key, generation)| {
                map.get(key).is_some_and(|c| c.generation == *generation)
            });
        }
    }

    fn remove(&self, key: &str) {
        let mut shard = lock(self.shard(key));
        shard.epoch += 1;
        if let Some(old) = shard.map.remove(key) {
            shard.bytes -= old.size;
        }
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.epoch += 1;
            shard.map.clear();
            shard.order.clear();
            shard.bytes = 0;
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }
}

/// A bounded local memory tier in front of a remote store, for hot keys that should cost no
/// round trip.
///
/// # Consistency
///
/// - **Reads** are served from the local tier when it holds the key, the copy is younger than
///   `max_staleness`, and the key cannot have expired yet (expirations are reported rounded up
///   to the remote's precision, a second at most, so a copy is dropped a second before the
///   reported one); otherwise
///   they go to the remote store and refill the local tier. Listings always go to the remote.
/// - **Writes and deletes** drop the local copy, go to the remote store, then drop it again
///   and, with an [`Invalidator`], announce the change to the other instances. A read whose
///   remote fetch overlapped a write or an announcement does not cache what it fetched.
/// - **This instance reads its own writes** immediately.
/// - **Other instances** stop serving the old value when the announcement reaches them (over
///   Redis pub/sub, typically well under a millisecond), and in any case once their copy is
///   `max_staleness` old. While an invalidator's channel is down, the local tier is emptied and
///   bypassed, so a lost announcement never extends staleness beyond what a copy fetched before
///   the outage already had. Without an invalidator, `max_staleness` alone bounds it.
///
/// [`Capabilities::consistency`] therefore reports [`Consistency::Eventual`].
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{KvStore, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let remote = kvkit_memory::MemoryStore::new();
/// let store = kvkit_layers::TwoTier::new(remote)
///     .max_entries(10_000)
///     .max_bytes(64 << 20)
///     .max_staleness(Duration::from_secs(1));
/// store.put("config", "v1".into(), PutOptions::new()).await?;
/// assert_eq!(store.get("config").await?.as_deref(), Some(&b"v1"[..]));
/// assert_eq!(store.get("config").await?.as_deref(), Some(&b"v1"[..])); // local hit
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TwoTier<R> {
    remote: R,
    local: Arc<Local>,
    max_staleness: Duration,
    invalidator: Option<Arc<dyn Invalidator>>,
    clock: Arc<dyn Clock>,
    caps: Capabilities,
}

impl<R: KvStore> TwoTier<R> {
    /// A local tier of up to 10,000 entries and 64 MiB, copies at most 1 s old, no invalidator.
    ///
    /// ```
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(store.cached_entries(), 0);
    /// ```
    pub fn new(remote: R) -> Self {
        let caps = remote
            .capabilities()
            .clone()
            .with_consistency(Consistency::Eventual);
        Self {
            remote,
            local: Arc::new(Local {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                max_entries: AtomicUsize::new(10_000),
                max_bytes: AtomicUsize::new(64 << 20),
                usable: AtomicBool::new(true),
            }),
            max_staleness: Duration::from_secs(1),
            invalidator: None,
            clock: Arc::new(SystemClock),
            caps,
        }
    }

    /// Reads the time that decides whether a copy's key has expired from `clock` instead of
    /// the system clock (give it the remote store's clock in tests). How old a copy is, for
    /// [`max_staleness`](Self::max_staleness), is measured on tokio's monotonic clock, which
    /// tests pause and advance.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStore, KvStoreExt, ManualClock};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = ManualClock::new();
    /// let remote = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
    /// let store = kvkit_layers::TwoTier::new(remote)
    ///     .max_staleness(Duration::from_secs(3600))
    ///     .clock(clock.clone());
    /// store.put_with_ttl("k", "v", Duration::from_secs(10)).await?;
    /// assert!(store.get("k").await?.is_some());
    /// assert_eq!(store.cached_entries(), 1);
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(store.get("k").await?, None, "an expired key is never served from the copy");
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The most entries held locally.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new()).max_entries(100);
    /// for i in 0..1000 {
    ///     store.put_text(&format!("k{i}"), "v", Default::default()).await?;
    ///     store.get(&format!("k{i}")).await?;
    /// }
    /// assert!(store.cached_entries() <= 100);
    /// # Ok(()) }
    /// ```
    pub fn max_entries(self, entries: usize) -> Self {
        self.local
            .max_entries
            .store(entries.max(SHARDS), Ordering::Relaxed);
        self
    }

    /// The most bytes (keys, values and metadata) held locally.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new()).max_bytes(64 << 10);
    /// store.put("big", vec![0u8; 128 << 10].into(), Default::default()).await?;
    /// store.get("big").await?;
    /// assert_eq!(store.cached_entries(), 0, "larger than the local tier's share: not cached");
    /// # Ok(()) }
    /// ```
    pub fn max_bytes(self, bytes: usize) -> Self {
        self.local.max_bytes.store(bytes, Ordering::Relaxed);
        self
    }

    /// How old a local copy may be before it is fetched again: the staleness bound when no
    /// invalidation reaches this instance.
    ///
    /// ```
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new())
    ///     .max_staleness(std::time::Duration::from_millis(200));
    /// assert!(format!("{store:?}").contains("max_staleness: 200ms"));
    /// ```
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// Announces writes to, and hears writes from, other instances through `invalidator`.
    /// Call within a tokio runtime (the invalidator may spawn its listener).
    ///
    /// Until the invalidator says its channel is up, reads bypass the local tier.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::{InvalidationSink, Invalidator, TwoTier};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// /// An invalidator whose channel never comes up.
    /// #[derive(Debug)]
    /// struct Silent;
    /// #[kvkit_core::backend::async_trait]
    /// impl Invalidator for Silent {
    ///     async fn publish(&self, _keys: &[String]) -> kvkit_core::Result<()> { Ok(()) }
    ///     fn subscribe(&self, _sink: InvalidationSink) {}
    /// }
    /// let store = TwoTier::new(kvkit_memory::MemoryStore::new()).invalidator(Silent);
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// assert_eq!(store.cached_entries(), 0, "nothing cached while invalidations may be missed");
    /// # Ok(()) }
    /// ```
    pub fn invalidator(mut self, invalidator: impl Invalidator) -> Self {
        let invalidator: Arc<dyn Invalidator> = Arc::new(invalidator);
        self.local.usable.store(false, Ordering::SeqCst);
        invalidator.subscribe(InvalidationSink {
            tier: Arc::downgrade(&self.local),
        });
        self.invalidator = Some(invalidator);
        self
    }

    /// How many entries the local tier holds now.
    ///
    /// ```
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(store.cached_entries(), 0);
    /// ```
    pub fn cached_entries(&self) -> usize {
        self.local.len()
    }

    /// The remote store.
    ///
    /// ```
    /// let store = kvkit_layers::TwoTier::new(kvkit_memory::MemoryStore::new());
    /// let _remote: &kvkit_memory::MemoryStore = store.remote();
    /// ```
    pub fn remote(&self) -> &R {
        &self.remote
    }

    async fn read(&self, key: &str) -> Result<Option<Entry>> {
        if let Some(entry) = self.local.get(key, self.max_staleness, self.clock.now()) {
            return Ok(Some(entry));
        }
        let fetched = Instant::now();
        let epoch = self.local.epoch(key);
        let entry = self.remote.get_with_metadata(key).await?;
        if let Some(entry) = &entry {
            self.local.insert(key, entry, fetched, epoch);
        }
        Ok(entry)
    }

    /// Drops local copies and tells the other instances.
    async fn changed(&self, keys: &[String]) {
        for key in keys {
            self.local.remove(key);
        }
        if let Some(invalidator) = &self.invalidator
            && let Err(error) = invalidator.publish(keys).await
        {
            tracing::warn!(
                target: "kv",
                %error,
                "could not announce a write; other instances may serve the old value until their copy ages out"
            );
        }
    }

    async fn changed_one(&self, key: &str) {
        self.changed(&[key.to_owned()]).await;
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl<R: KvStore> KvStore for TwoTier<R> {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.caps.check_key(key)?;
        Ok(self.read(key).await?.map(|e| e.value))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.caps.check_key(key)?;
        self.read(key).await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.local.remove(key);
        let result = self.remote.put(key, value, options).await;
        self.changed_one(key).await;
        result
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.local.remove(key);
        let result = self.remote.put_if_absent(key, value, options).await;
        // A failed call may still have written.
        if !matches!(result, Ok(false)) {
            self.changed_one(key).await;
        }
        result
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.local.remove(key);
        let result = self.remote.delete(key).await;
        self.changed_one(key).await;
        result
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        // The local copy goes first, as for every write, so a read after a failed condition
        // sees the remote entry, not the stale version.
        self.local.remove(key);
        let result = self.remote.delete_if_version(key, version).await;
        self.changed_one(key).await;
        result
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.remote.list(options).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|k| self.caps.check_key(k))?;
        let mut values: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let now = self.clock.now();
        for (i, key) in keys.iter().enumerate() {
            match self.local.get(key, self.max_staleness, now) {
                Some(entry) => values.push(Some(entry.value)),
                None => {
                    values.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let wanted: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
            let fetched = self.remote.get_many(&wanted).await?;
            for (i, value) in missing.into_iter().zip(fetched) {
                values[i] = value;
            }
        }
        Ok(values)
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
        keys.iter().for_each(|k| self.local.remove(k));
        let result = self.remote.put_many(items).await;
        self.changed(&keys).await;
        result
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        keys.iter().for_each(|k| self.local.remove(k));
        let result = self.remote.delete_many(keys).await;
        self.changed(keys).await;
        result
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.local.remove(key);
        let result = self.remote.increment(key, delta, options).await;
        self.changed_one(key).await;
        result
    }

    /// `None`: every increment goes to the remote tier and tells the other instances.
    fn increment_now(&self, _: &str, _: i64, _: CounterOptions) -> Option<Result<i64>> {
        None
    }
}
