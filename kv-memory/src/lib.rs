//! The embedded backend of `kvkit`: a concurrent in-memory [`KvStore`] that keeps the whole contract,
//! for single-process services and for unit tests of code that runs on Redis or Cloudflare in
//! production.
//!
//! # Design
//!
//! - **Point operations** go to a sharded hash map ([`dashmap`]), so gets and puts of different
//!   keys rarely contend and there is no global lock on the hot path.
//! - **Ordered listing** uses a second index: the keys in sorted sets, sharded by key hash. A
//!   listing merges the shards' ordered ranges starting at the prefix (or after the cursor), so a
//!   page of `limit` keys costs O((shards + limit / 8) · log n + limit), never a scan of the
//!   whole store. Only a put that creates a key touches the index; overwrites do not.
//! - **Listings do not stall writers.** A listing holds one index shard's read lock at a time,
//!   and only to copy a run of at most 8 names (a pointer and a reference count each, not the
//!   strings); it looks them up once the lock is released. A put that creates a key, or a
//!   delete, waits for one such copy at most, never for a page's lookups. The price: a page
//!   copies its names once more and descends a shard's index once per run of 8 names (for a
//!   page of 1,000 keys, some 125 descents of a few hundred nanoseconds; measured side by side,
//!   pages take no longer than when every lock was held throughout), and a name deleted
//!   between its copy and its lookup is skipped, as an expired one is.
//! - **Expiry**: an expired entry is invisible to every read the moment its time passes. Entries
//!   with an expiry are also queued, each once, in the one-second bucket it expires in; a
//!   background task (on the tokio runtime the store was created on, or a thread when there is
//!   none) removes the due ones every second, so memory does not grow with dead keys even if they
//!   are never read again.
//! - **Memory is bounded by the live keys.** A delete takes its key out of the expiry queue and a
//!   rewrite that changes the expiry moves it, so keys created and deleted before they expire
//!   (sessions, say) leave nothing behind. The price is paid by writes that move an expiry to
//!   another second (a sliding session's refresh, a key gaining or losing its TTL) and deletes
//!   of keys with one: a queue update, a hash-set removal and insertion under one of four locks.
//!   Writes that keep no expiry or the same second, and every read, do not touch the queue.
//!   Bounded is not constant: when the hash map's table is nearly full, churn can still double
//!   it once, as it does a bare `DashMap`'s (hashbrown answers the tombstones deletes leave by
//!   growing rather than by rehashing in place); BENCHMARKS.md has the figures.
//! - **Counters are integers.** A value written by [`increment`](KvStore::increment) is kept as
//!   an `i64`, so counting neither parses nor allocates; every read still sees its decimal
//!   string, and its version is that of the same string written by a put. The store answers
//!   [`KvStore::increment_now`], so the rate limiter counts without a boxed future.
//! - **Time** comes from an injectable [`Clock`]: tests use a [`ManualClock`] and never sleep.
//! - **Limits**: by default generous ([`Capabilities::new`]); [`MemoryBuilder::cloudflare_limits`]
//!   enforces Cloudflare KV's (key ≤ 512 bytes, value ≤ 25 MiB, metadata ≤ 1024 bytes,
//!   TTL ≥ 60 s, expirations before 2038) so that code tested in memory does not fail on
//!   Cloudflare's limits.
//!
//! ```
//! use std::time::Duration;
//! use kvkit_core::{KvStore, KvStoreExt, ManualClock, PutOptions};
//! use kvkit_memory::MemoryStore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! let clock = ManualClock::new();
//! let store = MemoryStore::builder().clock(clock.clone()).build();
//! store.put_with_ttl("session", "data", Duration::from_secs(30)).await?;
//! clock.advance(Duration::from_secs(31));
//! assert_eq!(store.get("session").await?, None);
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use kvkit_core::backend::{
    add_to_count, add_to_counter, cursor, from_unix_ms, stable_hash, unix_ms,
};
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, Expiry, KeyInfo, KvStore, ListOptions,
    ListPage, PutItem, PutOptions, Result, SystemClock, Version, WriteCondition,
};
use serde_json::Value;

#[cfg(doc)]
use kvkit_core::ManualClock;

mod expiry;
mod index;

use expiry::ExpiryQueue;
use index::IndexKey;

/// The clock's time in unix milliseconds, as entries keep their expiry.
fn now_ms(clock: &dyn Clock) -> u64 {
    unix_ms(clock.now())
}

