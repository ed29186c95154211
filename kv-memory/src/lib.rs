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
//!   page of `limit` keys costs O(shards · log n + limit), never a scan of the whole store. Only a
//!   put that creates a key touches the index; overwrites do not.
//! - **Expiry**: an expired entry is invisible to every read the moment its time passes. Entries
//!   with an expiry are also queued in one-second buckets; a background task (on the tokio
//!   runtime the store was created on, or a thread when there is none) removes the due ones every
//!   second, so memory does not grow with dead keys even if they are never read again.
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use kvkit_core::backend::{add_to_counter, cursor, from_unix_ms, stable_hash, unix_ms};
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, KeyInfo, KvStore, ListOptions, ListPage,
    PutItem, PutOptions, Result, SystemClock, Version, WriteCondition,
};
use serde_json::Value;

#[cfg(doc)]
use kvkit_core::ManualClock;

mod index;

use index::IndexKey;

/// The clock's time in unix milliseconds, as entries keep their expiry.
fn now_ms(clock: &dyn Clock) -> u64 {
    unix_ms(clock.now())
}

/// Number of shards of the ordered key index and of the expiry queue.
const INDEX_SHARDS: usize = 4;

/// How often the background task reclaims expired entries, unless configured.
const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// One stored value.
#[derive(Debug, Clone)]
struct Slot {
    value: Bytes,
    /// Unix milliseconds at which the entry expires; 0 for never.
    expires_at_ms: u64,
    metadata: Option<Box<Value>>,
}

