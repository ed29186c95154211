//! Key cursors for backends that continue a listing after the last key of the previous page: the
//! key, hex-encoded behind a checksum of the key and of the prefix the listing was for, so that a
//! cursor the store did not issue, or issued for another prefix (even one that contains its key,
//! such as `""` for a cursor of `"user:"`), is refused with [`Error::InvalidCursor`] instead of
//! silently listing from a wrong place.

use crate::error::{Error, Result};

/// 32-bit FNV-1a of the prefix, a separator no UTF-8 text holds, and the key: enough to tell our
/// cursors from arbitrary strings and a cursor of one prefix from a cursor of another.
fn checksum(prefix: &str, key: &[u8]) -> u32 {
    prefix
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(key)
        .fold(0x811c_9dc5_u32, |hash, &b| {
            (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The cursor that continues a listing of `prefix` after `last_key`.
///
/// ```
/// let cursor = kvkit_core::backend::cursor::encode("user:", "user:42");
/// assert_eq!(kvkit_core::backend::cursor::decode(&cursor, "user:").unwrap(), "user:42");
/// ```
pub fn encode(prefix: &str, last_key: &str) -> String {
    let mut out = format!("{:08x}", checksum(prefix, last_key.as_bytes()));
    out.reserve(last_key.len() * 2);
    for &b in last_key.as_bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The last key of the page `cursor` was issued for, if it was issued for a listing of exactly
/// `prefix`.
///
/// ```
/// use kvkit_core::Error;
/// use kvkit_core::backend::cursor;
/// assert!(matches!(cursor::decode("made-up", ""), Err(Error::InvalidCursor { .. })));
/// let issued = cursor::encode("user:", "user:42");
/// assert_eq!(cursor::decode(&issued, "user:").unwrap(), "user:42");
/// // Another prefix, even one that the key starts with, is refused.
/// for other in ["order:", "user", ""] {
///     assert!(matches!(cursor::decode(&issued, other), Err(Error::InvalidCursor { .. })));
/// }
/// ```
pub fn decode(cursor: &str, prefix: &str) -> Result<String> {
    let invalid = || Error::InvalidCursor {
        cursor: crate::error::RedactedKey::new(cursor),
    };
    let bytes = cursor.as_bytes();
    if bytes.len() < 8 || !bytes.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let (sum, body) = bytes.split_at(8);
    let key: Vec<u8> = body
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let expected = format!("{:08x}", checksum(prefix, &key));
    if expected.as_bytes() != sum {
        return Err(invalid());
    }
    let key = String::from_utf8(key).map_err(|_| invalid())?;
    if key.is_empty() || !key.starts_with(prefix) {
        return Err(invalid());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_key() {
        for key in ["a", "user:ü/€", "\u{0}\u{1f}", "x".repeat(600).as_str()] {
            assert_eq!(decode(&encode("", key), "").unwrap(), key);
            assert_eq!(decode(&encode(&key[..1], key), &key[..1]).unwrap(), key);
        }
    }

    #[test]
    fn refuses_foreign_or_tampered_cursors() {
        let good = encode("user:", "user:1");
        for bad in [
            "",
            "abc",
            "zzzzzzzz",
            "0000000061",
            &good[..good.len() - 1],
            &format!("{}00", &good),
            &good.to_uppercase(),
        ] {
            assert!(
                matches!(decode(bad, "user:"), Err(Error::InvalidCursor { .. })),
                "{bad:?}"
            );
        }
        for other in ["order:", "user", "user:1", "u", ""] {
            assert!(
                matches!(decode(&good, other), Err(Error::InvalidCursor { .. })),
                "{other:?}"
            );
        }
    }
}
