//! Listing through the ordered index, one page per shard, merged across shards.
//!
//! Each shard's page takes two round trips: the client reads the next names from the shard's
//! index (`ZRANGE … BYLEX`), then one call of `list.lua`, given every name's value key, reads
//! their expiries and metadata and drops the names of keys that are gone. A script may only touch
//! the keys it is given, so it cannot read the index and then the values itself. Both steps
//! repeat only when names were dropped and the page is not full yet.

use futures_util::future::try_join_all;
use kvkit_core::backend::cursor;
use kvkit_core::{Error, KeyInfo, ListOptions, ListPage, Result};
use redis::Cmd;

use crate::framing::{FRAME_MAGIC, parse_metadata};
use crate::layout::ShardKeys;
use crate::scripts::{LIST, script_call};
use crate::store::{BACKEND, RedisStore, expiration_of};

/// What `list.lua` answers for a name whose key has expired or vanished, and which it has
/// dropped from the indexes.
const GONE: i64 = -2;

/// The names one shard's listing found, and where it stopped.
struct ShardPage {
    /// Each live name with its expiry (`PEXPIRETIME`) and metadata JSON (empty for none).
    entries: Vec<(Vec<u8>, i64, Vec<u8>)>,
    /// Whether the shard stopped before its last name under the prefix (the page was full, or
    /// the scan cap was reached): its keys are then covered only up to `last`.
    more: bool,
    /// The last name scanned.
    last: Vec<u8>,
}

/// How many index names one shard's listing looks at, at most: enough to skip a run of dead
/// names, few enough that a listing never blocks Redis for long.
fn scan_cap(limit: usize) -> usize {
    (limit * 2).max(1000)
}

/// The call of `list.lua` for `names`, just read in order from the index of the shard `keys`.
pub(crate) fn list_call(keys: &ShardKeys, names: &[Vec<u8>]) -> Cmd {
    let mut call = script_call(&LIST, 2 + names.len());
    call.arg(&keys.index).arg(&keys.expiry);
    for name in names {
        call.arg(keys.value_arg(name));
    }
    call.arg(&FRAME_MAGIC[..]);
    for name in names {
        call.arg(&name[..]);
    }
    call
}

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
        let pages = try_join_all((0..self.inner.layout.shard_count()).map(|shard| {
            let scan = self.scan_shard(self.shard(shard), prefix.as_bytes(), &start, limit);
            self.run("list", scan)
        }))
        .await?;
        // Every shard covered its keys up to its last scanned name; one that stopped early
        // bounds the merged page, so nothing between its stop and the page end is skipped.
        let bound: Option<Vec<u8>> = pages
            .iter()
            .filter(|page| page.more)
            .map(|page| page.last.clone())
            .min();
        let mut merged: Vec<(Vec<u8>, i64, Vec<u8>)> = Vec::new();
        for page in pages {
            for (name, at, meta) in page.entries {
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
            keys.push(KeyInfo::new(name, expiration_of(at), metadata));
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

    /// One shard's page: up to `limit` live names under `prefix` from `start` (a `BYLEX` bound:
    /// `-`, `[prefix` or `(after`), in byte order, looking at no more than the scan cap's names
    /// and dropping those of keys that are gone.
    async fn scan_shard(
        &self,
        keys: &ShardKeys,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> redis::RedisResult<ShardPage> {
        let cap = scan_cap(limit);
        let mut page = ShardPage {
            entries: Vec::new(),
            more: false,
            last: Vec::new(),
        };
        let mut scanned = 0;
        let mut start = start.to_vec();
        loop {
            let room = (limit - page.entries.len()).min(cap - scanned);
            // One name more than this round looks at tells whether the shard has more.
            let mut range = redis::cmd("ZRANGE");
            range
                .arg(&keys.index)
                .arg(&start)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(room + 1);
            let mut names: Vec<Vec<u8>> = self.conn().query(&range).await?;
            let under_prefix = names.iter().take_while(|n| n.starts_with(prefix)).count();
            names.truncate(under_prefix);
            let further = names.len() > room;
            names.truncate(room);
            let Some(last) = names.last().cloned() else {
                return Ok(page);
            };
            let (exps, metas): (Vec<i64>, Vec<Vec<u8>>) =
                self.conn().eval(&LIST, &list_call(keys, &names)).await?;
            scanned += names.len();
            for ((name, at), meta) in names.into_iter().zip(exps).zip(metas) {
                if at != GONE {
                    page.entries.push((name, at, meta));
                }
            }
            page.last = last;
            if !further {
                return Ok(page);
            }
            if page.entries.len() == limit || scanned == cap {
                page.more = true;
                return Ok(page);
            }
            start = [b"(", &page.last[..]].concat();
        }
    }
}

fn utf8_key(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::backend(BACKEND, "the index holds a key that is not UTF-8", false, e))
}
