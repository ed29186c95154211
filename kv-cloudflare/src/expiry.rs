//! Expiries as Cloudflare takes them: the `expiration` / `expiration_ttl` parameter of a write.
//! (The one an increment sends to keep its counter's expiration is Cloudflare's profile in
//! [`kvkit_core::backend::cloudflare::counter_expiry`], shared with the binding backend.)

use std::time::SystemTime;

use kvkit_core::Expiry;
use kvkit_core::backend::{unix_ms, unix_secs_ceil};

/// The expiry query parameter (or bulk-item field) of a write made at `now`.
pub(crate) fn expiry_param(expiry: Option<Expiry>, now: SystemTime) -> Option<(&'static str, u64)> {
    match expiry? {
        // Whole seconds already: Capabilities round expirations up to the second.
        Expiry::At(at) => Some(("expiration", unix_secs_ceil(at))),
        Expiry::Ttl(ttl) => {
            // The TTL is whole seconds (Capabilities round it up). Cloudflare adds it to its
            // current whole second; adding the started part of ours keeps the full TTL.
            let started = u64::from(!unix_ms(now).is_multiple_of(1000));
            Some(("expiration_ttl", ttl.as_secs().saturating_add(started)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kvkit_core::backend::{from_unix_ms, from_unix_secs};

    use super::*;

    #[test]
    fn ttl_parameter_keeps_the_whole_ttl() {
        let ttl = Some(Expiry::Ttl(Duration::from_secs(60)));
        let whole = from_unix_ms(1_000_000);
        assert_eq!(expiry_param(ttl, whole), Some(("expiration_ttl", 60)));
        let started = from_unix_ms(1_000_001);
        assert_eq!(expiry_param(ttl, started), Some(("expiration_ttl", 61)));
        assert_eq!(
            expiry_param(Some(Expiry::At(from_unix_secs(5))), whole),
            Some(("expiration", 5))
        );
        assert_eq!(expiry_param(None, whole), None);
    }
}