impl Slot {
    fn new(value: Bytes, expires_at_ms: Option<u64>, metadata: Option<Value>) -> Self {
        Self {
            value,
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

/// Whether replacing a slot expiring at `old` (`None` when there was none) by one expiring at
/// `new` needs a new expiry-queue entry. An entry already queued at or before the new expiry is
/// found by the reaper, which re-queues it at its real time; only an earlier expiry needs one.
fn needs_schedule(old: Option<u64>, new: u64) -> bool {
    new != 0 && !old.is_some_and(|old| old != 0 && old <= new)
}

/// The second-long bucket an expiry time belongs to: every entry in bucket `b` expires at or
/// before `b * 1000` ms.
fn bucket_of(expires_at_ms: u64) -> u64 {
    expires_at_ms.div_ceil(1000)
}

type ExpiryQueue = BTreeMap<u64, Vec<Arc<str>>>;

struct Inner {
    map: DashMap<Arc<str>, Slot, foldhash::quality::RandomState>,
    /// Every key present in `map` is in its index shard. A key may stay in the index briefly
    /// after leaving the map; readers skip it and removals clean it up.
    index: Box<[RwLock<BTreeSet<IndexKey>>]>,
    /// Every entry with an expiry is queued at a bucket no later than its own.
    expiry: Box<[Mutex<ExpiryQueue>]>,
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
    /// let store = kvkit_memory::MemoryStore::builder().reap_interval(Duration::from_millis(100)).build();
    /// # let _ = store;
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
            expiry: (0..INDEX_SHARDS)
                .map(|_| Mutex::new(BTreeMap::new()))
                .collect(),
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

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shard(&self, key: &str) -> usize {
        // FNV-1a: the shard only spreads contention, so it needs no keyed hash.
        let hash = stable_hash(key);
        // The modulo keeps the result below INDEX_SHARDS, so the cast cannot truncate.
        (hash % INDEX_SHARDS as u64) as usize
    }

    fn schedule(&self, key: Arc<str>, expires_at_ms: u64) {
        let shard = self.shard(&key);
        lock(&self.expiry[shard])
            .entry(bucket_of(expires_at_ms))
            .or_default()
            .push(key);
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
            let expires = slot.expires_at_ms;
            let arc = needs_schedule(Some(existing.expires_at_ms), expires)
                .then(|| existing.key().clone());
            *existing = slot;
            drop(existing);
            if let Some(arc) = arc {
                self.schedule(arc, expires);
            }
            return;
        }
        self.upsert(key, |_| Step::Write(slot, ()));
    }

    /// Decides, under the map entry of `key`, whether to write, and does so while holding the
    /// key's index shard: a key the map gains is in the index before a listing can run, and a
    /// concurrent `index_remove` sees the map and index change together. Then queues the expiry.
    fn upsert<R>(&self, key: &str, decide: impl FnOnce(Option<&mut Slot>) -> Step<R>) -> R {
        let arc: Arc<str> = Arc::from(key);
        let mut index = write(&self.index[self.shard(key)]);
        let (result, schedule) = match self.map.entry(arc.clone()) {
            MapEntry::Occupied(mut occupied) => match decide(Some(occupied.get_mut())) {
                Step::Keep(result) => (result, None),
                Step::Write(slot, result) => {
                    let (old, new) = (occupied.get().expires_at_ms, slot.expires_at_ms);
                    occupied.insert(slot);
                    (result, needs_schedule(Some(old), new).then_some(new))
                }
            },
            MapEntry::Vacant(vacant) => match decide(None) {
                Step::Keep(result) => (result, None),
                Step::Write(slot, result) => {
                    let new = slot.expires_at_ms;
                    vacant.insert(slot);
                    index.insert(IndexKey::new(arc.clone()));
                    (result, needs_schedule(None, new).then_some(new))
                }
            },
        };
        drop(index);
        if let Some(expires) = schedule {
            self.schedule(arc, expires);
        }
        result
    }

    fn remove(&self, key: &str) {
        if let Some((key, _)) = self.map.remove(key) {
            self.index_remove(key);
        }
    }

    /// Removes every entry whose expiry has passed; returns how many were removed.
    fn purge_expired(&self) -> usize {
        let now = now_ms(&*self.clock);
        let due_bucket = now / 1000;
        let mut removed = 0;
        for queue in self.expiry.iter() {
            let due = {
                let mut queue = lock(queue);
                let later = queue.split_off(&(due_bucket + 1));
                std::mem::replace(&mut *queue, later)
            };
            // A key can sit in several due buckets (its expiry was shortened, or it was
            // deleted and written again); handle it once, so duplicates never outlive a purge.
            let mut due: Vec<Arc<str>> = due.into_values().flatten().collect();
            due.sort_unstable();
            due.dedup();
            for key in due {
                let requeue = match self.map.get(&*key) {
                    None => continue,
                    Some(slot) if slot.is_expired_at(now) => None,
                    Some(slot) if slot.expires_at_ms == 0 => continue,
                    Some(slot) => Some((slot.key().clone(), slot.expires_at_ms)),
                };
                if let Some((arc, expires)) = requeue {
                    self.schedule(arc, expires);
                    continue;
                }
                match self.map.remove_if(&*key, |_, slot| slot.is_expired_at(now)) {
                    Some((key, _)) => {
                        self.index_remove(key);
                        removed += 1;
                    }
                    None => {
                        // A write landed since we looked, and may rely on this queue entry.
                        let current = self
                            .map
                            .get(&*key)
                            .filter(|slot| slot.expires_at_ms != 0)
                            .map(|slot| (slot.key().clone(), slot.expires_at_ms));
                        if let Some((arc, expires)) = current {
                            self.schedule(arc, expires);
                        }
                    }
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

    fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let limit = self.caps.check_list(options)?;
        let prefix = options.prefix.as_str();
        let after = match &options.cursor {
            None => None,
            Some(cursor) => Some(cursor::decode(cursor, prefix)?),
        };
        let start = match after {
            Some(last) => Bound::Excluded(IndexKey::new(Arc::from(last))),
            None => Bound::Included(IndexKey::new(Arc::from(prefix))),
        };
        let now = now_ms(&*self.clock);
        let shards: Vec<_> = self.index.iter().map(|shard| read(shard)).collect();
        let mut ranges: Vec<_> = shards
            .iter()
            .map(|shard| shard.range((start.clone(), Bound::Unbounded)))
            .collect();
        let mut heap = BinaryHeap::with_capacity(ranges.len());
        for (i, range) in ranges.iter_mut().enumerate() {
            if let Some(key) = range.next() {
                heap.push(Reverse((key, i)));
            }
        }
        let mut keys = Vec::new();
        while let Some(Reverse((entry, i))) = heap.pop() {
            let key = entry.key();
            if !key.starts_with(prefix) {
                heap.clear();
                break;
            }
            if keys.len() == limit {
                heap.push(Reverse((entry, i)));
                break;
            }
            if let Some(next) = ranges[i].next() {
                heap.push(Reverse((next, i)));
            }
            if let Some(slot) = self.map.get(&**key)
                && !slot.is_expired_at(now)
            {
                keys.push(KeyInfo::new(
                    key.to_string(),
                    slot.expiration(),
                    slot.metadata.as_deref().cloned(),
                ));
            }
        }
        let more = heap
            .peek()
            .is_some_and(|Reverse((entry, _))| entry.key().starts_with(prefix));
        let cursor = match keys.last() {
            Some(last) if more => Some(cursor::encode(prefix, &last.name)),
            _ => None,
        };
        Ok(ListPage::new(keys, cursor))
    }

    fn increment(&self, key: &str, delta: i64, expires_at_ms: Option<u64>) -> Result<i64> {
        let now = now_ms(&*self.clock);
        let add = |slot: &mut Slot| -> Result<i64> {
            let next = add_to_counter(key, &slot.value, delta)?;
            slot.value = Bytes::from(next.to_string());
            Ok(next)
        };
        let fresh = || Slot::new(Bytes::from(delta.to_string()), expires_at_ms, None);
        if let Some(mut slot) = self.map.get_mut(key)
            && !slot.is_expired_at(now)
        {
            return add(&mut slot);
        }
        self.upsert(key, |existing| match existing {
            Some(slot) if !slot.is_expired_at(now) => Step::Keep(add(slot)),
            _ => Step::Write(fresh(), Ok(delta)),
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
        hasher.write(&slot.value);
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
            Some((key, _)) => {
                self.index_remove(key);
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
    /// let store = kvkit_memory::MemoryStore::builder().cloudflare_limits().build();
    /// # let _ = store;
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
        Ok(self.inner.live(key, |slot| slot.value.clone()))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        Ok(self.inner.live(key, |slot| {
            Entry::new(
                slot.value.clone(),
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
            .map(|key| self.inner.live(key, |slot| slot.value.clone()))
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
        let inner = &self.inner;
        inner.caps.check_key(key)?;
        let now = inner.clock.now();
        let expiry = inner.caps.check_expiry(options.expiry_on_create, now)?;
        let expires_at = inner.caps.expires_at(expiry, now).map(unix_ms);
        inner.increment(key, delta, expires_at)
    }
}
