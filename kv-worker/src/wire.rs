//! The part of the binding backend that is plain Rust: error mapping (cursors, batch
//! de-duplication and the counter-expiry rule are Cloudflare's profile in
//! `kvkit_core::backend::cloudflare`). Compiled on every target so that it is unit-tested
//! natively.

use std::time::Duration;

use kvkit_core::Error;

/// The backend name in [`Capabilities::backend`](kvkit_core::Capabilities::backend) and in errors.
///
/// ```
/// assert_eq!(kvkit_worker::BACKEND, "cloudflare-worker");
/// ```
pub const BACKEND: &str = "cloudflare-worker";

/// Maps the message of what the binding threw onto the contract's errors. workerd words
/// failures as "KV <OP> failed: <status> <status text>".
pub(crate) fn error_of(operation: &'static str, message: String) -> Error {
    let status = message
        .split("failed: ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(429) => Error::RateLimited {
            backend: BACKEND,
            retry_after: Some(Duration::from_secs(1)),
        },
        Some(401 | 403) => Error::PermissionDenied {
            backend: BACKEND,
            message,
        },
        status => Error::Backend {
            backend: BACKEND,
            message: format!("{operation}: {message}"),
            retryable: status.is_some_and(|code| code >= 500),
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_failures_map_to_typed_errors() {
        let limited = error_of("put", "KV PUT failed: 429 Too Many Requests".into());
        assert!(matches!(
            limited,
            Error::RateLimited {
                backend: BACKEND,
                ..
            }
        ));
        assert!(limited.is_retryable());
        let denied = error_of("get", "KV GET failed: 403 Forbidden".into());
        assert!(matches!(denied, Error::PermissionDenied { .. }));
        let unavailable = error_of("list", "KV LIST failed: 503 Service Unavailable".into());
        assert!(unavailable.is_retryable());
        assert!(
            unavailable
                .to_string()
                .contains("list: KV LIST failed: 503")
        );
        let too_long = error_of(
            "get",
            "KV GET failed: 414 UTF-8 encoded length of 600 exceeds key length limit of 512."
                .into(),
        );
        assert!(!too_long.is_retryable());
        let type_error = error_of("put", "TypeError: bad value".into());
        assert!(matches!(
            type_error,
            Error::Backend {
                retryable: false,
                ..
            }
        ));
    }
}
