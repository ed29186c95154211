//! Listing through the ordered index, one page per shard, merged across shards.

use futures_util::future::try_join_all;
use kvkit_core::{Error, KeyInfo, ListOptions, ListPage, Result, cursor};

use crate::framing::{FRAME_MAGIC, parse_metadata};
use crate::scripts::{LIST, script_call};
use crate::store::{BACKEND, RedisStore, expiration_secs};

/// The page one shard returned.
type ShardPage = (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>, i64, Vec<u8>);

impl RedisStore {
    /// One page of the listing: every shard's page, merged.
    pub(crate) async fn list_page(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.inner.caps.check_list(&options)?;
        let prefix = options.prefix.as_str();
        let start: Vec<u8> = match &options.cursor {
            Some(c) => [b"(", cursor::decode(c, prefix)?.as_bytes()].concat(),
            None if prefix.is_empty() => b"-".to_vec(),
            None => [b"[", prefix.as_bytes()].concat(),
        };
        let pages = try_join_all(
            (0..self.inner.layout.shard_count())
                .map(|shard| self.list_shard(shard, prefix, &start, limit)),
        )
        .await?;
        // Every shard covered its keys up to its last scanned name; one that stopped early
        // bounds the merged page, so nothing between its stop and the page end is skipped.
        let bound: Option<Vec<u8>> = pages
            .iter()
            .filter(|page| page.3 == 1)
            .map(|page| page.4.clone())
            .min();
        let mut merged: Vec<(Vec<u8>, i64, Vec<u8>)> = Vec::new();
        for (names, exps, metas, _, _) in pages {
            for ((name, at), meta) in names.into_iter().zip(exps).zip(metas) {
                if bound.as_ref().is_none_or(|b| name <= *b) {
                    merged.push((name, at, meta));
                }
            }
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = merged.len() > limit;
        merged.truncate(limit);
        let mut keys = Vec::with_capacity(merged.len());
        for (name, at, meta) in merged {
            let name = utf8_key(name)?;
            let metadata = parse_metadata(&name, &meta)?;
            keys.push(KeyInfo::new(name, expiration_secs(at), metadata));
        }
        let next = if truncated {
            keys.last().map(|k| k.name.clone())
        } else {
            bound.map(utf8_key).transpose()?
        };
        Ok(ListPage::new(
            keys,
            next.map(|last| cursor::encode(prefix, &last)),
        ))
    }

    async fn list_shard(
        &self,
        shard: u32,
        prefix: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<ShardPage> {
        let keys = self.shard(shard);
        let mut call = script_call(&LIST, 2);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(&keys.base)
            .arg(prefix)
            .arg(start)
            .arg(limit)
            .arg((limit * 2).max(1000))
            .arg(&FRAME_MAGIC[..]);
        self.run("list", self.inner.conn.eval(&LIST, &call)).await
    }
}

fn utf8_key(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::backend(BACKEND, "the index holds a key that is not UTF-8", false, e))
}
