//! Fixed- and sliding-window rate limiting on the store's counter.

use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kvkit_core::backend::{from_unix_secs, parse_counter, unix_ms};
use kvkit_core::{Clock, CounterOptions, KvStore, SystemClock};

/// The prefix of every counter's key, as in the TypeScript pattern.
const PREFIX: &str = "ratelimit:";

/// How requests are counted.
///
/// ```
/// assert_ne!(kvkit_patterns::Window::Fixed, kvkit_patterns::Window::Sliding);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The TypeScript pattern's fixed window: one counter per identifier and window, starting
    /// at a multiple of the window length. A burst of up to twice the limit can straddle a
    /// window boundary.
    Fixed,
    /// The sliding-window estimate Cloudflare describes for its own limiter: the previous
    /// window's count, weighted by the share of it still inside the sliding window, plus the
    /// current count. It smooths the boundary burst with the same two counters.
    Sliding,
}

/// The outcome of a check, as the TypeScript pattern's `{allowed, remaining, resetAt}`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let reset_at = UNIX_EPOCH + Duration::from_secs(60);
/// let r = kvkit_patterns::RateLimit { allowed: true, limit: 10, remaining: 9, reset_at, reset_after: Duration::from_secs(30) };
/// assert_eq!(r.retry_after(UNIX_EPOCH + Duration::from_secs(30)), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u64,
    /// How many more requests the current window admits.
    pub remaining: u64,
    /// When the current window ends (a whole second: windows start at multiples of their length
    /// in unix seconds).
    pub reset_at: SystemTime,
    /// How long from the check until the window ends, rounded up to whole seconds (what a
    /// `Retry-After` header says).
    pub reset_after: Duration,
}

impl RateLimit {
    /// How long from `now` until the window resets (zero once it has), for a `Retry-After`
    /// header.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let reset_at = UNIX_EPOCH + Duration::from_secs(100);
    /// let r = kvkit_patterns::RateLimit { allowed: false, limit: 10, remaining: 0, reset_at, reset_after: Duration::ZERO };
    /// assert_eq!(r.retry_after(UNIX_EPOCH + Duration::from_secs(160)), Duration::ZERO);
    /// assert_eq!(r.retry_after(UNIX_EPOCH + Duration::from_secs(99)), Duration::from_secs(1));
    /// ```
    pub fn retry_after(&self, now: SystemTime) -> Duration {
        self.reset_at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// A rate limiter over any [`KvStore`], wire-compatible with the TypeScript `rateLimit`: the
/// count of `identifier`'s requests in the window starting at `windowStart` (unix seconds) is a
/// decimal string under `ratelimit:{identifier}:{windowStart}`.
///
/// **Exact where the store allows.** Each check is one atomic
/// [`increment`](KvStore::increment) (the TypeScript pattern reads, then writes, so concurrent
/// requests all see the same count and all get in). With limit L, any number of concurrent
/// checks admit exactly L on a store whose counter is atomic (memory, Redis). A rejected check
/// gives its increment back, so the stored count is the number admitted, as in the TypeScript
/// pattern. On Cloudflare KV, which has no atomic operation, the counter is a read-modify-write
/// and concurrent checks can over-admit, as the TypeScript pattern does; [`is_exact`](Self::is_exact)
/// says which case applies. There, a check that finds the window full does not write at all
/// (Cloudflare takes one write a second per key).
///
/// Windows are whole seconds (at least one); counters live for the window (two for
/// [`Window::Sliding`]), raised to the backend's minimum TTL.
///
/// **Speed.** On a store that counts without I/O (the memory store answers
/// [`KvStore::increment_now`]) a fixed-window check reads the clock, builds one key and
/// increments it under a map lock, with no boxed future. That is still about 0.4× the checks
/// per second of governor's in-process keyed limiter (BENCHMARKS.md,
/// `ratelimit_memory_ratio_vs_governor`):
/// governor keeps a bare atomic per identifier, while these counters are ordinary keys of the
/// store (`ratelimit:{identifier}:{windowStart}`, listable, readable by a TypeScript Worker,
/// the same on every backend), which costs a second clock read (the store's, for the counter's
/// expiry) and a longer key to build, hash and compare.
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 2, Duration::from_secs(60));
/// assert!(limiter.check("10.0.0.1").await?.allowed);
/// assert!(limiter.check("10.0.0.1").await?.allowed);
/// let third = limiter.check("10.0.0.1").await?;
/// assert!(!third.allowed);
/// assert_eq!(third.remaining, 0);
/// assert!(limiter.check("10.0.0.2").await?.allowed);
/// # Ok(()) }
/// ```
pub struct RateLimiter<S> {
    store: S,
    clock: Arc<dyn Clock>,
    limit: u64,
    window_secs: u64,
    window: Window,
}

impl<S: Clone> Clone for RateLimiter<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            limit: self.limit,
            window_secs: self.window_secs,
            window: self.window,
        }
    }
}

