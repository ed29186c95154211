//! A read-through cache with stale-while-revalidate, single flight and a refresh lease.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kvkit_core::backend::unix_ms;
use kvkit_core::{Bytes, Clock, Error, KvStore, PutOptions, SystemClock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::spawn::{MaybeSend, Spawn};

/// The prefix of every cache entry's key, as in the TypeScript pattern.
const ENTRY_PREFIX: &str = "cache:";
/// The prefix of the lease key that lets one process at a time refresh an entry.
const LEASE_PREFIX: &str = "cache-lease:";

/// How long an entry is fresh, how long it may be served stale, and how long a "not found" is
/// remembered.
///
/// ```
/// use std::time::Duration;
/// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(300))
///     .stale_while_revalidate(Duration::from_secs(60))
///     .negative_ttl(Duration::from_secs(30));
/// assert_eq!(options.ttl(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    ttl: Duration,
    stale_while_revalidate: Duration,
    negative_ttl: Option<Duration>,
}

impl CacheOptions {
    /// Entries are fresh for `ttl` after they were fetched, with no stale period and no
    /// negative caching.
    ///
    /// ```
    /// let options = kvkit_patterns::CacheOptions::new(std::time::Duration::from_secs(60));
    /// assert_eq!(options.stale_period(), std::time::Duration::ZERO);
    /// ```
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            stale_while_revalidate: Duration::ZERO,
            negative_ttl: None,
        }
    }

    /// After `ttl`, serve the entry for `period` more while one background task refreshes it
    /// (the TypeScript pattern's `staleWhileRevalidate`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60))
    ///     .stale_while_revalidate(Duration::from_secs(10));
    /// assert_eq!(options.stale_period(), Duration::from_secs(10));
    /// ```
    pub fn stale_while_revalidate(mut self, period: Duration) -> Self {
        self.stale_while_revalidate = period;
        self
    }

    /// Remember for `ttl` that a fetcher found nothing (used by
    /// [`Cache::get_or_fetch_optional`]); without it, "not found" is never cached.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60))
    ///     .negative_ttl(Duration::from_secs(5));
    /// assert_eq!(options.negative(), Some(Duration::from_secs(5)));
    /// ```
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// How long an entry is fresh.
    ///
    /// ```
    /// let options = kvkit_patterns::CacheOptions::new(std::time::Duration::from_secs(5));
    /// assert_eq!(options.ttl().as_secs(), 5);
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long an entry is served stale after its `ttl`.
    ///
    /// ```
    /// let options = kvkit_patterns::CacheOptions::new(std::time::Duration::from_secs(5));
    /// assert!(options.stale_period().is_zero());
    /// ```
    pub fn stale_period(&self) -> Duration {
        self.stale_while_revalidate
    }

    /// How long "not found" is remembered, if at all.
    ///
    /// ```
    /// let options = kvkit_patterns::CacheOptions::new(std::time::Duration::from_secs(5));
    /// assert_eq!(options.negative(), None);
    /// ```
    pub fn negative(&self) -> Option<Duration> {
        self.negative_ttl
    }
}

/// Where a value came from.
///
/// ```
/// assert_eq!(kvkit_patterns::CacheStatus::Stale.as_str(), "STALE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// A fresh entry from the store.
    Hit,
    /// An entry past its `ttl` but inside its stale period; a refresh runs in the background.
    Stale,
    /// Fetched now (by this call or by a concurrent call for the same key).
    Miss,
}

impl CacheStatus {
    /// `"HIT"`, `"STALE"` or `"MISS"`, as an `X-Cache` header says it.
    ///
    /// ```
    /// assert_eq!(kvkit_patterns::CacheStatus::Hit.as_str(), "HIT");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Stale => "STALE",
            Self::Miss => "MISS",
        }
    }
}

impl Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value and where it came from.
///
/// ```
/// let cached = kvkit_patterns::Cached { value: 7, status: kvkit_patterns::CacheStatus::Miss };
/// assert_eq!(cached.value, 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached<T> {
    /// The value.
    pub value: T,
    /// Whether it was fresh, stale or fetched.
    pub status: CacheStatus,
}

