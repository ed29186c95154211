//! What goes on the wire: percent-encoding of keys and query values, the multipart body of a
//! write with metadata, the REST envelope, expirations and the replacement character of text
//! reads. (Our list cursor around Cloudflare's is the shared
//! [`ListCursor`](kvkit_core::backend::cloudflare::ListCursor).)

use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use kvkit_core::backend::from_unix_secs;
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

/// An expiration as the API gives it (a JSON number of unix seconds, integral in practice).
pub(crate) fn expiration_of(raw: Option<f64>) -> Option<SystemTime> {
    raw.filter(|s| s.is_finite() && *s > 0.0)
        // Rounded up, as the contract reports expirations; the cast saturates.
        .map(|s| from_unix_secs(s.ceil() as u64))
}

/// JSON `null` metadata is no metadata on Cloudflare.
pub(crate) fn metadata_of(raw: Option<Value>) -> Option<Value> {
    raw.filter(|m| !m.is_null())
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
    fn expirations_round_up_and_ignore_nonsense() {
        let at = |secs| Some(from_unix_secs(secs));
        assert_eq!(expiration_of(Some(1_700_000_000.0)), at(1_700_000_000));
        assert_eq!(expiration_of(Some(1.2)), at(2));
        assert_eq!(expiration_of(Some(f64::NAN)), None);
        assert_eq!(expiration_of(Some(-5.0)), None);
        assert_eq!(expiration_of(None), None);
    }
}
