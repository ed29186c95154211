//! Checks that errors keep credentials out of what they print.

use std::error::Error as StdError;

use kvkit_core::Error;

/// Everything `error` prints: its `Display` and `Debug`, and those of every source below it.
fn printed(error: &Error) -> String {
    let mut out = format!("{error}\n{error:?}");
    let mut source = StdError::source(error);
    while let Some(inner) = source {
        out.push_str(&format!("\n{inner}\n{inner:?}"));
        source = inner.source();
    }
    out
}

/// Whether `text` holds something shaped like a session id: 8-4-4-4-12 hexadecimal digits.
fn has_uuid_shape(text: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = text.as_bytes();
    let len: usize = GROUPS.iter().sum::<usize>() + GROUPS.len() - 1;
    bytes.windows(len).any(|window| {
        let mut at = 0;
        GROUPS.iter().enumerate().all(|(i, &n)| {
            let group = &window[at..at + n];
            at += n;
            let dash = i + 1 == GROUPS.len() || window[at] == b'-';
            at += 1;
            dash && group.iter().all(u8::is_ascii_hexdigit)
        })
    })
}

/// What `error` prints (its `Display` and `Debug`, and those of all its sources) that gives a
/// session id away, if anything: 8 consecutive characters of `id` when it is known, or anything
/// shaped like a session id at all.
///
/// ```
/// use kvkit_core::{Capabilities, Error};
/// use kvkit_testsuite::secrets::session_id_leak;
/// let id = "0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b";
/// let caps = Capabilities::new("x").with_max_value_bytes(1);
/// let refused = caps.check_value(&format!("session:{id}"), 2).unwrap_err();
/// assert_eq!(session_id_leak(&refused, Some(id)), None);
/// let leaky = Error::backend("x", format!("writing session:{id} failed"), false, "boom");
/// assert!(session_id_leak(&leaky, None).is_some());
/// let partly = Error::backend("x", "failed", false, format!("at {}", &id[..9]));
/// assert!(session_id_leak(&partly, Some(id)).is_some());
/// ```
pub fn session_id_leak(error: &Error, id: Option<&str>) -> Option<String> {
    let text = printed(error);
    if has_uuid_shape(&text) {
        return Some(format!("something shaped like a session id: {text}"));
    }
    let chars: Vec<char> = id?.chars().collect();
    chars.windows(8).find_map(|part| {
        let part: String = part.iter().collect();
        text.contains(&part)
            .then(|| format!("part of the session id ({part:?}): {text}"))
    })
}

/// Asserts that `error` gives no session id away ([`session_id_leak`]): for each backend's test
/// that a failed session write keeps the id (a bearer credential) out of its error, and so out
/// of every log line that records it.
///
/// ```
/// let caps = kvkit_core::Capabilities::new("x").with_max_value_bytes(1);
/// let id = "0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b";
/// let refused = caps.check_value(&format!("session:{id}"), 2).unwrap_err();
/// kvkit_testsuite::secrets::assert_hides_session_id(&refused, Some(id));
/// ```
pub fn assert_hides_session_id(error: &Error, id: Option<&str>) {
    if let Some(leak) = session_id_leak(error, id) {
        panic!("the error prints {leak}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shapes_are_found_anywhere() {
        assert!(has_uuid_shape(
            "k=session:0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b;"
        ));
        assert!(has_uuid_shape("0F8C2A2E-5B7D-4E0A-9A4B-2C6D8E1F3A5B"));
        assert!(!has_uuid_shape("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5"));
        assert!(!has_uuid_shape("0f8c2a2e_5b7d-4e0a-9a4b-2c6d8e1f3a5b"));
        assert!(!has_uuid_shape("#0f8c2a2e5b7d4e0a (44 bytes)"));
    }

    #[test]
    fn sources_are_searched() {
        let id = "0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b";
        let inner = Error::backend("x", "inner", false, format!("at {}", &id[10..20]));
        let error = Error::backend("x", "failed", false, inner);
        assert!(session_id_leak(&error, Some(id)).is_some());
        assert!(session_id_leak(&error, None).is_none());
    }
}
