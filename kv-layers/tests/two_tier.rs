//! The two-tier store: the conformance suite over memory, the staleness bound without
//! invalidation, expirations, the size bounds and the bypass while invalidations may be lost.
//! (Over Redis, with its pub/sub invalidator: `kv-redis/tests/two_tier.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvkit_core::{KvStore, ManualClock, PutOptions};
use kvkit_layers::{Invalidation, InvalidationSink, Invalidator, TwoTier};
use kvkit_memory::MemoryStore;
use kvkit_testsuite::Harness;

async fn memory_harness() -> Harness {
    Harness::real_time(TwoTier::new(MemoryStore::new()).max_staleness(Duration::from_secs(5)))
}

kvkit_testsuite::conformance_tests!(memory_harness);

#[tokio::test(start_paused = true)]
async fn without_invalidation_staleness_is_bounded() {
    let bound = Duration::from_millis(200);
    let remote = MemoryStore::new();
    let a = TwoTier::new(remote.clone()).max_staleness(bound);
    let b = TwoTier::new(remote).max_staleness(bound);
    a.put("k", "old".into(), PutOptions::new()).await.unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"old"[..]));
    a.put("k", "new".into(), PutOptions::new()).await.unwrap();
    // a reads its own write at once; b serves its copy until it is `bound` old, never longer.
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
    tokio::time::advance(bound - Duration::from_millis(1)).await;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"old"[..]));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
}

