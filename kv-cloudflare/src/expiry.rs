//! Expiries as the REST API takes them: the `expiration` / `expiration_ttl` parameter of a write.
//! The rule (and the one an increment uses to keep its counter's expiration) is Cloudflare's
//! profile in [`kvkit_core::backend::cloudflare`], shared with the binding backend.

use std::time::SystemTime;

use kvkit_core::Expiry;
use kvkit_core::backend::cloudflare::{WriteExpiry, write_expiry};

/// The expiry query parameter (or bulk-item field) of a write made at `now`.
pub(crate) fn expiry_param(expiry: Option<Expiry>, now: SystemTime) -> Option<(&'static str, u64)> {
    Some(match write_expiry(expiry?, now) {
        WriteExpiry::Expiration(secs) => ("expiration", secs),
        WriteExpiry::ExpirationTtl(secs) => ("expiration_ttl", secs),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kvkit_core::backend::{from_unix_ms, from_unix_secs};

    use super::*;

    #[test]
    fn parameters_are_named_as_the_api_takes_them() {
        let now = from_unix_ms(1_000_001);
        let ttl = Some(Expiry::Ttl(Duration::from_secs(60)));
        assert_eq!(expiry_param(ttl, now), Some(("expiration_ttl", 61)));
        let at = Some(Expiry::At(from_unix_secs(5)));
        assert_eq!(expiry_param(at, now), Some(("expiration", 5)));
        assert_eq!(expiry_param(None, now), None);
    }
}
