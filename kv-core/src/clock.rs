//! Time as the stores and patterns see it, injectable so TTL logic is tested without sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
///
/// Stores and patterns read time only through a `Clock`, so tests can use a [`ManualClock`] and
/// move time forward instead of sleeping. On `wasm32` (Cloudflare Workers) read the time
/// through [`SystemClock`]: the standard library's `SystemTime::now()` panics there.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::{Clock, SystemClock};
/// assert!(SystemClock.now() > UNIX_EPOCH + Duration::from_secs(1_600_000_000));
/// ```
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (on `wasm32`, JavaScript's `Date.now()`: the standard library has
/// no clock there).
///
/// ```
/// use kvkit_core::{Clock, SystemClock};
/// let a = SystemClock.now();
/// assert!(SystemClock.now() >= a);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(not(target_arch = "wasm32"))]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(target_arch = "wasm32")]
    fn now(&self) -> SystemTime {
        // Whole milliseconds, never negative: the cast saturates.
        crate::time::from_unix_ms(js_sys::Date::now() as u64)
    }
}

/// A clock that only moves when told to; clones share the same time. It keeps nanoseconds since
/// the unix epoch, so it stands between 1970 and 2554.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), start + Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

/// 2026-01-01T00:00:00Z, where a [`ManualClock::new`] starts, in unix seconds.
const MANUAL_CLOCK_START_SECS: u64 = 1_767_225_600;

fn nanos_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl ManualClock {
    /// A clock standing at 2026-01-01T00:00:00Z.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::Clock;
    /// assert_eq!(kvkit_core::ManualClock::new().now(), UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    /// ```
    pub fn new() -> Self {
        Self::at(UNIX_EPOCH + Duration::from_secs(MANUAL_CLOCK_START_SECS))
    }

    /// A clock standing at `now` (clamped to the years 1970 to 2554).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::Clock;
    /// let at = UNIX_EPOCH + Duration::from_millis(5);
    /// assert_eq!(kvkit_core::ManualClock::at(at).now(), at);
    /// ```
    pub fn at(now: SystemTime) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(nanos_since_epoch(now))),
        }
    }

    /// Moves the clock forward by `by` (saturating).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::Clock;
    /// let clock = kvkit_core::ManualClock::at(UNIX_EPOCH);
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(1500));
    /// ```
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(nanos))
            });
    }

    /// Sets the clock to `now` (clamped to the years 1970 to 2554).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use kvkit_core::Clock;
    /// let clock = kvkit_core::ManualClock::new();
    /// clock.set(UNIX_EPOCH + Duration::from_secs(42));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(42));
    /// ```
    pub fn set(&self, now: SystemTime) {
        self.nanos.store(nanos_since_epoch(now), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}