/// Why a cached read failed. Store failures are not among them: the cache degrades to the
/// fetcher when the store cannot be read or written, and logs it.
///
/// ```
/// let err: kvkit_patterns::CacheError<std::io::Error> =
///     kvkit_patterns::CacheError::Fetch(std::sync::Arc::new(std::io::Error::other("db down")));
/// assert_eq!(err.to_string(), "fetching the value failed: db down");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The fetcher failed and nothing usable was cached. Concurrent callers for the same key
    /// share one fetch, so they share its error.
    Fetch(Arc<E>),
    /// The key cannot be stored (`cache:{key}` empty or too long for the backend).
    Key(Error),
    /// A concurrent caller fetched the value, and it did not decode back into this caller's
    /// type (only when the type's `Serialize` and `Deserialize` disagree).
    Decode(Error),
}

impl<E: Display> Display for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(e) => write!(f, "fetching the value failed: {e}"),
            Self::Key(e) => write!(f, "invalid cache key: {e}"),
            Self::Decode(e) => write!(f, "the shared fetch result did not decode: {e}"),
        }
    }
}

impl<E: Display + Debug> std::error::Error for CacheError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Fetch(_) => None,
            Self::Key(e) | Self::Decode(e) => Some(e),
        }
    }
}

/// The stored envelope, exactly the TypeScript pattern's `{ data, timestamp }`.
#[derive(Serialize)]
struct EnvelopeOut<'a, V> {
    data: &'a V,
    timestamp: u64,
}

#[derive(Deserialize)]
struct EnvelopeIn<V> {
    data: V,
    /// Milliseconds since the epoch; JavaScript may write it as a float.
    timestamp: f64,
}

/// A decoded entry and the bytes it came from.
struct Entry<V> {
    data: V,
    timestamp_ms: u64,
    raw: Bytes,
}

enum Freshness {
    Fresh,
    Stale,
    Expired,
}

/// The outcome of one shared fetch: the stored envelope and where it came from, or the
/// fetcher's error.
type FlightResult<E> = Result<(Bytes, CacheStatus), Arc<E>>;
type Flight<E> = OnceCell<FlightResult<E>>;
/// The flights in progress, by cache key and value and error types.
type Flights = Mutex<HashMap<(String, TypeId), Arc<dyn Any + Send + Sync>>>;

/// A read-through cache over any [`KvStore`], wire-compatible with the TypeScript pattern.
///
/// [`cached`](Self::cached) returns the entry under `cache:{key}` while it is fresh (`ttl`),
/// serves it for the stale period while one background task refreshes it, and otherwise calls
/// the fetcher and stores `{"data": …, "timestamp": …}` with a storage TTL of
/// `ttl + stale_while_revalidate` (raised to the backend's minimum; freshness is decided from
/// the timestamp, not the storage TTL). Beyond the TypeScript pattern:
///
/// - **Single flight**: concurrent misses for one key in one process call the fetcher once;
///   the others wait for its result (and share its error).
/// - **One refresh at a time**: a stale hit starts at most one background refresh per key in
///   this process, and a lease key (`cache-lease:{key}`, taken with
///   [`put_if_absent`](KvStore::put_if_absent)) keeps other processes from refreshing it at the
///   same time. On a store whose put-if-absent is best-effort (Cloudflare KV) two processes
///   may still both refresh, rarely.
/// - **Errors**: a fetcher error during a background refresh keeps the stale value and is
///   logged (`tracing`, warn); a fetcher error with nothing usable cached is returned as
///   [`CacheError::Fetch`]. A store that cannot be read or written is logged and bypassed.
/// - **Negative caching** through [`get_or_fetch_optional`](Self::get_or_fetch_optional), an
///   entry whose `data` is `null`, fresh for [`CacheOptions::negative_ttl`].
/// - An entry that does not decode as the requested type is a miss, and is overwritten.
///
/// ```
/// use std::time::Duration;
/// use kvkit_patterns::{Cache, CacheOptions, CacheStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::new(kvkit_memory::MemoryStore::new());
/// let options = CacheOptions::new(Duration::from_secs(300));
/// let fetch = || async { Ok::<_, std::io::Error>(vec!["a".to_owned(), "b".to_owned()]) };
///
/// let first = cache.get_or_fetch("tags", &options, fetch).await?;
/// assert_eq!(first.status, CacheStatus::Miss);
/// let second = cache.get_or_fetch("tags", &options, fetch).await?;
/// assert_eq!((second.status, second.value), (CacheStatus::Hit, first.value));
/// # Ok(()) }
/// ```
pub struct Cache<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    clock: Arc<dyn Clock>,
    spawner: Arc<dyn Spawn>,
    lease_ttl: Duration,
    /// In-flight fetches by cache key and the caller's value and error types.
    flights: Flights,
    /// Cache keys with a background refresh running in this process.
    refreshing: Mutex<HashSet<String>>,
}