/// Number of shards of the ordered key index and of the expiry queue.
const INDEX_SHARDS: usize = 4;

/// How many names a listing copies from one index shard per read lock: few enough that a writer
/// waiting for the lock gets it while still spinning, before it would sleep
/// (`memory_put_p99_us_during_list` in BENCHMARKS.md).
const LIST_RUN: usize = 8;

/// How often the background task reclaims expired entries, unless configured.
const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// A stored value: bytes as written, or a counter kept as the integer it is, so that an
/// increment neither parses nor allocates. Reads see a counter as its decimal string, as the
/// contract says it is stored.
#[derive(Debug, Clone)]
enum Stored {
    Bytes(Bytes),
    Counter(i64),
}

impl Stored {
    /// The value as the contract shows it.
    fn bytes(&self) -> Bytes {
        match self {
            Self::Bytes(bytes) => bytes.clone(),
            Self::Counter(n) => Bytes::copy_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        }
    }

    /// Adds `delta`, as [`add_to_counter`] does to the stored bytes, and keeps the result as an
    /// integer.
    fn add(&mut self, key: &str, delta: i64) -> Result<i64> {
        let next = match self {
            Self::Counter(n) => add_to_count(key, *n, delta)?,
            Self::Bytes(bytes) => add_to_counter(key, bytes, delta)?,
        };
        *self = Self::Counter(next);
        Ok(next)
    }

    /// Feeds the value's bytes (a counter's decimal digits) into `hasher`.
    fn hash_into(&self, hasher: &mut impl Hasher) {
        match self {
            Self::Bytes(bytes) => hasher.write(bytes),
            Self::Counter(n) => hasher.write(itoa::Buffer::new().format(*n).as_bytes()),
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone)]
struct Slot {
    value: Stored,
    /// Unix milliseconds at which the entry expires; 0 for never.
    expires_at_ms: u64,
    metadata: Option<Box<Value>>,
}

impl Slot {
    fn new(value: Bytes, expires_at_ms: Option<u64>, metadata: Option<Value>) -> Self {
        Self {
            value: Stored::Bytes(value),
            expires_at_ms: expires_at_ms.unwrap_or(0),
            metadata: metadata.map(Box::new),
        }
    }

    fn is_expired(&self, clock: &dyn Clock) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms(clock)
    }

    fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// The expiration in unix seconds, rounded up, as the contract reports it.
    fn expiration(&self) -> Option<SystemTime> {
        (self.expires_at_ms != 0).then(|| from_unix_ms(self.expires_at_ms))
    }
}

/// Feeds what is written to it into a hasher.
struct HashWriter<'a, H>(&'a mut H);

impl<H: Hasher> std::io::Write for HashWriter<'_, H> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What an [`Inner::upsert`] decision does with the entry.
enum Step<R> {
    /// Leave the entry as it is (it may have been changed in place).
    Keep(R),
    /// Replace (or create) the entry with this slot.
    Write(Slot, R),
}

/// One index shard as a listing reads it: in runs of `LIST_RUN` names, each copied under the
/// shard's read lock and released before the listing looks any of them up.
struct ShardReader<'a> {
    shard: &'a RwLock<BTreeSet<IndexKey>>,
    /// The names of the current run not yet merged, in order.
    names: VecDeque<IndexKey>,
    /// Where the next run starts; `None` once the shard had no more names under the prefix.
    from: Option<Bound<IndexKey>>,
}

impl ShardReader<'_> {
    /// The shard's next name under `prefix`, copying the next run first if this one is used up.
    /// Each run starts right after the last name of the one before, so a name present for the
    /// whole listing is in exactly one run; a name indexed only after its place was read was
    /// not present for the whole listing, and a listing need not return it.
    fn peek(&mut self, prefix: &str) -> Option<&IndexKey> {
        if self.names.is_empty()
            && let Some(from) = self.from.take()
        {
            self.names.extend(
                read(self.shard)
                    .range((from.as_ref(), Bound::Unbounded))
                    .take_while(|name| name.key().starts_with(prefix))
                    .take(LIST_RUN)
                    .cloned(),
            );
            // A short run means the shard had no more names under the prefix.
            if self.names.len() == LIST_RUN {
                self.from = self.names.back().cloned().map(Bound::Excluded);
            }
        }
        self.names.front()
    }
}

