//! The sweep that keeps expired names from piling up in the indexes.

use std::sync::atomic::Ordering;

use kvkit_core::backend::unix_ms;
use kvkit_core::{Clock, SystemClock};
use redis::Cmd;

use crate::layout::ShardKeys;
use crate::scripts::{SWEEP, script_call};
use crate::store::RedisStore;

/// One expiring write in this many also sweeps the expiry index.
const SWEEP_EVERY: u64 = 16;
/// Entries one sweep handles at most.
const SWEEP_BATCH: usize = 32;

/// The call of `sweep.lua` for `names`, just read from the expiry index of the shard `keys`.
pub(crate) fn sweep_call(keys: &ShardKeys, names: &[Vec<u8>]) -> Cmd {
    let mut call = script_call(&SWEEP, 2 + names.len());
    call.arg(&keys.index).arg(&keys.expiry);
    for name in names {
        call.arg(keys.value_arg(name));
    }
    for name in names {
        call.arg(&name[..]);
    }
    call
}

impl RedisStore {
    /// On one expiring write in `SWEEP_EVERY`, drops up to `SWEEP_BATCH` dead entries from the
    /// shard's indexes: twice what those writes can add, so the indexes cannot grow with
    /// expired keys.
    ///
    /// Best effort: the write it follows has succeeded, so a failed sweep is not reported (a
    /// caller would retry a write that is done); later writes and listings clean up instead.
    pub(crate) async fn maybe_sweep(&self, shard: u32) {
        if !self
            .inner
            .expiring_writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            return;
        }
        let _ = self.run("sweep", self.sweep(self.shard(shard))).await;
    }

    /// Reads the names whose expiry-index score has passed by the store's clock, then settles
    /// them in one `sweep.lua` call given their value keys: one round trip when none is due, two
    /// otherwise. A name picked early by a clock ahead of the server's is only re-scored.
    async fn sweep(&self, keys: &ShardKeys) -> redis::RedisResult<()> {
        let mut due = redis::cmd("ZRANGE");
        due.arg(&keys.expiry)
            .arg("-inf")
            .arg(unix_ms(SystemClock.now()))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH);
        let names: Vec<Vec<u8>> = self.conn().query(&due).await?;
        if names.is_empty() {
            return Ok(());
        }
        self.conn().eval(&SWEEP, &sweep_call(keys, &names)).await
    }
}