impl<S> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Debug> Debug for Cache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store)
            .field("lease_ttl", &self.inner.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Cache`] with a clock, a spawner or a lease TTL of your choosing.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::ManualClock;
/// use kvkit_patterns::{Cache, CacheOptions, CacheStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = ManualClock::new();
/// let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
/// let cache = Cache::builder(store)
///     .clock(clock.clone())
///     .lease_ttl(Duration::from_secs(10))
///     .build();
/// let options = CacheOptions::new(Duration::from_secs(60));
/// let fetch = || async { Ok::<_, std::io::Error>(1u32) };
/// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Miss);
/// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Hit);
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Miss);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CacheBuilder<S> {
    store: S,
    clock: Arc<dyn Clock>,
    spawner: Option<Arc<dyn Spawn>>,
    lease_ttl: Duration,
}

impl<S: KvStore> CacheBuilder<S> {
    /// Reads time from `clock` (the default is the system clock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_patterns::{CacheOptions, CacheStatus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = kvkit_core::ManualClock::new();
    /// let cache = kvkit_patterns::Cache::builder(kvkit_memory::MemoryStore::new())
    ///     .clock(clock.clone())
    ///     .build();
    /// let options = CacheOptions::new(Duration::from_secs(60)).stale_while_revalidate(Duration::from_secs(60));
    /// let fetch = || async { Ok::<_, std::io::Error>(1u32) };
    /// cache.get_or_fetch("k", &options, fetch).await?;
    /// clock.advance(Duration::from_secs(90));
    /// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Stale);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Runs background refreshes with `spawner` (the default is `TokioSpawner` on native
    /// targets and `LocalSpawner`, the JavaScript event loop, on `wasm32`; in a Worker, give it
    /// the invocation's `wait_until` so a refresh outlives the response).
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::builder(kvkit_memory::MemoryStore::new())
    ///     .spawner(kvkit_patterns::TokioSpawner)
    ///     .build();
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60));
    /// let n: u32 = cache.cached("k", &options, || async { Ok::<_, std::io::Error>(3) }).await?;
    /// assert_eq!(n, 3);
    /// # Ok(()) }
    /// ```
    pub fn spawner(mut self, spawner: impl Spawn) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// How long a process holds the refresh lease of a key at most (default 30 s, raised to
    /// the backend's minimum TTL). The lease is released as soon as the refresh ends.
    ///
    /// ```
    /// let cache = kvkit_patterns::Cache::builder(kvkit_memory::MemoryStore::new())
    ///     .lease_ttl(std::time::Duration::from_secs(5))
    ///     .build();
    /// assert!(format!("{cache:?}").contains("lease_ttl: 5s"));
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Builds the cache.
    ///
    /// ```
    /// let cache = kvkit_patterns::Cache::builder(kvkit_memory::MemoryStore::new()).build();
    /// assert!(format!("{cache:?}").contains("lease_ttl: 30s"));
    /// ```
    pub fn build(self) -> Cache<S> {
        Cache {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                spawner: self.spawner.unwrap_or_else(default_spawner),
                lease_ttl: self.lease_ttl,
                flights: Mutex::default(),
                refreshing: Mutex::default(),
            }),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn default_spawner() -> Arc<dyn Spawn> {
    Arc::new(crate::spawn::TokioSpawner)
}

#[cfg(target_arch = "wasm32")]
fn default_spawner() -> Arc<dyn Spawn> {
    Arc::new(crate::spawn::LocalSpawner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn is_never_negative<T>(_: &T) -> bool {
    false
}

impl<S: KvStore> Cache<S> {
    /// A cache over `store` with the system clock and the default spawner.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60));
    /// let n: u32 = cache.cached("k", &options, || async { Ok::<_, std::io::Error>(3) }).await?;
    /// assert_eq!(n, 3);
    /// # Ok(()) }
    /// ```
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// A builder for a cache over `store`.
    ///
    /// ```
    /// let cache = kvkit_patterns::Cache::builder(kvkit_memory::MemoryStore::new()).build();
    /// assert!(format!("{cache:?}").contains("MemoryStore"));
    /// ```
    pub fn builder(store: S) -> CacheBuilder<S> {
        CacheBuilder {
            store,
            clock: Arc::new(SystemClock),
            spawner: None,
            lease_ttl: Duration::from_secs(30),
        }
    }

    /// The store under the cache.
    ///
    /// ```
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(kvkit_core::KvStore::capabilities(cache.store()).backend, "memory");
    /// ```
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The value under `key`: cached while fresh or stale, otherwise fetched and cached.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60));
    /// let n: u64 = cache.cached("answer", &options, || async { Ok::<_, std::io::Error>(42) }).await?;
    /// assert_eq!(n, 42);
    /// # Ok(()) }
    /// ```
    pub async fn cached<T, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions,
        fetcher: F,
    ) -> Result<T, CacheError<E>>
    where
        T: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
    {
        self.get_or_fetch(key, options, fetcher)
            .await
            .map(|cached| cached.value)
    }

    /// Like [`cached`](Self::cached), and says whether the value was a hit, stale or fetched
    /// (for an `X-Cache` header, say).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_patterns::CacheStatus;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60));
    /// let fetch = || async { Ok::<_, std::io::Error>("v".to_owned()) };
    /// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Miss);
    /// assert_eq!(cache.get_or_fetch("k", &options, fetch).await?.status, CacheStatus::Hit);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_fetch<T, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions,
        fetcher: F,
    ) -> Result<Cached<T>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, E>> + MaybeSend + 'static,
    {
        self.lookup(key, options, is_never_negative::<T>, fetcher)
            .await
    }

    /// Like [`get_or_fetch`](Self::get_or_fetch) for a fetcher that may find nothing: `None`
    /// is cached (as `{"data": null, …}`) for [`CacheOptions::negative_ttl`] when that is set,
    /// and not cached otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_patterns::CacheStatus;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60)).negative_ttl(Duration::from_secs(10));
    /// let lookup = || async { Ok::<Option<String>, std::io::Error>(None) };
    /// assert_eq!(cache.get_or_fetch_optional("user:9", &options, lookup).await?.status, CacheStatus::Miss);
    /// let again = cache.get_or_fetch_optional("user:9", &options, lookup).await?;
    /// assert_eq!((again.value, again.status), (None, CacheStatus::Hit));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_fetch_optional<T, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions,
        fetcher: F,
    ) -> Result<Cached<Option<T>>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<Option<T>, E>> + MaybeSend + 'static,
    {
        self.lookup(key, options, Option::<T>::is_none, fetcher)
            .await
    }

    /// Drops the entry for `key`, so the next read fetches.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = kvkit_patterns::Cache::new(kvkit_memory::MemoryStore::new());
    /// let options = kvkit_patterns::CacheOptions::new(Duration::from_secs(60));
    /// cache.cached("k", &options, || async { Ok::<_, std::io::Error>(1) }).await?;
    /// cache.invalidate("k").await?;
    /// let n: i32 = cache.cached("k", &options, || async { Ok::<_, std::io::Error>(2) }).await?;
    /// assert_eq!(n, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, key: &str) -> kvkit_core::Result<()> {
        self.inner.store.delete(&entry_key(key)).await
    }

    async fn lookup<V, E, F, Fut>(
        &self,
        key: &str,
        options: &CacheOptions,
        is_negative: fn(&V) -> bool,
        fetcher: F,
    ) -> Result<Cached<V>, CacheError<E>>
    where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
    {
        let cache_key = entry_key(key);
        self.inner
            .store
            .capabilities()
            .check_key(&cache_key)
            .map_err(CacheError::Key)?;
        if let Some(entry) = self.read::<V>(&cache_key).await {
            match self.freshness(&entry, options, is_negative) {
                Freshness::Fresh => {
                    return Ok(Cached {
                        value: entry.data,
                        status: CacheStatus::Hit,
                    });
                }
                Freshness::Stale => {
                    let options = options.clone();
                    self.refresh_in_background(key, cache_key, options, is_negative, fetcher);
                    return Ok(Cached {
                        value: entry.data,
                        status: CacheStatus::Stale,
                    });
                }
                Freshness::Expired => {}
            }
        }
        // Boxed, so the hit path's future stays small.
        Box::pin(self.fetch_once(&cache_key, options, is_negative, fetcher)).await
    }

    /// Fetches `cache_key` once for all concurrent callers with the same types.
    async fn fetch_once<V, E, F, Fut>(
        &self,
        cache_key: &str,
        options: &CacheOptions,
        is_negative: fn(&V) -> bool,
        fetcher: F,
    ) -> Result<Cached<V>, CacheError<E>>
    where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let flight_key = (cache_key.to_owned(), TypeId::of::<(V, E)>());
        let shared = Arc::clone(
            lock(&self.inner.flights)
                .entry(flight_key.clone())
                .or_insert_with(|| Arc::new(Flight::<E>::new())),
        );
        // Declared before `flight`, so it is dropped after it, also when this future is.
        let mut joined = Joined {
            flights: &self.inner.flights,
            key: flight_key,
            shared,
            finished: false,
        };
        // The map is keyed by the value and error types, so this downcast succeeds; were it to
        // fail, this call would fetch on its own rather than share.
        let flight = Arc::clone(&joined.shared)
            .downcast::<Flight<E>>()
            .unwrap_or_else(|_| Arc::new(Flight::<E>::new()));
        let mut mine = None;
        let outcome = flight
            .get_or_init(|| self.lead(cache_key, options, is_negative, fetcher, &mut mine))
            .await
            .clone();
        joined.finished = true;
        drop(flight);
        drop(joined);
        if let Some(cached) = mine {
            return Ok(cached);
        }
        let (raw, status) = outcome.map_err(CacheError::Fetch)?;
        serde_json::from_slice::<EnvelopeIn<V>>(&raw)
            .map(|envelope| Cached {
                value: envelope.data,
                status,
            })
            .map_err(|e| CacheError::Decode(Error::decode(cache_key, e)))
    }

    /// The fetch that the other callers of a flight wait for. The entry is read again first:
    /// a flight that ended between this caller's read and its joining has stored it.
    async fn lead<V, E, F, Fut>(
        &self,
        cache_key: &str,
        options: &CacheOptions,
        is_negative: fn(&V) -> bool,
        fetcher: F,
        mine: &mut Option<Cached<V>>,
    ) -> FlightResult<E>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(entry) = self.read::<V>(cache_key).await
            && matches!(
                self.freshness(&entry, options, is_negative),
                Freshness::Fresh
            )
        {
            *mine = Some(Cached {
                value: entry.data,
                status: CacheStatus::Hit,
            });
            return Ok((entry.raw, CacheStatus::Hit));
        }
        let value = fetcher().await.map_err(Arc::new)?;
        let raw = match self.encode(cache_key, &value, options, is_negative) {
            Some((raw, lifetime)) => {
                self.store_entry(cache_key, raw.clone(), lifetime).await;
                raw
            }
            None => Bytes::new(),
        };
        *mine = Some(Cached {
            value,
            status: CacheStatus::Miss,
        });
        Ok((raw, CacheStatus::Miss))
    }

    fn refresh_in_background<V, E, F, Fut>(
        &self,
        key: &str,
        cache_key: String,
        options: CacheOptions,
        is_negative: fn(&V) -> bool,
        fetcher: F,
    ) where
        V: Serialize + DeserializeOwned + MaybeSend + 'static,
        E: Display + Send + Sync + 'static,
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<V, E>> + MaybeSend + 'static,
    {
        if !lock(&self.inner.refreshing).insert(cache_key.clone()) {
            return;
        }
        let guard = RefreshGuard {
            inner: Arc::clone(&self.inner),
            cache_key,
        };
        let lease_key = format!("{LEASE_PREFIX}{key}");
        let this = self.clone();
        let task = Box::pin(async move {
            let cache_key = guard.cache_key.as_str();
            if !this.take_lease(&lease_key).await {
                return;
            }
            // Another process may have refreshed the entry while this one waited for the lease.
            let fresh = this.read::<V>(cache_key).await.is_some_and(|entry| {
                matches!(
                    this.freshness(&entry, &options, is_negative),
                    Freshness::Fresh
                )
            });
            if !fresh {
                match fetcher().await {
                    Ok(value) => {
                        let encoded = this.encode(cache_key, &value, &options, is_negative);
                        drop(value);
                        if let Some((raw, lifetime)) = encoded {
                            this.store_entry(cache_key, raw, lifetime).await;
                        }
                    }
                    Err(error) => tracing::warn!(
                        target: "kvkit::cache",
                        key = cache_key,
                        %error,
                        "background refresh failed; the stale value stays until it expires"
                    ),
                }
            }
            if let Err(error) = this.inner.store.delete(&lease_key).await {
                tracing::warn!(target: "kvkit::cache", key = cache_key, %error, "could not release the refresh lease");
            }
        });
        if !self.inner.spawner.spawn(task) {
            tracing::debug!(target: "kvkit::cache", "no spawner available: stale entry served without a refresh");
        }
    }

    /// Takes the cross-process refresh lease; `true` when this process may refresh. A store
    /// error lets the refresh go ahead (at worst two processes refresh).
    async fn take_lease(&self, lease_key: &str) -> bool {
        let store = &self.inner.store;
        if store.capabilities().check_key(lease_key).is_err() {
            return true;
        }
        let ttl = self.storage_ttl(self.inner.lease_ttl);
        let stamp = Bytes::from(unix_ms(self.inner.clock.now()).to_string());
        match store
            .put_if_absent(lease_key, stamp, PutOptions::new().ttl(ttl))
            .await
        {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(target: "kvkit::cache", %error, "could not take the refresh lease; refreshing anyway");
                true
            }
        }
    }

    /// Reads and decodes an entry; a missing, unreadable or undecodable entry is `None`.
    async fn read<V: DeserializeOwned>(&self, cache_key: &str) -> Option<Entry<V>> {
        let raw = match self.inner.store.get(cache_key).await {
            Ok(raw) => raw?,
            Err(error) => {
                tracing::warn!(target: "kvkit::cache", key = cache_key, %error, "cache read failed; fetching");
                return None;
            }
        };
        match serde_json::from_slice::<EnvelopeIn<V>>(&raw) {
            Ok(envelope) => Some(Entry {
                data: envelope.data,
                timestamp_ms: timestamp_ms(envelope.timestamp),
                raw,
            }),
            Err(error) => {
                tracing::debug!(target: "kvkit::cache", key = cache_key, %error, "cache entry did not decode; treating it as a miss");
                None
            }
        }
    }

    /// The envelope of `value`, and how long it is to be stored (`None`: not stored, a "not
    /// found" without negative caching). `None` altogether when the value does not encode.
    fn encode<V: Serialize>(
        &self,
        cache_key: &str,
        value: &V,
        options: &CacheOptions,
        is_negative: fn(&V) -> bool,
    ) -> Option<(Bytes, Option<Duration>)> {
        let lifetime = if is_negative(value) {
            options.negative_ttl
        } else {
            Some(options.ttl.saturating_add(options.stale_while_revalidate))
        };
        let envelope = EnvelopeOut {
            data: value,
            timestamp: unix_ms(self.inner.clock.now()),
        };
        match serde_json::to_vec(&envelope) {
            Ok(raw) => Some((Bytes::from(raw), lifetime)),
            Err(error) => {
                tracing::warn!(target: "kvkit::cache", key = cache_key, %error, "value did not encode as JSON; not cached");
                None
            }
        }
    }

    /// Stores an encoded entry for `lifetime`; a failure is logged, and the value is served
    /// uncached.
    async fn store_entry(&self, cache_key: &str, raw: Bytes, lifetime: Option<Duration>) {
        let Some(lifetime) = lifetime else {
            return;
        };
        let put = PutOptions::new().ttl(self.storage_ttl(lifetime));
        if let Err(error) = self.inner.store.put(cache_key, raw, put).await {
            tracing::warn!(target: "kvkit::cache", key = cache_key, %error, "cache write failed; serving the fetched value uncached");
        }
    }

    /// `lifetime` in whole seconds (as the TypeScript pattern's `expirationTtl`), at least the
    /// backend's minimum TTL.
    fn storage_ttl(&self, lifetime: Duration) -> Duration {
        let secs = lifetime
            .as_secs()
            .saturating_add(u64::from(lifetime.subsec_nanos() > 0));
        Duration::from_secs(secs.max(1)).max(self.inner.store.capabilities().min_ttl)
    }

    fn freshness<V>(
        &self,
        entry: &Entry<V>,
        options: &CacheOptions,
        is_negative: fn(&V) -> bool,
    ) -> Freshness {
        let age = unix_ms(self.inner.clock.now()).saturating_sub(entry.timestamp_ms);
        if is_negative(&entry.data) {
            return match options.negative_ttl {
                Some(ttl) if age < duration_ms(ttl) => Freshness::Fresh,
                _ => Freshness::Expired,
            };
        }
        let ttl = duration_ms(options.ttl);
        if age < ttl {
            Freshness::Fresh
        } else if age < ttl.saturating_add(duration_ms(options.stale_while_revalidate)) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }
}

