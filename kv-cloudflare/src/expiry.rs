//! Expiries as Cloudflare takes them: the `expiration` / `expiration_ttl` parameter of a write,
//! and the one an increment sends to keep its counter's expiration.

use kvkit_core::Expiry;

/// Cloudflare's shortest expiry, in seconds.
const MIN_TTL_SECS: u64 = 60;

/// The expiry query parameter (or bulk-item field) of a write made now.
pub(crate) fn expiry_param(expiry: Option<Expiry>, now_ms: u64) -> Option<(&'static str, u64)> {
    match expiry? {
        Expiry::At(at) => Some(("expiration", at)),
        Expiry::Ttl(ttl) => {
            // The TTL is whole seconds (Capabilities round it up). Cloudflare adds it to its
            // current whole second; adding the started part of ours keeps the full TTL.
            let started = u64::from(!now_ms.is_multiple_of(1000));
            Some(("expiration_ttl", ttl.as_secs().saturating_add(started)))
        }
    }
}

/// The expiry parameter of an increment made at `now_ms` to a counter that expires at `at`
/// (unix seconds): that expiration when Cloudflare accepts it, else the earliest it accepts.
pub(crate) fn counter_expiry(at: u64, now_ms: u64) -> (&'static str, u64) {
    // Cloudflare accepts an expiration at least 60 s past its current whole second;
    // allow a second for the request to get there.
    if at >= (now_ms + 1000) / 1000 + MIN_TTL_SECS {
        ("expiration", at)
    } else {
        // Cloudflare refuses expirations under 60 s away: the earliest it accepts.
        ("expiration_ttl", MIN_TTL_SECS)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ttl_parameter_keeps_the_whole_ttl() {
        let ttl = Some(Expiry::Ttl(Duration::from_secs(60)));
        assert_eq!(expiry_param(ttl, 1_000_000), Some(("expiration_ttl", 60)));
        assert_eq!(expiry_param(ttl, 1_000_001), Some(("expiration_ttl", 61)));
        assert_eq!(
            expiry_param(Some(Expiry::At(5)), 1),
            Some(("expiration", 5))
        );
        assert_eq!(expiry_param(None, 1), None);
    }

    #[test]
    fn counter_keeps_its_expiration_unless_it_is_under_a_minute_away() {
        // At 1,000.5 s, the earliest kept expiration is 1,001 + 60.
        assert_eq!(counter_expiry(1061, 1_000_500), ("expiration", 1061));
        assert_eq!(counter_expiry(1060, 1_000_500), ("expiration_ttl", 60));
        assert_eq!(counter_expiry(0, 1_000_500), ("expiration_ttl", 60));
    }
}
