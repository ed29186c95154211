//! Where keys live: the namespace, the shards' hash tags and the Redis key names of a shard.

/// Where keys live: the namespace, and on a cluster the shard hash tags.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) namespace: String,
    /// Number of hash-tagged shards on a cluster; `None` on a single server.
    pub(crate) shards: Option<u32>,
}

impl Layout {
    pub(crate) fn shard_count(&self) -> u32 {
        self.shards.unwrap_or(1)
    }

    pub(crate) fn shard_of(&self, key: &str) -> u32 {
        match self.shards {
            None => 0,
            Some(n) => {
                let hash = kvkit_core::backend::stable_hash(key);
                // The modulo keeps the value below n, a u32.
                (hash % u64::from(n)) as u32
            }
        }
    }

    fn base(&self, shard: u32) -> String {
        match self.shards {
            None => self.namespace.clone(),
            Some(_) => format!(
                "{{{:016x}:{shard:02}}}{}",
                kvkit_core::backend::stable_hash(&self.namespace),
                self.namespace
            ),
        }
    }
}

/// Keys of one shard.
pub(crate) struct ShardKeys {
    base: String,
    pub(crate) index: String,
    pub(crate) expiry: String,
}

impl ShardKeys {
    pub(crate) fn new(layout: &Layout, shard: u32) -> Self {
        let base = layout.base(shard);
        Self {
            index: format!("{base}i"),
            expiry: format!("{base}x"),
            base,
        }
    }

    pub(crate) fn value(&self, key: &str) -> String {
        format!("{}v:{key}", self.base)
    }

    /// The value key as a command argument, written straight into the command's buffer.
    pub(crate) fn value_arg<'a, K>(&'a self, key: &'a K) -> ValueKey<'a>
    where
        K: AsRef<[u8]> + ?Sized,
    {
        ValueKey {
            base: &self.base,
            key: key.as_ref(),
        }
    }
}

/// A value key written as one command argument without an intermediate `String`.
pub(crate) struct ValueKey<'a> {
    base: &'a str,
    key: &'a [u8],
}

impl ValueKey<'_> {
    pub(crate) fn len(&self) -> usize {
        self.base.len() + 2 + self.key.len()
    }
}

impl redis::ToRedisArgs for ValueKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg
            .write_all(self.base.as_bytes())
            .and_then(|()| arg.write_all(b"v:"))
            .and_then(|()| arg.write_all(self.key));
    }
}

impl redis::ToSingleRedisArg for ValueKey<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: between the first `{` and the next `}` when
    /// that is not empty, else the whole key.
    fn hashed_part(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{')
            && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn every_key_of_a_cluster_shard_hashes_to_its_shard_tag() {
        for namespace in ["kv:", "}x:app", "{y}:app", "a}b{c", "}", "{}"] {
            let layout = Layout {
                namespace: namespace.to_owned(),
                shards: Some(16),
            };
            for shard in 0..16 {
                let keys = ShardKeys::new(&layout, shard);
                let tag = format!(
                    "{:016x}:{shard:02}",
                    kvkit_core::backend::stable_hash(namespace)
                );
                for key in [
                    &keys.index,
                    &keys.expiry,
                    &keys.value("k"),
                    &keys.value("{z}"),
                ] {
                    assert_eq!(hashed_part(key.as_bytes()), tag.as_bytes(), "{key}");
                }
            }
        }
    }
}