fn entry_key(key: &str) -> String {
    let mut cache_key = String::with_capacity(ENTRY_PREFIX.len() + key.len());
    cache_key.push_str(ENTRY_PREFIX);
    cache_key.push_str(key);
    cache_key
}

/// A JavaScript timestamp (possibly fractional, possibly nonsense) as whole milliseconds.
fn timestamp_ms(timestamp: f64) -> u64 {
    if timestamp.is_finite() && timestamp > 0.0 {
        // Saturating float-to-int conversion; JavaScript timestamps are far below 2^53.
        timestamp as u64
    } else {
        0
    }
}

/// Marks a key as no longer refreshing when its task ends, however it ends.
/// One caller's part in a flight. When the flight has finished, the first caller to leave takes
/// it out of the map, so later callers start a new one (and read what it stored). When a caller
/// is dropped before it finished (a client went away), the flight leaves the map with its last
/// caller: nothing stays behind for a key nobody waits for, and the next caller fetches anew.
struct Joined<'a> {
    flights: &'a Flights,
    key: (String, TypeId),
    shared: Arc<dyn Any + Send + Sync>,
    finished: bool,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        let ours = flights
            .get(&self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.shared));
        // Callers join under this lock, so the count is stable here: the map's reference and
        // this caller's are all that is left when nobody else waits.
        if ours && (self.finished || Arc::strong_count(&self.shared) <= 2) {
            flights.remove(&self.key);
        }
    }
}

