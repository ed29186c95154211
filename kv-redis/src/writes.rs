//! Plain writes: one key (`SET … XX`, or a transaction creating and indexing it) and batches.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::try_join_all;
use kvkit_core::backend::unix_ms;
use kvkit_core::{Clock, Expiry, PutOptions, Result, SystemClock};
use redis::Cmd;

use crate::framing::frame;
use crate::layout::{ShardKeys, ValueKey};
use crate::replication::Acked;
use crate::scripts::expiry_args;
use crate::store::RedisStore;

/// Items in one batch script, so a huge batch never blocks Redis for long.
pub(crate) const BATCH_CHUNK: usize = 1000;

/// A checked write, ready to send.
pub(crate) struct Write {
    /// The value as stored (framed when it has metadata).
    pub(crate) stored: Bytes,
    pub(crate) expiry: Option<Expiry>,
}

impl Write {
    /// The expiry as a unix-ms score for the expiry index (refined by sweeps to the server's
    /// own time).
    pub(crate) fn expires_at_ms(&self, now: SystemTime) -> Option<u64> {
        self.expiry.map(|expiry| unix_ms(expiry.ends_at(now)))
    }
}

/// The `SET` of a write, with its expiry; `only_existing` adds `XX`.
pub(crate) fn set_command(value_key: ValueKey<'_>, w: &Write, only_existing: bool) -> Cmd {
    // Sized for the whole command (the expiry takes at most 24 bytes), so it never reallocates.
    let mut set = Cmd::with_capacity(6, 32 + value_key.len() + w.stored.len());
    set.arg("SET").arg(value_key).arg(&w.stored[..]);
    let (_, when) = expiry_args(w.expiry);
    match w.expiry {
        Some(Expiry::Ttl(_)) => {
            set.arg("PX").arg(when);
        }
        Some(Expiry::At(_)) => {
            set.arg("PXAT").arg(when);
        }
        None => {}
    }
    if only_existing {
        set.arg("XX");
    }
    set
}

impl RedisStore {
    /// Checks a write against the capabilities and frames its value with any metadata.
    pub(crate) fn check_write(
        &self,
        key: &str,
        value: Bytes,
        options: &PutOptions,
    ) -> Result<Write> {
        // Only an expiry needs the time.
        let now = options.expiry.map_or(UNIX_EPOCH, |_| SystemClock.now());
        let checked = self.inner.caps.check_put(key, value.len(), options, now)?;
        Ok(Write {
            stored: frame(value, checked.metadata_json.as_deref()),
            expiry: checked.expiry,
        })
    }

    /// Writes a batch: per shard, one `MULTI`/`EXEC` of the `SET`s (an `MSET` per run of writes
    /// without expiry) and the index updates.
    pub(crate) async fn write_batch(&self, writes: Vec<(Write, String)>) -> Result<()> {
        let now = SystemClock.now();
        let groups = self.by_shard(writes, |(_, key)| key);
        let mut expiring_shards = Vec::new();
        let calls = groups.iter().flat_map(|(shard, group)| {
            let keys = self.shard(*shard);
            if group.iter().any(|(_, (w, _))| w.expiry.is_some()) {
                expiring_shards.push(*shard);
            }
            group.chunks(BATCH_CHUNK).map(move |chunk| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                let mut index = redis::cmd("ZADD");
                index.arg(&keys.index);
                let mut expiring = redis::cmd("ZADD");
                expiring.arg(&keys.expiry);
                let mut any_expiring = false;
                // Each run of writes without an expiry is one `MSET` (which, as `SET`, clears any
                // TTL): one command to queue and answer instead of one per key. The order of the
                // writes is kept, so a key written twice in a batch ends as the later write.
                let mut run: Option<Cmd> = None;
                for (_, (w, key)) in chunk {
                    index.arg(0).arg(key);
                    match w.expires_at_ms(now) {
                        None => {
                            run.get_or_insert_with(|| redis::cmd("MSET"))
                                .arg(keys.value_arg(key))
                                .arg(&w.stored[..]);
                        }
                        Some(at) => {
                            if let Some(mset) = run.take() {
                                pipe.add_command(mset).ignore();
                            }
                            pipe.add_command(set_command(keys.value_arg(key), w, false))
                                .ignore();
                            expiring.arg(at).arg(key);
                            any_expiring = true;
                        }
                    }
                }
                if let Some(mset) = run {
                    pipe.add_command(mset).ignore();
                }
                pipe.add_command(index).ignore();
                if any_expiring {
                    pipe.add_command(expiring).ignore();
                }
                async move {
                    let ack = self.inner.ack;
                    self.run_write("put", self.conn().write_transaction(&pipe, ack))
                        .await
                }
            })
        });
        try_join_all(calls.collect::<Vec<_>>()).await?;
        for shard in expiring_shards {
            self.maybe_sweep(shard).await;
        }
        Ok(())
    }

    /// `SET … XX` of an expiring key, with its expiry-index score in the same round trip.
    pub(crate) async fn overwrite_expiring(
        &self,
        set: Cmd,
        keys: &ShardKeys,
        key: &str,
        at: u64,
    ) -> Result<Acked<Option<()>>> {
        let mut overwrite = redis::pipe();
        overwrite.add_command(set);
        overwrite
            .cmd("ZADD")
            .arg(&keys.expiry)
            .arg(at)
            .arg(key)
            .ignore();
        let ack = self.inner.ack;
        let ((overwritten,), replicas): Acked<(Option<()>,)> = self
            .run_acked("put", self.conn().write_pipeline(&overwrite, ack))
            .await?;
        Ok((overwritten, replicas))
    }

    /// Writes a new (or expired) key and indexes it, atomically.
    pub(crate) async fn create(
        &self,
        keys: &ShardKeys,
        key: &str,
        w: &Write,
        expires_at: Option<u64>,
    ) -> Result<()> {
        let mut create = redis::pipe();
        create.atomic();
        create
            .add_command(set_command(keys.value_arg(key), w, false))
            .ignore();
        create.cmd("ZADD").arg(&keys.index).arg(0).arg(key).ignore();
        if let Some(at) = expires_at {
            create
                .cmd("ZADD")
                .arg(&keys.expiry)
                .arg(at)
                .arg(key)
                .ignore();
        }
        let ack = self.inner.ack;
        self.run_write("put", self.conn().write_transaction(&create, ack))
            .await
    }
}
