//! Keys as the ordered index holds them: the first 16 bytes inline, so that most comparisons
//! while searching a node stay inside the node instead of following a pointer per key.

use std::cmp::Ordering;
use std::sync::Arc;

/// A key in the ordered index; ordered exactly as its UTF-8 bytes.
#[derive(Debug, Clone)]
pub(crate) struct IndexKey {
    /// The first 16 bytes of the key, big-endian, zero-padded.
    head: u128,
    key: Arc<str>,
}

impl IndexKey {
    pub(crate) fn new(key: Arc<str>) -> Self {
        let mut head = [0u8; 16];
        let bytes = key.as_bytes();
        let n = bytes.len().min(16);
        head[..n].copy_from_slice(&bytes[..n]);
        Self {
            head: u128::from_be_bytes(head),
            key,
        }
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Heads that differ differ at a real byte, or where one key has ended (a zero pad
        // against a non-zero byte, which orders the shorter key first, as bytes do). Equal
        // heads fall back to the whole keys.
        self.head
            .cmp(&other.head)
            .then_with(|| self.key.as_bytes().cmp(other.key.as_bytes()))
    }
}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.key == other.key
    }
}

impl Eq for IndexKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_exactly_as_bytes() {
        let keys = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0\0",
            "a\u{1}",
            "ab",
            "abcdefghijklmnop",
            "abcdefghijklmnop\0",
            "abcdefghijklmnopq",
            "abcdefghijklmnoq",
            "b",
            "é",
            "中",
            "😀",
            "\u{7f}",
        ];
        for a in keys {
            for b in keys {
                let ia = IndexKey::new(Arc::from(a));
                let ib = IndexKey::new(Arc::from(b));
                assert_eq!(
                    ia.cmp(&ib),
                    a.as_bytes().cmp(b.as_bytes()),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(ia == ib, a == b);
            }
        }
    }
}
