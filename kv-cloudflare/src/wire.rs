//! What goes on the wire: percent-encoding of keys and query values, the multipart body of a
//! write with metadata, the REST envelope, the replacement character of text reads, and our list
//! cursor around Cloudflare's.

use bytes::{BufMut, Bytes, BytesMut};
use kvkit_core::{Error, Result, cursor};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The replacement character a text decoder puts where bytes were not UTF-8.
pub(crate) const REPLACEMENT: char = '\u{fffd}';

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) is percent-encoded, as JS
/// `encodeURIComponent` does (which also keeps `! ' ( ) *`; we encode those too, which every
/// server decodes the same).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URL path segment or query value: `/` becomes `%2F`, `é` becomes `%C3%A9`.
pub(crate) fn encode_component(s: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(s, COMPONENT)
}

/// The multipart/form-data body of a write with metadata: a `value` part (sent as a file, so
/// the server keeps its bytes as they are) and a `metadata` part holding the JSON.
pub(crate) fn multipart(value: &[u8], metadata_json: &str) -> (String, Bytes) {
    // 128 random bits: a value cannot contain the boundary unless it guesses them.
    let boundary = format!(
        "kv-cloudflare-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    let mut body = BytesMut::with_capacity(value.len() + metadata_json.len() + 400);
    body.put_slice(format!("--{boundary}\r\n").as_bytes());
    body.put_slice(
        b"Content-Disposition: form-data; name=\"value\"; filename=\"value\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.put_slice(value);
    body.put_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    body.put_slice(
        b"Content-Disposition: form-data; name=\"metadata\"\r\n\
          Content-Type: application/json\r\n\r\n",
    );
    body.put_slice(metadata_json.as_bytes());
    body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.freeze(),
    )
}

/// One entry of the `errors` array of the REST envelope.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ApiMessage {
    #[serde(default)]
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) message: String,
}

/// The REST envelope: `{success, errors, messages, result, result_info}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    #[serde(default)]
    pub(crate) success: bool,
    #[serde(default)]
    pub(crate) errors: Vec<ApiMessage>,
    pub(crate) result: Option<T>,
    #[serde(default)]
    pub(crate) result_info: Option<ResultInfo>,
}

/// `result_info` of a listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ResultInfo {
    #[serde(default)]
    pub(crate) cursor: Option<String>,
}

/// One key of a `keys` listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedKey {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) expiration: Option<f64>,
    #[serde(default)]
    pub(crate) metadata: Option<Value>,
}

/// The `result` of `bulk/get`: `{values: {key: value | {value, metadata, expiration?} | null}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkValues {
    #[serde(default)]
    pub(crate) values: serde_json::Map<String, Value>,
}

/// The `result` of a bulk write or delete.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BulkOutcome {
    #[serde(default)]
    pub(crate) unsuccessful_keys: Vec<String>,
}

/// Body of `bulk/get`.
#[derive(Serialize)]
pub(crate) struct BulkGet<'a> {
    pub(crate) keys: Vec<&'a str>,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(rename = "withMetadata")]
    pub(crate) with_metadata: bool,
}

/// An expiration as the API gives it (a JSON number, integral in practice), as unix seconds.
pub(crate) fn expiration_secs(raw: Option<f64>) -> Option<u64> {
    raw.filter(|s| s.is_finite() && *s > 0.0)
        // Rounded up, as the contract reports expirations; the cast saturates.
        .map(|s| s.ceil() as u64)
}

/// JSON `null` metadata is no metadata on Cloudflare.
pub(crate) fn metadata_of(raw: Option<Value>) -> Option<Value> {
    raw.filter(|m| !m.is_null())
}

/// Where a listing continues: Cloudflare's cursor of the page to read (`None` for the first),
/// and, when our previous page stopped inside that page, the last key we returned from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListState {
    /// A hash of the prefix the cursor was issued for.
    #[serde(rename = "p")]
    pub(crate) prefix_hash: u64,
    #[serde(rename = "c")]
    pub(crate) cf_cursor: Option<String>,
    #[serde(rename = "a")]
    pub(crate) after: Option<String>,
}

impl ListState {
    /// Our cursor: the state as JSON, behind kvkit-core's checksummed cursor encoding.
    pub(crate) fn encode(&self) -> String {
        // Serializing strings and integers cannot fail.
        cursor::encode("", &serde_json::to_string(self).unwrap_or_default())
    }

    /// Decodes a cursor we issued for a listing of `prefix`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_encode_everything_but_unreserved() {
        assert_eq!(
            encode_component("a/b c%?#é+&=~._-").to_string(),
            "a%2Fb%20c%25%3F%23%C3%A9%2B%26%3D~._-"
        );
    }

    #[test]
    fn list_state_round_trips_and_is_bound_to_its_prefix() {
        let state = ListState {
            prefix_hash: kvkit_core::stable_hash("user:"),
            cf_cursor: Some("abc".into()),
            after: Some("user:7".into()),
        };
        let raw = state.encode();
        assert_eq!(ListState::decode(&raw, "user:").unwrap(), state);
        assert!(ListState::decode(&raw, "order:").is_err());
        assert!(ListState::decode("made up", "user:").is_err());
    }

    #[test]
    fn expirations_round_up_and_ignore_nonsense() {
        assert_eq!(expiration_secs(Some(1_700_000_000.0)), Some(1_700_000_000));
        assert_eq!(expiration_secs(Some(1.2)), Some(2));
        assert_eq!(expiration_secs(Some(f64::NAN)), None);
        assert_eq!(expiration_secs(Some(-5.0)), None);
        assert_eq!(expiration_secs(None), None);
    }
}