struct Inner {
    map: DashMap<Arc<str>, Slot, foldhash::quality::RandomState>,
    /// Every key present in `map` is in its index shard. A key may stay in the index briefly
    /// after leaving the map; readers skip it and removals clean it up.
    index: Box<[RwLock<BTreeSet<IndexKey>>]>,
    /// Every entry with an expiry is queued once, in the bucket of its expiry, and nothing else
    /// is (but for a deleted key until its delete updates the queue, and for the due buckets a
    /// purge has taken out). Changed under the entry's map lock when it is written, after it
    /// left the map when it is removed.
    expiry: ExpiryQueue,
    caps: Capabilities,
    clock: Arc<dyn Clock>,
    /// Keys the hash that makes an entry's version, so nobody can choose a value whose version
    /// collides with another's.
    versions: foldhash::quality::RandomState,
}

/// The in-memory store. Cheap to clone: clones share the same data.
///
/// ```
/// use kvkit_core::{KvStore, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_memory::MemoryStore::new();
/// let other = store.clone();
/// store.put("k", "v".into(), PutOptions::new()).await?;
/// assert!(other.get("k").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.inner.map.len())
            .field("capabilities", &self.inner.caps)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Configures a [`MemoryStore`].
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::ManualClock;
/// let store = kvkit_memory::MemoryStore::builder()
///     .cloudflare_limits()
///     .clock(ManualClock::new())
///     .reap_interval(Duration::from_millis(500))
///     .build();
/// assert_eq!(kvkit_core::KvStore::capabilities(&store).max_key_bytes, 512);
/// ```
#[derive(Debug)]
pub struct MemoryBuilder {
    caps: Capabilities,
    clock: Arc<dyn Clock>,
    reap_interval: Duration,
}

impl Default for MemoryBuilder {
    fn default() -> Self {
        Self {
            caps: Capabilities::new("memory"),
            clock: Arc::new(SystemClock),
            reap_interval: DEFAULT_REAP_INTERVAL,
        }
    }
}

impl MemoryBuilder {
    /// Enforces Cloudflare KV's limits ([`Capabilities::cloudflare`], the one profile the
    /// Cloudflare backends use too): key ≤ 512 bytes, value ≤ 25 MiB, metadata ≤ 1024 bytes,
    /// TTL ≥ 60 s, expirations at least 60 s ahead and no later than 2038-01-19. The store stays
    /// strongly consistent, with exact counters and conditional writes, which Cloudflare KV has
    /// not: its `Capabilities` say so.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{Error, KvStore, KvStoreExt, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = kvkit_memory::MemoryStore::builder().cloudflare_limits().build();
    /// let err = store.put_with_ttl("k", "v", Duration::from_secs(10)).await.unwrap_err();
    /// assert!(matches!(err, Error::TtlTooShort { .. }));
    /// let after_2038 = PutOptions::new().expire_at(UNIX_EPOCH + Duration::from_secs(2_147_483_648));
    /// let err = store.put("k", "v".into(), after_2038).await.unwrap_err();
    /// assert!(matches!(err, Error::ExpiryTooFar { .. }));
    /// # }
    /// ```
    pub fn cloudflare_limits(mut self) -> Self {
        self.caps = Capabilities::cloudflare("memory");
        self
    }

    /// Uses custom limits (the backend name is kept as `"memory"`).
    ///
    /// ```
    /// let caps = kvkit_core::Capabilities::new("memory").with_max_value_bytes(1024);
    /// let store = kvkit_memory::MemoryStore::builder().capabilities(caps).build();
    /// assert_eq!(kvkit_core::KvStore::capabilities(&store).max_value_bytes, 1024);
    /// ```
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self.caps.backend = "memory";
        self
    }

    /// Reads time from `clock` instead of the system clock.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::{KvStore, KvStoreExt, ManualClock};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
    /// let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
    /// store.put_with_ttl("k", "v", Duration::from_secs(60)).await?;
    /// let entry = store.get_with_metadata("k").await?.expect("live");
    /// assert_eq!(entry.expiration, Some(UNIX_EPOCH + Duration::from_secs(1_060)));
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(store.get("k").await?, None);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often expired entries are reclaimed in the background (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::KvStoreExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::builder().reap_interval(Duration::from_millis(10)).build();
    /// store.put_with_ttl("k", "v", Duration::from_millis(1)).await?;
    /// assert_eq!(store.stored_entries(), 1);
    /// // Expired at once for every read; reclaimed by the background task soon after.
    /// for _ in 0..2000 {
    ///     if store.stored_entries() == 0 { break }
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// assert_eq!(store.stored_entries(), 0);
    /// # Ok(()) }
    /// ```
    pub fn reap_interval(mut self, interval: Duration) -> Self {
        self.reap_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Builds the store and starts its background reclamation.
    ///
    /// ```
    /// let store = kvkit_memory::MemoryStore::builder().build();
    /// assert_eq!(store.stored_entries(), 0);
    /// ```
    pub fn build(self) -> MemoryStore {
        let inner = Arc::new(Inner {
            map: DashMap::default(),
            index: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(BTreeSet::new()))
                .collect(),
            expiry: ExpiryQueue::new(INDEX_SHARDS),
            caps: self.caps,
            clock: self.clock,
            versions: foldhash::quality::RandomState::default(),
        });
        spawn_reaper(Arc::downgrade(&inner), self.reap_interval);
        MemoryStore { inner }
    }
}

