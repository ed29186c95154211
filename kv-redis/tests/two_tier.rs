//! The two-tier store over Redis: the conformance suite, invalidation between two instances
//! sharing one Redis through `RedisInvalidator`, and a subscription that goes silent.
#![cfg(feature = "layers")]

use std::time::Duration;

use kvkit_core::{KvStore, PutOptions};
use kvkit_layers::TwoTier;
use kvkit_redis::RedisStore;
use kvkit_test_servers as servers;
use kvkit_testsuite::{Harness, Namespace};
use tokio::time::Instant;

/// Two stores on one Redis namespace, each fronted by a local tier, sharing a channel.
async fn pair(
    max_staleness: Duration,
    invalidate: bool,
) -> Option<(TwoTier<RedisStore>, TwoTier<RedisStore>)> {
    let url = servers::shared_redis_url()?;
    let ns = Namespace::new();
    let mut tiers = Vec::new();
    for _ in 0..2 {
        let builder = RedisStore::builder(url.as_str()).namespace(ns.prefix());
        let remote = builder.clone().connect().await.expect("connecting");
        let mut tier = TwoTier::new(remote).max_staleness(max_staleness);
        if invalidate {
            let channel = format!("{}invalidate", ns.prefix());
            let invalidator = builder.connect_invalidator(channel).await.expect("pub/sub");
            tier = tier.invalidator(invalidator);
        }
        tiers.push(tier);
    }
    let b = tiers.pop()?;
    let a = tiers.pop()?;
    Some((a, b))
}

mod on_redis {
    use super::*;

    async fn harness() -> Option<Harness> {
        let (a, _b) = pair(Duration::from_secs(30), true).await?;
        Some(Harness::real_time(a))
    }

    kvkit_testsuite::conformance_tests!(harness);
}

/// How long an announced write may take to reach the other instance before a test gives up: far
/// below the 60 s staleness bound the pub/sub tests use, so only an announcement gets it there,
/// and far above any scheduling delay, so no test depends on how fast the machine is.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `b` until it returns `want`, for at most `limit`.
async fn until_seen(b: &TwoTier<RedisStore>, key: &str, want: &[u8], limit: Duration) {
    let started = Instant::now();
    while b.get(key).await.unwrap().as_deref() != Some(want) {
        assert!(started.elapsed() < limit, "still stale after {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_invalidates_the_other() {
    let Some((a, b)) = pair(Duration::from_secs(60), true).await else {
        return;
    };
    // Wait until both listeners are subscribed (until then reads bypass the local tier).
    a.put("warmup", "0".into(), PutOptions::new())
        .await
        .unwrap();
    let started = Instant::now();
    while b.cached_entries() == 0 {
        b.get("warmup").await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "listener never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for round in 0..20 {
        let old = format!("v{round}");
        let new = format!("v{}", round + 1);
        a.put("hot", old.clone().into(), PutOptions::new())
            .await
            .unwrap();
        until_seen(&b, "hot", old.as_bytes(), EVENTUALLY).await;
        assert!(b.cached_entries() > 0, "b serves from its local tier");
        a.put("hot", new.clone().into(), PutOptions::new())
            .await
            .unwrap();
        // With a 60 s staleness bound, only the pub/sub invalidation makes b see this before it.
        until_seen(&b, "hot", new.as_bytes(), EVENTUALLY).await;
    }
    a.delete("hot").await.unwrap();
    let started = Instant::now();
    while b.get("hot").await.unwrap().is_some() {
        assert!(started.elapsed() < EVENTUALLY, "deleted key still served");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads `key` through `tier` until the local tier holds it (the invalidator's channel is up).
async fn until_cached(tier: &TwoTier<RedisStore>, key: &str) {
    let started = Instant::now();
    while tier.cached_entries() == 0 {
        // A read fails while the server is paused; the channel comes up after.
        tier.get(key).await.ok();
        assert!(started.elapsed() < EVENTUALLY, "the channel never came up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_stops_answering_is_declared_down_and_comes_back() {
    let Some(server) = servers::RedisServer::start(&[]) else {
        return;
    };
    let builder = RedisStore::builder(server.url().as_str());
    let invalidator = builder
        .connect_invalidator("tier:invalidate")
        .await
        .unwrap()
        .heartbeat(Duration::from_millis(100));
    let tier = TwoTier::new(builder.clone().connect().await.unwrap())
        .max_staleness(Duration::from_secs(60))
        .invalidator(invalidator);
    tier.put("k", "v".into(), PutOptions::new()).await.unwrap();
    until_cached(&tier, "k").await;
    // The server stops answering every client, without closing any connection: a half-open
    // subscription that would otherwise miss announcements without noticing.
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "3000", "ALL"][..])
        .query_async(&mut raw)
        .await
        .unwrap();
    let started = Instant::now();
    while tier.cached_entries() > 0 {
        assert!(started.elapsed() < EVENTUALLY, "the silence went unnoticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Once the server answers again, the listener resubscribes and caching resumes.
    until_cached(&tier, "k").await;
}
