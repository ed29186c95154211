//! The parts of the binding backend that are plain Rust: error mapping, cursors, batch
//! de-duplication. Compiled on every target so that they are unit-tested natively.

use std::collections::HashMap;
use std::time::Duration;

use kvkit_core::{Error, Result, cursor};
use serde::{Deserialize, Serialize};

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

/// Where a listing continues: Cloudflare's cursor, tied to the prefix it was issued for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListState {
    #[serde(rename = "p")]
    pub(crate) prefix_hash: u64,
    #[serde(rename = "c")]
    pub(crate) cf_cursor: String,
}

impl ListState {
    pub(crate) fn encode(&self) -> String {
        // Serializing a string and an integer cannot fail.
        cursor::encode("", &serde_json::to_string(self).unwrap_or_default())
    }

    pub(crate) fn decode(raw: &str, prefix: &str) -> Result<Self> {
        let invalid = || Error::InvalidCursor {
            cursor: kvkit_core::RedactedKey::new(raw),
        };
        let json = cursor::decode(raw, "")?;
        let state: Self = serde_json::from_str(&json).map_err(|_| invalid())?;
        if state.prefix_hash != kvkit_core::stable_hash(prefix) {
            return Err(invalid());
        }
        Ok(state)
    }
}

/// The last write of each key, in the order of their first appearance.
pub(crate) fn last_per_key<T>(items: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut at: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<(String, T)> = Vec::with_capacity(items.len());
    for (key, item) in items {
        match at.get(&key) {
            Some(&i) => out[i].1 = item,
            None => {
                at.insert(key.clone(), out.len());
                out.push((key, item));
            }
        }
    }
    out
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

    #[test]
    fn cursors_are_tied_to_their_prefix() {
        let state = ListState {
            prefix_hash: kvkit_core::stable_hash("user:"),
            cf_cursor: "opaque".into(),
        };
        let raw = state.encode();
        assert_eq!(
            ListState::decode(&raw, "user:").unwrap().cf_cursor,
            "opaque"
        );
        assert!(matches!(
            ListState::decode(&raw, "order:"),
            Err(Error::InvalidCursor { .. })
        ));
        assert!(matches!(
            ListState::decode("made up", "user:"),
            Err(Error::InvalidCursor { .. })
        ));
    }

    #[test]
    fn the_last_write_of_a_key_wins_in_first_appearance_order() {
        let items = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("a".to_owned(), 3),
        ];
        assert_eq!(
            last_per_key(items),
            vec![("a".to_owned(), 3), ("b".to_owned(), 2)]
        );
    }
}