impl<S: Debug> Debug for RateLimiter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("store", &self.store)
            .field("limit", &self.limit)
            .field("window_secs", &self.window_secs)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimiter`].
///
/// ```
/// use std::time::Duration;
/// let limiter = kvkit_patterns::RateLimiter::builder(kvkit_memory::MemoryStore::new(), 100, Duration::from_secs(60))
///     .window(kvkit_patterns::Window::Sliding)
///     .clock(kvkit_core::ManualClock::new())
///     .build();
/// assert_eq!(limiter.limit(), 100);
/// ```
#[derive(Debug)]
pub struct RateLimiterBuilder<S> {
    limiter: RateLimiter<S>,
}

impl<S: KvStore> RateLimiterBuilder<S> {
    /// Fixed (the default) or sliding window.
    ///
    /// ```
    /// let b = kvkit_patterns::RateLimiter::builder(kvkit_memory::MemoryStore::new(), 1, std::time::Duration::from_secs(1))
    ///     .window(kvkit_patterns::Window::Sliding);
    /// assert!(format!("{:?}", b.build()).contains("window: Sliding"));
    /// ```
    pub fn window(mut self, window: Window) -> Self {
        self.limiter.window = window;
        self
    }

    /// Reads time from `clock` (the default is the system clock).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let b = kvkit_patterns::RateLimiter::builder(kvkit_memory::MemoryStore::new(), 1, std::time::Duration::from_secs(1))
    ///     .clock(kvkit_core::ManualClock::new());
    /// // The manual clock stands at 2026-01-01T00:00:00Z: the window ends a second later.
    /// let outcome = b.build().check("client").await?;
    /// let end = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_601);
    /// assert_eq!(outcome.reset_at, end);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.limiter.clock = Arc::new(clock);
        self
    }

    /// Builds the limiter.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::builder(kvkit_memory::MemoryStore::new(), 1, std::time::Duration::from_secs(1)).build();
    /// assert!(format!("{limiter:?}").contains("limit: 1, window_secs: 1, window: Fixed"));
    /// ```
    pub fn build(self) -> RateLimiter<S> {
        self.limiter
    }
}

impl<S: KvStore> RateLimiter<S> {
    /// `limit` requests per fixed `window` (rounded up to whole seconds, at least one), as the
    /// TypeScript pattern.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 100, std::time::Duration::from_secs(60));
    /// assert_eq!(limiter.window_length(), std::time::Duration::from_secs(60));
    /// ```
    pub fn fixed_window(store: S, limit: u64, window: Duration) -> Self {
        Self::builder(store, limit, window).build()
    }

    /// `limit` requests per sliding `window` (rounded up to whole seconds, at least one).
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::sliding_window(kvkit_memory::MemoryStore::new(), 100, std::time::Duration::from_secs(60));
    /// assert_eq!(limiter.window_kind(), kvkit_patterns::Window::Sliding);
    /// ```
    pub fn sliding_window(store: S, limit: u64, window: Duration) -> Self {
        Self::builder(store, limit, window)
            .window(Window::Sliding)
            .build()
    }

