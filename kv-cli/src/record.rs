//! The JSON shape of one key, shared by `kv get --json`, `kv export` and `kv import`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kvkit::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One key with its value, metadata and expiration, as one line of JSON:
///
/// `{"key":"user:1","value":"Ada","metadata":{"v":2},"expiration":1767225600}`
///
/// A value that is not UTF-8 is written in standard base64 (with padding) and flagged:
/// `{"key":"blob","value":"/wA=","base64":true,"metadata":null,"expiration":null}`.
/// `expiration` is in seconds since the unix epoch, rounded up (an expiration a store keeps in
/// milliseconds is written as the next whole second, so a copied key outlives its original by
/// under a second). On input, `base64`, `metadata` and `expiration` may be left out; unknown
/// fields are refused so that a typo is not silently lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// The key.
    pub(crate) key: String,
    /// The value: UTF-8 text, or base64 when `base64` is true.
    pub(crate) value: String,
    /// Whether `value` is base64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) base64: bool,
    /// The key's JSON metadata.
    #[serde(default)]
    pub(crate) metadata: Option<Value>,
    /// When the key expires, in unix seconds.
    #[serde(default)]
    pub(crate) expiration: Option<u64>,
}

impl Record {
    /// Describes a stored key, encoding `value` as text when it is UTF-8 and base64 otherwise.
    pub(crate) fn new(
        key: String,
        value: &[u8],
        metadata: Option<Value>,
        expiration: Option<u64>,
    ) -> Self {
        let (value, base64) = match std::str::from_utf8(value) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => (STANDARD.encode(value), true),
        };
        Self {
            key,
            value,
            base64,
            metadata,
            expiration,
        }
    }

    /// The value's bytes; `Err` names what is wrong with a `base64` value.
    pub(crate) fn value_bytes(&self) -> Result<Bytes, String> {
        if self.base64 {
            STANDARD
                .decode(&self.value)
                .map(Bytes::from)
                .map_err(|e| format!("value is flagged base64 but is not: {e}"))
        } else {
            Ok(Bytes::copy_from_slice(self.value.as_bytes()))
        }
    }

    /// The record as one line of JSON (without the newline).
    pub(crate) fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record of strings and JSON values serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_stays_text_and_bytes_become_base64() {
        let text = Record::new("k".into(), "héllo".as_bytes(), None, Some(7));
        assert_eq!(
            text.to_line(),
            r#"{"key":"k","value":"héllo","metadata":null,"expiration":7}"#
        );
        let blob = Record::new("b".into(), &[0xff, 0x00], Some(json!({"a": 1})), None);
        assert_eq!(
            blob.to_line(),
            r#"{"key":"b","value":"/wA=","base64":true,"metadata":{"a":1},"expiration":null}"#
        );
        assert_eq!(&blob.value_bytes().unwrap()[..], &[0xff, 0x00]);
    }

    #[test]
    fn lines_round_trip_and_optional_fields_may_be_left_out() {
        let record = Record::new("k".into(), &[1, 2, 0xfe], Some(json!([1])), Some(9));
        let back: Record = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(back, record);
        let minimal: Record = serde_json::from_str(r#"{"key":"k","value":"v"}"#).unwrap();
        assert_eq!(minimal, Record::new("k".into(), b"v", None, None));
    }

    #[test]
    fn typos_and_bad_base64_are_refused() {
        assert!(serde_json::from_str::<Record>(r#"{"key":"k","value":"v","ttl":5}"#).is_err());
        let bad: Record =
            serde_json::from_str(r#"{"key":"k","value":"not base64!","base64":true}"#).unwrap();
        assert!(bad.value_bytes().unwrap_err().contains("base64"));
    }
}