/// Reclaims expired entries every `interval` until the store is dropped.
fn spawn_reaper(store: Weak<Inner>, interval: Duration) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = store.upgrade() else { break };
                inner.purge_expired();
            }
        });
    } else {
        // Without a thread, expired entries are still invisible to every read; they are then
        // reclaimed only by explicit `purge_expired` calls.
        let _ = std::thread::Builder::new()
            .name("kv-memory-reaper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = store.upgrade() else { break };
                    inner.purge_expired();
                }
            });
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shard(&self, key: &str) -> usize {
        // FNV-1a: the shard only spreads contention, so it needs no keyed hash.
        let hash = stable_hash(key);
        // The modulo keeps the result below INDEX_SHARDS, so the cast cannot truncate.
        (hash % INDEX_SHARDS as u64) as usize
    }

    /// Cleans up after `key` left the map with `slot`: its queue entry, its index entry.
    fn forget(&self, key: Arc<str>, slot: &Slot) {
        self.expiry.remove(&key, slot.expires_at_ms);
        self.index_remove(key);
    }

    /// Drops `key` from the index unless it is (again) in the map. Holding the index lock while
    /// checking the map makes this safe against a concurrent insert of the same key, which adds
    /// to the index only after it is in the map.
    fn index_remove(&self, key: Arc<str>) {
        let shard = self.shard(&key);
        let mut index = write(&self.index[shard]);
        if !self.map.contains_key(&key) {
            index.remove(&IndexKey::new(key));
        }
    }

    /// Stores `slot` under `key`, maintaining the index and the expiry queue.
    fn store(&self, key: &str, slot: Slot) {
        if let Some(mut existing) = self.map.get_mut(key) {
            let (old, new) = (existing.expires_at_ms, slot.expires_at_ms);
            *existing = slot;
            self.expiry.reschedule(existing.key(), old, new);
            return;
        }
        self.upsert(key, |_| Step::Write(slot, ()));
    }

    /// Decides, under the map entry of `key`, whether to write, and does so while holding the
    /// key's index shard: a key the map gains is in the index before a listing can run, and a
    /// concurrent `index_remove` sees the map and index change together. The expiry queue
    /// changes under the map entry too.
    fn upsert<R>(&self, key: &str, decide: impl FnOnce(Option<&mut Slot>) -> Step<R>) -> R {
        let arc: Arc<str> = Arc::from(key);
        let mut index = write(&self.index[self.shard(key)]);
        match self.map.entry(arc.clone()) {
            MapEntry::Occupied(mut occupied) => match decide(Some(occupied.get_mut())) {
                Step::Keep(result) => result,
                Step::Write(slot, result) => {
                    let (old, new) = (occupied.get().expires_at_ms, slot.expires_at_ms);
                    occupied.insert(slot);
                    self.expiry.reschedule(occupied.key(), old, new);
                    result
                }
            },
            MapEntry::Vacant(vacant) => match decide(None) {
                Step::Keep(result) => result,
                Step::Write(slot, result) => {
                    let new = slot.expires_at_ms;
                    let entry = vacant.insert(slot);
                    self.expiry.reschedule(entry.key(), 0, new);
                    drop(entry);
                    index.insert(IndexKey::new(arc));
                    result
                }
            },
        }
    }

    #[cfg(test)]
    fn queued_expiries(&self) -> usize {
        self.expiry.len()
    }

    fn remove(&self, key: &str) {
        if let Some((key, slot)) = self.map.remove(key) {
            self.forget(key, &slot);
        }
    }

    /// Removes every entry whose expiry has passed; returns how many were removed.
    fn purge_expired(&self) -> usize {
        let now = now_ms(&*self.clock);
        let mut removed = 0;
        for (bucket, keys) in self.expiry.take_due(now) {
            for key in keys {
                // An entry still expiring in this bucket (a due one) has expired. One rewritten
                // since the bucket was taken out is queued at its new expiry, or needs no queue
                // entry; a deleted one is gone.
                let due = |_: &Arc<str>, slot: &Slot| {
                    expiry::bucket_of(slot.expires_at_ms) == bucket && slot.is_expired_at(now)
                };
                if let Some((key, _)) = self.map.remove_if(&*key, due) {
                    self.index_remove(key);
                    removed += 1;
                }
            }
        }
        // Give back the table's memory after a mass expiry; a quarter full leaves room to grow.
        if removed > 0 && self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        removed
    }

    fn live<T>(&self, key: &str, read: impl FnOnce(&Slot) -> T) -> Option<T> {
        let slot = self.map.get(key)?;
        if slot.is_expired(&*self.clock) {
            return None;
        }
        Some(read(&slot))
    }

    /// Lists a page: merges the index shards' names in order, reading each shard a short run at
    /// a time ([`ShardReader`]), and looks the names up in the map with no index lock held, so
    /// a listing never holds up writers for its lookups.
    fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let limit = self.caps.check_list(options)?;
        let prefix = options.prefix.as_str();
        let lower = match &options.cursor {
            None => Bound::Included(IndexKey::new(Arc::from(prefix))),
            Some(cursor) => {
                let last = cursor::decode(cursor, prefix)?;
                Bound::Excluded(IndexKey::new(Arc::from(last)))
            }
        };
        let now = now_ms(&*self.clock);
        let mut shards: Vec<ShardReader<'_>> = self
            .index
            .iter()
            .map(|shard| ShardReader {
                shard,
                names: VecDeque::new(),
                from: Some(lower.clone()),
            })
            .collect();
        let mut keys = Vec::new();
        let more = loop {
            let next = shards
                .iter_mut()
                .enumerate()
                .filter_map(|(i, shard)| shard.peek(prefix).map(|name| (i, name)))
                .min_by(|(_, a), (_, b)| a.cmp(b))
                .map(|(i, _)| i);
            let Some(name) = next.and_then(|i| shards[i].names.pop_front()) else {
                break false;
            };
            if keys.len() == limit {
                break true;
            }
            if let Some(slot) = self.map.get(&**name.key())
                && !slot.is_expired_at(now)
            {
                keys.push(KeyInfo::new(
                    name.key().to_string(),
                    slot.expiration(),
                    slot.metadata.as_deref().cloned(),
                ));
            }
        };
        let cursor = match keys.last() {
            Some(last) if more => Some(cursor::encode(prefix, &last.name)),
            _ => None,
        };
        Ok(ListPage::new(keys, cursor))
    }

    /// Adds `delta` to the counter at `key` as the clock stands at `now`; a counter it creates
    /// expires as `expiry` (checked) says.
    fn increment(
        &self,
        key: &str,
        delta: i64,
        now: SystemTime,
        expiry: Option<Expiry>,
    ) -> Result<i64> {
        let now_ms = unix_ms(now);
        if let Some(mut slot) = self.map.get_mut(key)
            && !slot.is_expired_at(now_ms)
        {
            return slot.value.add(key, delta);
        }
        self.upsert(key, |existing| match existing {
            Some(slot) if !slot.is_expired_at(now_ms) => Step::Keep(slot.value.add(key, delta)),
            _ => {
                let fresh = Slot {
                    value: Stored::Counter(delta),
                    expires_at_ms: self.caps.expires_at(expiry, now).map_or(0, unix_ms),
                    metadata: None,
                };
                Step::Write(fresh, Ok(delta))
            }
        })
    }

    fn put_if_absent(&self, key: &str, slot: Slot) -> bool {
        let now = now_ms(&*self.clock);
        if self.map.get(key).is_some_and(|s| !s.is_expired_at(now)) {
            return false;
        }
        self.upsert(key, |existing| match existing {
            Some(current) if !current.is_expired_at(now) => Step::Keep(false),
            _ => Step::Write(slot, true),
        })
    }

    /// The version of an entry: a keyed 64-bit hash of its value, metadata and expiry, so it
    /// costs no memory per key. Any change of the entry changes it; a rewrite with identical
    /// content keeps it, which a compare-and-set may take as unchanged (it is).
    fn version_of(&self, slot: &Slot) -> u64 {
        let mut hasher = self.versions.build_hasher();
        slot.value.hash_into(&mut hasher);
        hasher.write_u64(slot.expires_at_ms);
        match slot.metadata.as_deref() {
            None => hasher.write_u8(0),
            Some(metadata) => {
                hasher.write_u8(1);
                // Serializing a `Value` into a hasher cannot fail.
                let _ = serde_json::to_writer(HashWriter(&mut hasher), metadata);
            }
        }
        hasher.finish()
    }

    /// Replaces `key` with `slot` only if it is live with `version`; returns whether it did.
    fn put_if_version(&self, key: &str, slot: Slot, version: u64) -> bool {
        let now = now_ms(&*self.clock);
        self.upsert(key, |existing| match existing {
            Some(current) if !current.is_expired_at(now) && self.version_of(current) == version => {
                Step::Write(slot, true)
            }
            _ => Step::Keep(false),
        })
    }

    /// Removes `key` only if it is live with `version`; returns whether it did.
    fn remove_if_version(&self, key: &str, version: u64) -> bool {
        let now = now_ms(&*self.clock);
        match self.map.remove_if(key, |_, slot| {
            !slot.is_expired_at(now) && self.version_of(slot) == version
        }) {
            Some((key, slot)) => {
                self.forget(key, &slot);
                true
            }
            None => false,
        }
    }
}