    /// A builder for a limiter of `limit` requests per `window`.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::builder(kvkit_memory::MemoryStore::new(), 5, std::time::Duration::from_millis(1500)).build();
    /// assert_eq!(limiter.window_length().as_secs(), 2);
    /// ```
    pub fn builder(store: S, limit: u64, window: Duration) -> RateLimiterBuilder<S> {
        let window_secs = window
            .as_secs()
            .saturating_add(u64::from(window.subsec_nanos() > 0))
            .max(1);
        RateLimiterBuilder {
            limiter: Self {
                store,
                clock: Arc::new(SystemClock),
                limit,
                window_secs,
                window: Window::Fixed,
            },
        }
    }

    /// Requests admitted per window.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 7, std::time::Duration::from_secs(1));
    /// assert_eq!(limiter.limit(), 7);
    /// ```
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window's length.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 7, std::time::Duration::from_secs(9));
    /// assert_eq!(limiter.window_length().as_secs(), 9);
    /// ```
    pub fn window_length(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// Fixed or sliding.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 7, std::time::Duration::from_secs(9));
    /// assert_eq!(limiter.window_kind(), kvkit_patterns::Window::Fixed);
    /// ```
    pub fn window_kind(&self) -> Window {
        self.window
    }

    /// The store the counters live in.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 7, std::time::Duration::from_secs(9));
    /// assert_eq!(kvkit_core::KvStore::capabilities(limiter.store()).backend, "memory");
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// `true` when concurrent checks never admit more than the limit (the store's counter is
    /// atomic); `false` on a best-effort counter such as Cloudflare KV's.
    ///
    /// ```
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 7, std::time::Duration::from_secs(9));
    /// assert!(limiter.is_exact());
    /// ```
    pub fn is_exact(&self) -> bool {
        self.store.capabilities().atomic_counter
    }

