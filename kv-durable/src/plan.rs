//! The plain-Rust parts of the store and the object: which shard holds a key, how shards' pages
//! merge into one, and the key range of a prefix. Compiled on every target so that they are
//! unit-tested natively.

use kvkit_core::backend::stable_hash;

use crate::wire::Listed;

/// The shard (`0..shards`) whose object holds the keys of `shard_key`: a stable hash, the same
/// in every Worker and every release, so a key stays where it was written.
pub(crate) fn shard_of(shard_key: &str, shards: u32) -> usize {
    // The modulo keeps the value below `shards`, a u32, so it fits a usize.
    (stable_hash(shard_key) % u64::from(shards.max(1))) as usize
}

/// The first byte string after every key that starts with `prefix`: the prefix with its last
/// byte incremented (no UTF-8 byte is above `0xf4`, so the increment never overflows). `None`
/// for the empty prefix, which every key starts with.
pub(crate) fn upper_bound(prefix: &str) -> Option<Vec<u8>> {
    let mut bound = prefix.as_bytes().to_vec();
    *bound.last_mut()? += 1;
    Some(bound)
}

/// Merges the pages the shards returned for one listing (each in key order, each saying
/// whether that shard has more) into one page of at most `limit` keys in key order, and says
/// whether more follow. Every shard was asked for `limit` keys after the same point: a key a
/// shard did not return comes after all that it did, so the first `limit` keys of the merge
/// are the first `limit` keys of the whole listing.
pub(crate) fn merge(pages: Vec<(Vec<Listed>, bool)>, limit: usize) -> (Vec<Listed>, bool) {
    let mut more = false;
    let mut keys = Vec::new();
    for (page, shard_more) in pages {
        more |= shard_more;
        keys.extend(page);
    }
    keys.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    if keys.len() > limit {
        keys.truncate(limit);
        more = true;
    }
    (keys, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(names: &[&str], more: bool) -> (Vec<Listed>, bool) {
        let keys = names
            .iter()
            .map(|name| Listed {
                name: (*name).to_owned(),
                expires_at: None,
                metadata: None,
            })
            .collect();
        (keys, more)
    }

    fn names(keys: &[Listed]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("user:1", 1), 0);
        let spread: std::collections::HashSet<usize> =
            (0..200).map(|i| shard_of(&format!("k{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "200 keys reach every one of 8 shards");
        assert!(spread.iter().all(|s| *s < 8));
        // FNV-1a of "a", pinned: moving a key to another shard would lose it.
        assert_eq!(
            shard_of("a", 1000),
            (0xaf63_dc4c_8601_ec8c_u64 % 1000) as usize
        );
        assert_eq!(shard_of("x", 0), 0);
    }

    #[test]
    fn pages_merge_in_byte_order() {
        let (keys, more) = merge(
            vec![
                page(&["b", "é"], false),
                page(&["a", "c"], false),
                page(&[], false),
            ],
            10,
        );
        assert_eq!(names(&keys), ["a", "b", "c", "é"]);
        assert!(!more);
        let (keys, more) = merge(vec![page(&["a", "c"], false), page(&["b", "d"], false)], 3);
        assert_eq!(names(&keys), ["a", "b", "c"]);
        assert!(more, "a key beyond the limit follows");
        let (keys, more) = merge(vec![page(&["a"], true), page(&[], false)], 1);
        assert_eq!(names(&keys), ["a"]);
        assert!(more, "a shard with more keys means more follow");
    }

    #[test]
    fn upper_bounds_follow_every_key_with_the_prefix() {
        assert_eq!(upper_bound(""), None);
        assert_eq!(upper_bound("user:").as_deref(), Some(&b"user;"[..]));
        let wide = upper_bound("é").unwrap();
        assert!("éa".as_bytes() < &wide[..] && "ê".as_bytes() >= &wide[..]);
        assert!("é\u{10ffff}".as_bytes() < &wide[..]);
    }
}