struct RefreshGuard<S> {
    inner: Arc<Inner<S>>,
    cache_key: String,
}

impl<S> Drop for RefreshGuard<S> {
    fn drop(&mut self) {
        lock(&self.inner.refreshing).remove(&self.cache_key);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::*;

    /// Polls `future` once, as a request would before its client goes away.
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn flights<S>(cache: &Cache<S>) -> usize {
        lock(&cache.inner.flights).len()
    }

    #[tokio::test]
    async fn a_fetch_every_caller_left_leaves_nothing_behind() {
        let cache = Cache::new(kvkit_memory::MemoryStore::new());
        let options = CacheOptions::new(Duration::from_secs(60));
        let never = || std::future::pending::<Result<u32, std::io::Error>>();
        let mut first = Box::pin(cache.get_or_fetch("k", &options, never));
        let mut second = Box::pin(cache.get_or_fetch("k", &options, never));
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        assert_eq!(flights(&cache), 1, "both callers share one fetch");
        drop(first);
        assert_eq!(flights(&cache), 1, "the second caller still waits for it");
        drop(second);
        assert_eq!(flights(&cache), 0, "nobody waits: the fetch is gone");
        for key in 0..100 {
            let key = key.to_string();
            let mut abandoned = pin!(cache.get_or_fetch(&key, &options, never));
            assert!(poll_once(abandoned.as_mut()).is_pending());
        }
        assert_eq!(flights(&cache), 0, "abandoned keys do not pile up");
        let later = cache
            .get_or_fetch("k", &options, || async { Ok::<_, std::io::Error>(7u32) })
            .await
            .expect("fetch");
        assert_eq!((later.value, later.status), (7, CacheStatus::Miss));
        assert_eq!(flights(&cache), 0);
    }
}