    /// Counts one request of `identifier` and says whether it is admitted. An identifier too
    /// long for the backend's keys is an error ([`kvkit_core::Error::KeyTooLong`]), before any
    /// request to the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 1, std::time::Duration::from_secs(60));
    /// let first = limiter.check("user:1").await?;
    /// assert!(first.allowed && first.remaining == 0);
    /// assert!(!limiter.check("user:1").await?.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, identifier: &str) -> kvkit_core::Result<RateLimit> {
        let now_ms = unix_ms(self.clock.now());
        let window = self.window_at(identifier, now_ms);
        self.store.capabilities().check_key(&window.current)?;
        let atomic = self.is_exact();
        let previous = self.previous_count(&window).await?;
        if !atomic {
            // A best-effort counter: a full window is answered without a write, as the
            // TypeScript pattern does.
            let current = self.read_count(&window.current).await?;
            if self.estimate(previous, current, &window) >= self.limit_f64() {
                return Ok(self.rejected(&window));
            }
        }
        let count = self.count(&window.current, 1).await?;
        let count = u64::try_from(count).unwrap_or(0);
        let estimate = self.estimate(previous, count, &window);
        if estimate <= self.limit_f64() {
            return Ok(RateLimit {
                allowed: true,
                limit: self.limit,
                remaining: remaining(self.limit_f64() - estimate),
                reset_at: window.reset_at,
                reset_after: window.reset_after,
            });
        }
        // Give the increment back, so the stored count is what was admitted.
        self.count(&window.current, -1).await?;
        Ok(self.rejected(&window))
    }

    /// Adds `delta` to the counter at `key`: at once where the store counts without I/O
    /// ([`KvStore::increment_now`]), which spares the hot path a boxed future.
    async fn count(&self, key: &str, delta: i64) -> kvkit_core::Result<i64> {
        let options = CounterOptions::new().ttl(self.counter_ttl());
        match self.store.increment_now(key, delta, options) {
            Some(counted) => counted,
            None => self.store.increment(key, delta, options).await,
        }
    }

    /// The quota left for `identifier`, without using any of it: `allowed` says whether a
    /// check now would be admitted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 3, std::time::Duration::from_secs(60));
    /// limiter.check("k").await?;
    /// let quota = limiter.peek("k").await?;
    /// assert_eq!((quota.allowed, quota.remaining), (true, 2));
    /// assert_eq!(limiter.peek("k").await?.remaining, 2);
    /// # Ok(()) }
    /// ```
    pub async fn peek(&self, identifier: &str) -> kvkit_core::Result<RateLimit> {
        let now_ms = unix_ms(self.clock.now());
        let window = self.window_at(identifier, now_ms);
        self.store.capabilities().check_key(&window.current)?;
        let previous = self.previous_count(&window).await?;
        let current = self.read_count(&window.current).await?;
        let estimate = self.estimate(previous, current, &window);
        Ok(RateLimit {
            allowed: estimate + 1.0 <= self.limit_f64(),
            limit: self.limit,
            remaining: remaining(self.limit_f64() - estimate),
            reset_at: window.reset_at,
            reset_after: window.reset_after,
        })
    }

    fn window_at(&self, identifier: &str, now_ms: u64) -> WindowKeys {
        let now = now_ms / 1000;
        let start = now - now % self.window_secs;
        let previous = match self.window {
            Window::Fixed => None,
            Window::Sliding => start
                .checked_sub(self.window_secs)
                .map(|previous_start| counter_key(identifier, previous_start)),
        };
        let elapsed_ms = now_ms.saturating_sub(start.saturating_mul(1000));
        WindowKeys {
            current: counter_key(identifier, start),
            previous,
            reset_at: from_unix_secs(start.saturating_add(self.window_secs)),
            reset_after: Duration::from_secs(
                start
                    .saturating_add(self.window_secs)
                    .saturating_mul(1000)
                    .saturating_sub(now_ms)
                    .div_ceil(1000),
            ),
            // The share of the previous window still inside the sliding window.
            previous_weight: 1.0
                - (elapsed_ms as f64 / (self.window_secs as f64 * 1000.0)).min(1.0),
        }
    }

    async fn previous_count(&self, window: &WindowKeys) -> kvkit_core::Result<u64> {
        match &window.previous {
            Some(key) => self.read_count(key).await,
            None => Ok(0),
        }
    }

    /// The count stored under `key`; a missing or unreadable count (not written by a counter)
    /// is zero.
    async fn read_count(&self, key: &str) -> kvkit_core::Result<u64> {
        let raw = self.store.get(key).await?;
        Ok(raw
            .and_then(|raw| parse_counter(&raw))
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    fn estimate(&self, previous: u64, current: u64, window: &WindowKeys) -> f64 {
        previous as f64 * window.previous_weight + current as f64
    }

    fn limit_f64(&self) -> f64 {
        self.limit as f64
    }

    fn rejected(&self, window: &WindowKeys) -> RateLimit {
        RateLimit {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset_at: window.reset_at,
            reset_after: window.reset_after,
        }
    }

    fn counter_ttl(&self) -> Duration {
        let windows = match self.window {
            Window::Fixed => 1,
            Window::Sliding => 2,
        };
        Duration::from_secs(self.window_secs.saturating_mul(windows))
            .max(self.store.capabilities().min_ttl)
    }
}

struct WindowKeys {
    current: String,
    previous: Option<String>,
    reset_at: SystemTime,
    reset_after: Duration,
    previous_weight: f64,
}

/// The counter's key, `ratelimit:{identifier}:{window_start}`, built in one allocation (every
/// check builds one, and `format!` would grow the string piece by piece).
fn counter_key(identifier: &str, window_start: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let start = digits.format(window_start);
    let mut key = String::with_capacity(PREFIX.len() + identifier.len() + 1 + start.len());
    key.push_str(PREFIX);
    key.push_str(identifier);
    key.push(':');
    key.push_str(start);
    key
}

fn remaining(room: f64) -> u64 {
    if room > 0.0 {
        // Saturating float-to-int conversion of a non-negative, finite number.
        room.floor() as u64
    } else {
        0
    }
}