#[tokio::test]
async fn a_copy_is_never_served_past_its_keys_expiration() {
    let clock = ManualClock::new();
    let remote = MemoryStore::builder().clock(clock.clone()).build();
    let tier = TwoTier::new(remote.clone())
        .max_staleness(Duration::from_secs(3600))
        .clock(clock.clone());
    remote
        .put(
            "k",
            "v".into(),
            PutOptions::new().ttl(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(tier.get("k").await.unwrap().is_some());
    assert_eq!(tier.cached_entries(), 1);
    // Only the copy holds the key now (nothing announced the delete).
    remote.delete("k").await.unwrap();
    // Up to the last second before the reported expiration, by the tier's clock, the copy is
    // served; within it, not: the remote may round expirations up to a second.
    clock.advance(Duration::from_millis(8_999));
    assert_eq!(
        tier.get("k").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "served from the copy"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        tier.get("k").await.unwrap(),
        None,
        "the copy was not served"
    );
}

#[tokio::test]
async fn the_local_tier_is_bounded_by_entries_and_bytes() {
    let remote = MemoryStore::new();
    for i in 0..1000 {
        remote
            .put(&format!("k{i}"), vec![0u8; 1000].into(), PutOptions::new())
            .await
            .unwrap();
    }
    let tier = TwoTier::new(remote.clone()).max_entries(64);
    for i in 0..1000 {
        tier.get(&format!("k{i}")).await.unwrap();
    }
    assert!(
        tier.cached_entries() <= 64,
        "{} entries",
        tier.cached_entries()
    );
    assert!(tier.cached_entries() >= 16);
    let tier = TwoTier::new(remote).max_bytes(32 * 1024);
    for i in 0..1000 {
        tier.get(&format!("k{i}")).await.unwrap();
    }
    assert!(
        tier.cached_entries() <= 32,
        "{} entries",
        tier.cached_entries()
    );
}

/// An invalidator driven by hand.
#[derive(Debug, Default, Clone)]
struct Manual(Arc<Mutex<Option<InvalidationSink>>>);

#[async_trait::async_trait]
impl Invalidator for Manual {
    async fn publish(&self, _keys: &[String]) -> kvkit_core::Result<()> {
        Ok(())
    }
    fn subscribe(&self, sink: InvalidationSink) {
        *self.0.lock().unwrap() = Some(sink);
    }
}

#[tokio::test]
async fn while_invalidations_may_be_lost_the_local_tier_is_bypassed() {
    let remote = MemoryStore::new();
    remote
        .put("k", "v1".into(), PutOptions::new())
        .await
        .unwrap();
    let manual = Manual::default();
    let tier = TwoTier::new(remote.clone())
        .max_staleness(Duration::from_secs(60))
        .invalidator(manual.clone());
    let sink = manual.0.lock().unwrap().clone().unwrap();
    tier.get("k").await.unwrap();
    assert_eq!(
        tier.cached_entries(),
        0,
        "nothing is cached before the channel is up"
    );
    assert!(sink.deliver(Invalidation::Up));
    tier.get("k").await.unwrap();
    assert_eq!(tier.cached_entries(), 1);
    // Another instance's write, announced: dropped.
    remote
        .put("k", "v2".into(), PutOptions::new())
        .await
        .unwrap();
    assert!(sink.deliver(Invalidation::Keys(vec!["k".into()])));
    assert_eq!(tier.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    // The channel goes down: everything cached is dropped and reads go to the remote.
    assert!(sink.deliver(Invalidation::Down));
    assert_eq!(tier.cached_entries(), 0);
    remote
        .put("k", "v3".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(tier.get("k").await.unwrap().as_deref(), Some(&b"v3"[..]));
    assert_eq!(tier.cached_entries(), 0);
    drop(tier);
    assert!(
        !sink.deliver(Invalidation::Up),
        "a dropped tier stops listening"
    );
}

/// A remote whose reads, once armed, pause after reading until released, so a write can land
/// while a read is in flight.
#[derive(Debug, Default)]
struct Gated {
    inner: MemoryStore,
    armed: std::sync::atomic::AtomicBool,
    read: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl KvStore for Gated {
    fn capabilities(&self) -> &kvkit_core::Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &str) -> kvkit_core::Result<Option<bytes::Bytes>> {
        self.inner.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> kvkit_core::Result<Option<kvkit_core::Entry>> {
        let entry = self.inner.get_with_metadata(key).await;
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.read.notify_one();
            self.release.notified().await;
        }
        entry
    }
    async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        options: PutOptions,
    ) -> kvkit_core::Result<()> {
        self.inner.put(key, value, options).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        value: bytes::Bytes,
        options: PutOptions,
    ) -> kvkit_core::Result<bool> {
        self.inner.put_if_absent(key, value, options).await
    }
    async fn delete(&self, key: &str) -> kvkit_core::Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_if_version(
        &self,
        key: &str,
        version: &kvkit_core::Version,
    ) -> kvkit_core::Result<()> {
        self.inner.delete_if_version(key, version).await
    }
    async fn list(
        &self,
        options: kvkit_core::ListOptions,
    ) -> kvkit_core::Result<kvkit_core::ListPage> {
        self.inner.list(options).await
    }
    async fn get_many(&self, keys: &[String]) -> kvkit_core::Result<Vec<Option<bytes::Bytes>>> {
        self.inner.get_many(keys).await
    }
    async fn put_many(&self, items: Vec<kvkit_core::PutItem>) -> kvkit_core::Result<()> {
        self.inner.put_many(items).await
    }
    async fn delete_many(&self, keys: &[String]) -> kvkit_core::Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn increment(
        &self,
        key: &str,
        delta: i64,
        options: kvkit_core::CounterOptions,
    ) -> kvkit_core::Result<i64> {
        self.inner.increment(key, delta, options).await
    }

    fn increment_now(
        &self,
        _: &str,
        _: i64,
        _: kvkit_core::CounterOptions,
    ) -> Option<kvkit_core::Result<i64>> {
        None
    }
}

/// A read that fetched the old value before a write on the same instance finished must not
/// cache it: the instance reads its own write (a regression test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_a_write_does_not_cache_the_old_value() {
    let remote = Gated::default();
    remote
        .put("k", "old".into(), PutOptions::new())
        .await
        .unwrap();
    let tier = Arc::new(TwoTier::new(remote).max_staleness(Duration::from_secs(60)));
    tier.remote()
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reader = {
        let tier = tier.clone();
        tokio::spawn(async move { tier.get("k").await.unwrap() })
    };
    tier.remote().read.notified().await;
    tier.put("k", "new".into(), PutOptions::new())
        .await
        .unwrap();
    tier.remote().release.notify_one();
    assert_eq!(reader.await.unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(tier.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
}
