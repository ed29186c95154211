//! Counters: the short routine for an existing counter, the script that creates one, and the
//! compare-and-set path for counters framed with metadata.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use kvkit_core::{CounterOptions, Error, Expiry, KvStore, Result};
use redis::{Cmd, RedisError};

use crate::errors::{redis_error, within};
use crate::framing::{frame, unframe};
use crate::layout::ShardKeys;
use crate::replication::Acked;
use crate::scripts::{INCR, INCR_EXISTING, SWAP, expiry_args, refuses_functions, script_call};
use crate::store::RedisStore;

/// The call of the short routine (`incr_existing.lua`) for the counter `key`, as a function or,
/// without `function`, as a script.
pub(crate) fn existing_counter_call(
    keys: &ShardKeys,
    key: &str,
    delta: i64,
    function: bool,
) -> Cmd {
    let mut call = INCR_EXISTING.call(1, function);
    call.arg(keys.value_arg(key));
    // Every argument costs Redis time, so the usual delta of 1 goes without one.
    if delta != 1 {
        call.arg(delta);
    }
    call
}

/// The call of `incr.lua`, which creates the counter `key` with its expiry and index entries, or
/// adds to one created meanwhile: the index keys and the value key, then the name, the delta and
/// the expiry.
pub(crate) fn create_counter_call(
    keys: &ShardKeys,
    key: &str,
    delta: i64,
    expiry: Option<Expiry>,
) -> Cmd {
    let (mode, when) = expiry_args(expiry);
    let mut call = script_call(&INCR, 3);
    call.arg(&keys.index)
        .arg(&keys.expiry)
        .arg(keys.value_arg(key))
        .arg(key)
        .arg(delta)
        .arg(mode)
        .arg(when);
    call
}

/// The call of `swap.lua`: replaces the stored bytes of `value_key` if they are still `expected`.
pub(crate) fn swap_call(value_key: &str, expected: &[u8], replacement: &[u8]) -> Cmd {
    let mut call = script_call(&SWAP, 1);
    call.arg(value_key).arg(expected).arg(replacement);
    call
}

impl RedisStore {
    /// Adds `delta` to a counter whose value is framed with metadata (which `INCRBY` refuses),
    /// by compare-and-set, keeping the metadata and the TTL.
    async fn increment_framed(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
    ) -> Result<i64> {
        let keys = self.keys_of(key);
        let value_key = keys.value(key);
        loop {
            let mut get = redis::cmd("GET");
            get.arg(&value_key);
            let Some(stored) = self
                .run::<Option<Bytes>>("increment", self.conn().query(&get))
                .await?
            else {
                // Deleted meanwhile: an ordinary increment creates it.
                return Box::pin(self.increment(key, delta, options)).await;
            };
            let (value, meta) = unframe(stored.clone());
            let next = kvkit_core::backend::add_to_counter(key, &value, delta)?;
            let meta = (!meta.is_empty()).then(|| String::from_utf8_lossy(&meta).into_owned());
            let replacement = frame(Bytes::from(next.to_string()), meta.as_deref());
            let call = swap_call(&value_key, &stored, &replacement);
            let ack = self.inner.ack;
            let (swapped, replicas): Acked<i64> = self
                .run_acked("increment", self.conn().eval_write(&SWAP, &call, ack))
                .await?;
            if swapped == 1 {
                return self.confirm("increment", replicas).map(|()| next);
            }
        }
    }

    /// The common path of an increment: adds `delta` to the counter if it exists, else changes
    /// nothing and returns `None`.
    pub(crate) async fn add_to_existing(
        &self,
        key: &str,
        delta: i64,
    ) -> redis::RedisResult<Acked<Option<i64>>> {
        let call = |function| existing_counter_call(self.keys_of(key), key, delta, function);
        let (conn, ack) = (self.conn(), self.inner.ack);
        let functions = self.inner.functions.load(Ordering::Relaxed);
        match conn
            .routine_write(&INCR_EXISTING, functions, &call(functions), ack)
            .await
        {
            Err(e) if functions && refuses_functions(&e) => {
                self.inner.functions.store(false, Ordering::Relaxed);
                Box::pin(conn.routine_write(&INCR_EXISTING, false, &call(false), ack)).await
            }
            result => result,
        }
    }

    /// Adds `delta` to a counter the fast path found absent: the creating script gives a
    /// counter it creates the expiry and its index entries, atomically, and simply increments
    /// one created meanwhile.
    pub(crate) async fn increment_absent(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
        expiry: Option<Expiry>,
    ) -> Result<i64> {
        let call = create_counter_call(self.keys_of(key), key, delta, expiry);
        let result = self.conn().eval_write::<i64>(&INCR, &call, self.inner.ack);
        match within("increment", self.write_timeout(), result).await? {
            Ok((n, replicas)) => {
                self.confirm("increment", replicas)?;
                if n == delta && expiry.is_some() {
                    self.maybe_sweep(self.inner.layout.shard_of(key)).await;
                }
                Ok(n)
            }
            Err(e) => self.counter_error(key, delta, options, e).await,
        }
    }

    /// Maps a Redis error of an increment; a framed value (a counter with metadata, which
    /// `INCRBY` refuses) takes the compare-and-set path instead.
    pub(crate) async fn counter_error(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
        e: RedisError,
    ) -> Result<i64> {
        if e.to_string().contains("not an integer") {
            return self.increment_framed(key, delta, options).await;
        }
        if e.to_string().contains("overflow") {
            return Err(Error::CounterOverflow {
                key: kvkit_core::RedactedKey::new(key),
                delta,
            });
        }
        Err(redis_error("increment", e))
    }
}
