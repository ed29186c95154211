//! The sweep that keeps expired names from piling up in the indexes.

use std::sync::atomic::Ordering;

use crate::scripts::{SWEEP, script_call};
use crate::store::RedisStore;

/// One expiring write in this many also sweeps the expiry index.
const SWEEP_EVERY: u64 = 16;
/// Entries one sweep handles at most.
const SWEEP_BATCH: usize = 32;

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
        let keys = self.shard(shard);
        let mut call = script_call(&SWEEP, 2);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(&keys.base)
            .arg(SWEEP_BATCH);
        let _ = self
            .run("sweep", self.inner.conn.eval::<i64>(&SWEEP, &call))
            .await;
    }
}
