//! Conversions between the public API's instants ([`SystemTime`]) and the unix time backends
//! store, and the RFC 3339 form errors print.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole milliseconds since the unix epoch (rounded down; 0 before the epoch, saturating).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::backend::unix_ms;
/// assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_micros(1_500)), 1);
/// assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
/// ```
pub fn unix_ms(at: SystemTime) -> u64 {
    // Seconds and milliseconds apart: `as_millis` divides in 128 bits, and every counter and
    // expiring write asks for the time in milliseconds.
    at.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    })
}

/// Whole seconds since the unix epoch, rounded up (so an expiration never moves earlier; 0
/// before the epoch).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::backend::unix_secs_ceil;
/// assert_eq!(unix_secs_ceil(UNIX_EPOCH + Duration::from_millis(1_001)), 2);
/// assert_eq!(unix_secs_ceil(UNIX_EPOCH + Duration::from_secs(7)), 7);
/// ```
pub fn unix_secs_ceil(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// The instant `ms` milliseconds after the unix epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(kvkit_core::backend::from_unix_ms(1_500), UNIX_EPOCH + Duration::from_millis(1_500));
/// ```
pub fn from_unix_ms(ms: u64) -> SystemTime {
    after_epoch(Duration::from_millis(ms))
}

/// The instant `secs` seconds after the unix epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(kvkit_core::backend::from_unix_secs(60), UNIX_EPOCH + Duration::from_secs(60));
/// ```
pub fn from_unix_secs(secs: u64) -> SystemTime {
    after_epoch(Duration::from_secs(secs))
}

/// `UNIX_EPOCH + since`, or where the platform cannot represent that, a far-future instant
/// (halving `since` until it fits: hundreds of billions of years on every platform).
fn after_epoch(since: Duration) -> SystemTime {
    UNIX_EPOCH
        .checked_add(since)
        .unwrap_or_else(|| after_epoch(since / 2))
}

/// `at + by`, saturating instead of overflowing.
pub(crate) fn saturating_add(at: SystemTime, by: Duration) -> SystemTime {
    at.checked_add(by)
        .unwrap_or_else(|| after_epoch(Duration::MAX))
}

/// `at` rounded up to a whole multiple of `precision` since the unix epoch (a zero precision,
/// or an instant before the epoch, leaves it unchanged).
pub(crate) fn round_up(at: SystemTime, precision: Duration) -> SystemTime {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => after_epoch(crate::capabilities::round_up(since, precision)),
        Err(_) => at,
    }
}

/// An instant in RFC 3339 form, UTC (`2038-01-19T03:14:07Z`, with milliseconds when it has
/// any), as errors and the CLI print instants.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kvkit_core::backend::rfc3339;
/// assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(2_147_483_647)).to_string(), "2038-01-19T03:14:07Z");
/// assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_500)).to_string(), "1970-01-01T00:00:01.500Z");
/// ```
pub fn rfc3339(at: SystemTime) -> impl fmt::Display {
    Rfc3339(at)
}

struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(since) = self.0.duration_since(UNIX_EPOCH) else {
            return f.write_str("(before 1970-01-01T00:00:00Z)");
        };
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rest = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        )?;
        match since.subsec_millis() {
            0 => f.write_str("Z"),
            ms => write!(f, ".{ms:03}Z"),
        }
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_instants() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_767_225_600, "2026-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(from_unix_secs(secs)).to_string(), text);
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)).to_string(),
            "(before 1970-01-01T00:00:00Z)"
        );
    }

    #[test]
    fn conversions_saturate() {
        let far = from_unix_ms(u64::MAX);
        assert_eq!(unix_ms(far), u64::MAX);
        assert!(saturating_add(far, Duration::MAX) >= far);
        assert_eq!(unix_secs_ceil(UNIX_EPOCH - Duration::from_secs(5)), 0);
        let at = UNIX_EPOCH + Duration::from_millis(1_001);
        assert_eq!(round_up(at, Duration::from_secs(1)), from_unix_secs(2));
        assert_eq!(round_up(at, Duration::ZERO), at);
    }
}