impl MemoryStore {
    /// A store with generous limits, the system clock and background reclamation every second.
    ///
    /// ```
    /// let store = kvkit_memory::MemoryStore::new();
    /// assert_eq!(kvkit_core::KvStore::capabilities(&store).backend, "memory");
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    ///
    /// ```
    /// use kvkit_core::KvStore;
    ///
    /// let store = kvkit_memory::MemoryStore::builder().cloudflare_limits().build();
    /// assert_eq!(store.capabilities().max_value_bytes, 25 * 1024 * 1024);
    /// ```
    pub fn builder() -> MemoryBuilder {
        MemoryBuilder::default()
    }

    /// How many entries are held in memory, including expired ones not yet reclaimed.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("k", "v".into(), PutOptions::new()).await?;
    /// assert_eq!(store.stored_entries(), 1);
    /// # Ok(()) }
    /// ```
    pub fn stored_entries(&self) -> usize {
        self.inner.map.len()
    }

    /// Reclaims every expired entry now (the background task does this every second) and
    /// returns how many were removed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStoreExt, ManualClock};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = ManualClock::new();
    /// let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
    /// store.put_with_ttl("k", "v", Duration::from_secs(1)).await?;
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(store.purge_expired(), 1);
    /// assert_eq!(store.stored_entries(), 0);
    /// # Ok(()) }
    /// ```
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }

    /// `increment`, which never waits.
    fn count(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        let inner = &self.inner;
        inner.caps.check_key(key)?;
        let now = inner.clock.now();
        let expiry = inner.caps.check_expiry(options.expiry_on_create, now)?;
        inner.increment(key, delta, now, expiry)
    }

    fn checked_slot(&self, key: &str, value: Bytes, options: &PutOptions) -> Result<Slot> {
        let inner = &self.inner;
        // Only an expiry needs the time; most writes skip the clock.
        let now = if options.expiry.is_some() {
            inner.clock.now()
        } else {
            UNIX_EPOCH
        };
        let checked = inner.caps.check_put(key, value.len(), options, now)?;
        Ok(Slot::new(
            value,
            checked.expires_at(now).map(unix_ms),
            options.metadata.clone(),
        ))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl KvStore for MemoryStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.caps.check_key(key)?;
        Ok(self.inner.live(key, |slot| slot.value.bytes()))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        Ok(self.inner.live(key, |slot| {
            Entry::new(
                slot.value.bytes(),
                slot.metadata.as_deref().cloned(),
                slot.expiration(),
            )
            .with_version(Version::from_u64(self.inner.version_of(slot)))
        }))
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let slot = self.checked_slot(key, value, &options)?;
        let written = match &options.condition {
            WriteCondition::IfAbsent => self.inner.put_if_absent(key, slot),
            WriteCondition::IfVersion(version) => version
                .as_u64()
                .is_some_and(|version| self.inner.put_if_version(key, slot, version)),
            WriteCondition::Always => {
                self.inner.store(key, slot);
                true
            }
            _ => {
                return Err(Error::Unsupported {
                    backend: "memory",
                    operation: "this write condition",
                });
            }
        };
        if written {
            Ok(())
        } else {
            Err(Error::condition_failed(key))
        }
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let caps = &self.inner.caps;
        caps.check_condition(&options.condition, "conditions in put_if_absent", false)?;
        let slot = self.checked_slot(key, value, &options)?;
        Ok(self.inner.put_if_absent(key, slot))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.caps.check_key(key)?;
        self.inner.remove(key);
        Ok(())
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.inner.caps.check_key(key)?;
        let removed = version
            .as_u64()
            .is_some_and(|version| self.inner.remove_if_version(key, version));
        if removed {
            Ok(())
        } else {
            Err(Error::condition_failed(key))
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.inner.list(&options)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let caps = &self.inner.caps;
        caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        Ok(keys
            .iter()
            .map(|key| self.inner.live(key, |slot| slot.value.bytes()))
            .collect())
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let caps = &self.inner.caps;
        let slots = items
            .into_iter()
            .map(|item| {
                caps.check_condition(&item.options.condition, "conditions in put_many", false)?;
                let slot = self.checked_slot(&item.key, item.value, &item.options)?;
                Ok((item.key, slot))
            })
            .collect::<Result<Vec<_>>>()?;
        for (key, slot) in slots {
            self.inner.store(&key, slot);
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let caps = &self.inner.caps;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        for key in keys {
            self.inner.remove(key);
        }
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.count(key, delta, options)
    }

    /// Always `Some`: the memory store counts without waiting.
    fn increment_now(&self, key: &str, delta: i64, options: CounterOptions) -> Option<Result<i64>> {
        Some(self.count(key, delta, options))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kvkit_core::{KvStoreExt, ManualClock};

    use super::*;

    fn store() -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .reap_interval(Duration::from_secs(3600))
            .build();
        (store, clock)
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// Counters kept as integers cost no more per entry than bytes do.
    #[test]
    fn a_counter_slot_is_no_larger_than_a_bytes_slot() {
        assert_eq!(size_of::<Stored>(), size_of::<Bytes>());
        assert_eq!(size_of::<Slot>(), 48);
    }

    /// A counter reads and versions as the decimal string it stands for.
    #[tokio::test]
    async fn a_counter_is_its_decimal_string_to_every_read() {
        let (store, _clock) = store();
        store
            .put("as-text", "41".into(), PutOptions::new())
            .await
            .unwrap();
        let written = store.get_with_metadata("as-text").await.unwrap().unwrap();
        store
            .increment("counted", 41, CounterOptions::new())
            .await
            .unwrap();
        let counted = store.get_with_metadata("counted").await.unwrap().unwrap();
        assert_eq!(counted.value, written.value);
        assert_eq!(
            counted.version, written.version,
            "the same content, the same version"
        );
        let many = ["counted".to_owned(), "as-text".to_owned()];
        let values = store.get_many(&many).await.unwrap();
        assert_eq!(values[0], values[1]);
        assert_eq!(
            store
                .increment("as-text", 1, CounterOptions::new())
                .await
                .unwrap(),
            42
        );
        assert_eq!(
            store.get("as-text").await.unwrap().as_deref(),
            Some(&b"42"[..])
        );
    }

    /// Sessions created and destroyed leave nothing queued: the queue holds the live keys only
    /// (a regression test: every deleted key's entry used to stay until its expiry).
    #[tokio::test]
    async fn deleted_keys_leave_the_expiry_queue() {
        let (store, _clock) = store();
        for i in 0..10 {
            store
                .put_with_ttl(&format!("live:{i}"), "v", DAY)
                .await
                .unwrap();
        }
        for i in 0..1000 {
            let session = format!("session:{i}");
            store.put_with_ttl(&session, "v", DAY).await.unwrap();
            store.delete(&session).await.unwrap();
        }
        for _ in 0..1000 {
            store.put_with_ttl("again", "v", DAY).await.unwrap();
            store.delete("again").await.unwrap();
        }
        assert_eq!(store.inner.queued_expiries(), 10);
        let many: Vec<String> = (0..10).map(|i| format!("live:{i}")).collect();
        store.delete_many(&many).await.unwrap();
        assert_eq!(store.inner.queued_expiries(), 0);
    }

    /// Every way of writing and removing a key keeps at most one queue entry for it, and none
    /// once it has no expiry or is gone.
    #[tokio::test]
    async fn each_key_is_queued_at_most_once() {
        let (store, clock) = store();
        for i in 0..100u64 {
            // Alternately longer and shorter, each a different second from every other one.
            let ttl = Duration::from_secs(if i % 2 == 0 { 2000 - i } else { 1000 - i });
            store.put_with_ttl("k", "v", ttl).await.unwrap();
        }
        assert_eq!(store.inner.queued_expiries(), 1);
        store.put("k", "v".into(), PutOptions::new()).await.unwrap();
        assert_eq!(
            store.inner.queued_expiries(),
            0,
            "a key without expiry stays queued"
        );

        let counter = CounterOptions::new().ttl(Duration::from_secs(60));
        store.increment("ctr", 1, counter).await.unwrap();
        clock.advance(Duration::from_secs(61));
        // Expired, not yet reclaimed: the increment creates the counter afresh.
        store.increment("ctr", 1, counter).await.unwrap();
        assert_eq!(store.inner.queued_expiries(), 1);

        let ttl = PutOptions::new().ttl(Duration::from_secs(30));
        store
            .put_if_absent("cas", "v".into(), ttl.clone())
            .await
            .unwrap();
        for _ in 0..10 {
            let version = store
                .get_with_metadata("cas")
                .await
                .unwrap()
                .unwrap()
                .version;
            let shorter = PutOptions::new()
                .ttl(Duration::from_secs(10))
                .if_version(version.unwrap());
            store.put("cas", "w".into(), shorter).await.unwrap();
            let version = store
                .get_with_metadata("cas")
                .await
                .unwrap()
                .unwrap()
                .version;
            store
                .delete_if_version("cas", &version.unwrap())
                .await
                .unwrap();
            store
                .put_if_absent("cas", "v".into(), ttl.clone())
                .await
                .unwrap();
        }
        assert_eq!(store.inner.queued_expiries(), 2);
        clock.advance(DAY);
        assert_eq!(store.purge_expired(), 2);
        assert_eq!(store.inner.queued_expiries(), 0);
    }

    /// Writers racing on a few keys, with and without expiries, beside a reaper whose clock moves
    /// on, leave exactly the stored keys that have an expiry queued, each once.
    #[test]
    fn racing_writers_and_reaper_keep_the_queue_exact() {
        let (store, clock) = store();
        let keys: Vec<String> = (0..16).map(|i| format!("race:{i}")).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    clock.advance(Duration::from_millis(700));
                    store.purge_expired();
                }
            });
            let writers: Vec<_> = (0..3)
                .map(|t| {
                    let (store, keys) = (&store, &keys);
                    scope.spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        for round in 0..20_000usize {
                            let key = &keys[(round * 7 + t * 5) % keys.len()];
                            let ttl = Duration::from_secs(1 + (round % 3) as u64);
                            let write = async {
                                match (round + t) % 5 {
                                    0 => store.put_with_ttl(key, "1", ttl).await,
                                    1 => store.put(key, "1".into(), PutOptions::new()).await,
                                    2 => store.delete(key).await,
                                    3 => {
                                        let options = PutOptions::new().ttl(ttl);
                                        store.put_if_absent(key, "1".into(), options).await?;
                                        Ok(())
                                    }
                                    _ => {
                                        let counter = CounterOptions::new().ttl(ttl);
                                        store.increment(key, 1, counter).await.map(|_| ())
                                    }
                                }
                            };
                            runtime.block_on(write).unwrap();
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let with_expiry = store
            .inner
            .map
            .iter()
            .filter(|entry| entry.expires_at_ms != 0)
            .count();
        assert_eq!(store.inner.queued_expiries(), with_expiry);
        clock.advance(Duration::from_secs(10));
        store.purge_expired();
        assert_eq!(store.inner.queued_expiries(), 0);
        assert!(store.inner.map.iter().all(|entry| entry.expires_at_ms == 0));
    }
}
