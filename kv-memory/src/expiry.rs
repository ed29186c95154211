//! The expiry queue: every entry with an expiry, filed under the second it expires in, so that
//! the reaper finds the due ones without scanning the store, and taken out again when the entry
//! is deleted or rewritten, so that the queue never holds more than the keys alive.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kvkit_core::backend::stable_hash;

/// The keys whose entries expire within one second.
pub(crate) type Bucket = HashSet<Arc<str>, foldhash::quality::RandomState>;

/// A bucket shrinks once less than a quarter full, to half full: it stays within four times
/// what it holds, and between two resizes come as many changes as it holds keys, so no sequence
/// of writes rehashes it over and over.
const SHRINK_BELOW: usize = 4;

/// The second-long bucket an expiry time belongs to: every entry in bucket `b` expires after
/// `(b - 1) * 1000` ms and at or before `b * 1000` ms.
pub(crate) fn bucket_of(expires_at_ms: u64) -> u64 {
    expires_at_ms.div_ceil(1000)
}

/// The bucket an entry expiring at `expires_at_ms` (0 for never) is queued in.
fn queued_in(expires_at_ms: u64) -> Option<u64> {
    (expires_at_ms != 0).then(|| bucket_of(expires_at_ms))
}

/// Buckets by second, in shards by key. Each key is queued under the same `Arc` the map holds
/// it by, so that the queue can tell an entry from one of a later key of the same name.
pub(crate) struct ExpiryQueue {
    shards: Box<[Mutex<BTreeMap<u64, Bucket>>]>,
}

impl ExpiryQueue {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(BTreeMap::new()))
                .collect(),
        }
    }

    fn shard_of(&self, key: &str) -> MutexGuard<'_, BTreeMap<u64, Bucket>> {
        // The modulo keeps the index below the number of shards, so the cast cannot truncate.
        let shard = (stable_hash(key) % self.shards.len() as u64) as usize;
        lock(&self.shards[shard])
    }

    /// Moves `key`, whose entry now expires at `new` instead of `old` (0 for never), to the
    /// bucket of `new`. Writers call it holding the key's map entry, so that entry and queue
    /// change together.
    pub(crate) fn reschedule(&self, key: &Arc<str>, old: u64, new: u64) {
        let (from, to) = (queued_in(old), queued_in(new));
        if from == to {
            return;
        }
        let mut queue = self.shard_of(key);
        if let Some(bucket) = from {
            take_out(&mut queue, key, bucket);
        }
        if let Some(bucket) = to {
            // `replace`, not `insert`: an entry of a deleted key of the same name, which its
            // delete has not taken out yet, becomes this key's, and the delete then leaves it.
            queue.entry(bucket).or_default().replace(Arc::clone(key));
        }
    }

    /// Takes out the entry of `key`, which left the map expiring at `expires_at_ms`, unless a
    /// later key of the same name has taken it over.
    pub(crate) fn remove(&self, key: &Arc<str>, expires_at_ms: u64) {
        if let Some(bucket) = queued_in(expires_at_ms) {
            take_out(&mut self.shard_of(key), key, bucket);
        }
    }

    /// Takes every bucket due at `now_ms` out of the queue, one shard at a time as the
    /// iterator goes.
    pub(crate) fn take_due(&self, now_ms: u64) -> impl Iterator<Item = (u64, Bucket)> + '_ {
        self.shards.iter().flat_map(move |shard| {
            let mut queue = lock(shard);
            let later = queue.split_off(&(now_ms / 1000 + 1));
            std::mem::replace(&mut *queue, later)
        })
    }

    /// How many keys are queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let queued = |shard: &Mutex<BTreeMap<u64, Bucket>>| {
            lock(shard).values().map(HashSet::len).sum::<usize>()
        };
        self.shards.iter().map(queued).sum()
    }
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes `key` (this very `Arc`, not another of the same name) from `bucket`, dropping the
/// bucket once empty and shrinking it once mostly empty.
fn take_out(queue: &mut BTreeMap<u64, Bucket>, key: &Arc<str>, bucket: u64) {
    let Some(keys) = queue.get_mut(&bucket) else {
        return;
    };
    if !keys
        .get(&**key)
        .is_some_and(|queued| Arc::ptr_eq(queued, key))
    {
        return;
    }
    keys.remove(&**key);
    if keys.is_empty() {
        queue.remove(&bucket);
    } else if keys.len() * SHRINK_BELOW < keys.capacity() {
        keys.shrink_to(keys.len() * 2);
    }
}
