//! Time as the stores and patterns see it, injectable so TTL logic is tested without sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
#[cfg(not(target_arch = "wasm32"))]
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in milliseconds since the unix epoch.
///
/// Stores and patterns read time only through a `Clock`, so tests can use a [`ManualClock`] and
/// move time forward instead of sleeping.
///
/// ```
/// use kvkit_core::{Clock, SystemClock};
/// assert!(SystemClock.now_ms() > 1_600_000_000_000);
/// ```
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock (on `wasm32`, JavaScript's `Date.now()`: the standard library has
/// no clock there).
///
/// ```
/// use kvkit_core::{Clock, SystemClock};
/// let a = SystemClock.now_ms();
/// assert!(SystemClock.now_ms() >= a);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(not(target_arch = "wasm32"))]
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    #[cfg(target_arch = "wasm32")]
    fn now_ms(&self) -> u64 {
        // Whole milliseconds, never negative: the cast saturates.
        js_sys::Date::now() as u64
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let start = clock.now_ms();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), start + 2000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

/// 2026-01-01T00:00:00Z, where a [`ManualClock::new`] starts.
const MANUAL_CLOCK_START_MS: u64 = 1_767_225_600_000;

impl ManualClock {
    /// A clock standing at 2026-01-01T00:00:00Z.
    ///
    /// ```
    /// use kvkit_core::Clock;
    /// assert_eq!(kvkit_core::ManualClock::new().now_ms(), 1_767_225_600_000);
    /// ```
    pub fn new() -> Self {
        Self::at(MANUAL_CLOCK_START_MS)
    }

    /// A clock standing at `now_ms` milliseconds since the unix epoch.
    ///
    /// ```
    /// use kvkit_core::Clock;
    /// assert_eq!(kvkit_core::ManualClock::at(5).now_ms(), 5);
    /// ```
    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Moves the clock forward by `by` (saturating).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::Clock;
    /// let clock = kvkit_core::ManualClock::at(0);
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(clock.now_ms(), 1500);
    /// ```
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(ms))
            });
    }

    /// Sets the clock to `now_ms` milliseconds since the unix epoch.
    ///
    /// ```
    /// use kvkit_core::Clock;
    /// let clock = kvkit_core::ManualClock::new();
    /// clock.set(42);
    /// assert_eq!(clock.now_ms(), 42);
    /// ```
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
