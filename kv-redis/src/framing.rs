//! The stored form of a value: as it is, or framed with its metadata, and the size limits that
//! keep a framed value within one Redis argument.

use bytes::Bytes;
use kvkit_core::{Capabilities, Error, Result};

use crate::store::BACKEND;

/// Marks a framed value: metadata length, metadata JSON, then the value.
pub(crate) const FRAME_MAGIC: [u8; 4] = [0xff, b'K', b'V', 0x01];

/// The largest argument Redis accepts (`proto-max-bulk-len`, 512 MB by default).
const MAX_BULK_BYTES: usize = 512 * 1024 * 1024;
/// The frame's header: the magic and the metadata length.
const FRAME_HEADER_BYTES: usize = FRAME_MAGIC.len() + 4;

/// What this backend allows: a value is limited so that, framed with the largest metadata, it
/// still fits one Redis argument. An oversized write is then refused before any I/O, instead of
/// the server dropping the connection that every call in flight shares.
pub(crate) fn capabilities() -> Capabilities {
    let caps = Capabilities::new(BACKEND);
    let max_value = MAX_BULK_BYTES - FRAME_HEADER_BYTES - caps.max_metadata_bytes;
    caps.with_max_value_bytes(max_value)
}

/// The stored form of a value: as it is, or framed with its metadata.
pub(crate) fn frame(value: Bytes, metadata_json: Option<&str>) -> Bytes {
    match metadata_json {
        None if !value.starts_with(&FRAME_MAGIC) => value,
        _ => {
            let meta = metadata_json.unwrap_or_default().as_bytes();
            // Metadata is validated against max_metadata_bytes (far below 4 GiB) before this.
            let len = u32::try_from(meta.len()).unwrap_or(u32::MAX);
            let mut framed = Vec::with_capacity(8 + meta.len() + value.len());
            framed.extend_from_slice(&FRAME_MAGIC);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(meta);
            framed.extend_from_slice(&value);
            Bytes::from(framed)
        }
    }
}

/// Splits a stored value into the value and its metadata JSON (empty when none).
pub(crate) fn unframe(stored: Bytes) -> (Bytes, Bytes) {
    if stored.len() >= 8 && stored.starts_with(&FRAME_MAGIC) {
        let len = u32::from_be_bytes([stored[4], stored[5], stored[6], stored[7]]);
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(8))
            .filter(|&end| end <= stored.len());
        if let Some(end) = end {
            return (stored.slice(end..), stored.slice(8..end));
        }
    }
    (stored, Bytes::new())
}

pub(crate) fn parse_metadata(key: &str, json: &[u8]) -> Result<Option<serde_json::Value>> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(json)
        .map(Some)
        .map_err(|e| Error::decode(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_value_with_the_largest_metadata_fits_one_redis_argument() {
        let caps = capabilities();
        let metadata = "x".repeat(caps.max_metadata_bytes);
        let framed = FRAME_HEADER_BYTES + metadata.len() + caps.max_value_bytes;
        assert_eq!(framed, MAX_BULK_BYTES);
        let small = frame(Bytes::from_static(b"v"), Some(&metadata));
        assert_eq!(small.len(), FRAME_HEADER_BYTES + metadata.len() + 1);
    }
}
