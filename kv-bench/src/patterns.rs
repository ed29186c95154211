//! The patterns against what they are built on: cache hits against plain JSON gets on memory,
//! rate-limit checks on memory against governor's keyed limiter and on Redis against a raw
//! `redis` INCR + EXPIRE pipeline, and the exactness numbers (admitted ÷ limit under a
//! concurrent burst, fetches for a burst of misses).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use kvkit_core::{KvStore, KvStoreExt, PutOptions};
use kvkit_memory::MemoryStore;
use kvkit_patterns::{Cache, CacheOptions, RateLimiter};
use kvkit_redis::RedisStore;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::line;
use crate::redis::throughput;

const ROUNDS: usize = 7;
/// Distinct keys the throughput loops cycle through (the `throughput` helper's key space).
const KEYS: usize = 10_000;
/// Operations per task in one measured round on memory.
const OPS_PER_TASK: usize = 300_000;
/// Identifiers the in-process limiters are checked with.
const IDENTIFIERS: usize = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
    tags: Vec<String>,
}

fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("Widget {id}"),
        price_cents: 1999,
        tags: vec!["hardware".into(), "sale".into()],
    }
}

pub(crate) async fn run() {
    ratelimit_exact("ratelimit_exact_memory", Arc::new(MemoryStore::new())).await;
    cache_single_flight().await;
    cache_hit_ratio().await;
    ratelimit_memory_vs_governor().await;

    let (_server, url) = crate::redis_for_bench();
    let store = RedisStore::builder(url.as_str())
        .namespace("bench:")
        .connect()
        .await
        .expect("connecting the store");
    ratelimit_exact("ratelimit_exact_redis", Arc::new(store.clone())).await;
    ratelimit_redis_ratio(store, &url).await;
}

/// 1000 concurrent checks at limit 100: admitted ÷ limit.
async fn ratelimit_exact<S: KvStore>(name: &str, store: Arc<S>) {
    let limiter = Arc::new(RateLimiter::fixed_window(
        store,
        100,
        Duration::from_secs(60),
    ));
    let tasks = (0..1000).map(|_| {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.check("burst").await.expect("check").allowed })
    });
    let admitted = join_all(tasks)
        .await
        .into_iter()
        .filter(|allowed| *allowed.as_ref().expect("task"))
        .count();
    line(name, format!("{:.2}", admitted as f64 / 100.0));
}

/// 1000 concurrent misses of one key: how many times the fetcher ran.
async fn cache_single_flight() {
    let cache = Cache::new(MemoryStore::new());
    let fetches = Arc::new(AtomicUsize::new(0));
    let tasks = (0..1000).map(|_| {
        let (cache, fetches) = (cache.clone(), Arc::clone(&fetches));
        tokio::spawn(async move {
            let options = CacheOptions::new(Duration::from_secs(300));
            cache
                .cached("product:1", &options, move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(product(1))
                })
                .await
                .expect("cached")
                .id
        })
    });
    for id in join_all(tasks).await {
        assert_eq!(id.expect("task"), 1);
    }
    line(
        "cache_single_flight_fetches",
        fetches.load(Ordering::SeqCst),
    );
}

/// Fresh cache hits per second ÷ plain `get_json` of the same product per second, on memory.
async fn cache_hit_ratio() {
    let store = Arc::new(MemoryStore::new());
    let cache = Cache::new(Arc::clone(&store));
    let options = CacheOptions::new(Duration::from_secs(3600));
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("product:{i}")).collect());
    let plain_keys: Arc<Vec<String>> =
        Arc::new(keys.iter().map(|k| format!("plain:{k}")).collect());
    for (i, (key, plain)) in keys.iter().zip(plain_keys.iter()).enumerate() {
        let p = product(i as u64);
        store
            .put_json(plain, &p, PutOptions::new())
            .await
            .expect("put");
        cache
            .cached(
                key,
                &options,
                move || async move { Ok::<_, std::io::Error>(p) },
            )
            .await
            .expect("prime");
    }
    let hits = || {
        counted(2, {
            let (cache, keys, options) = (cache.clone(), Arc::clone(&keys), options.clone());
            move |_, i| {
                let (cache, keys, options) = (cache.clone(), Arc::clone(&keys), options.clone());
                async move {
                    let p: Product = cache
                        .cached(&keys[i], &options, || async {
                            Err::<Product, _>(std::io::Error::other("the cache was primed"))
                        })
                        .await
                        .expect("hit");
                    std::hint::black_box(p);
                }
            }
        })
    };
    let gets = || {
        counted(2, {
            let (store, keys) = (Arc::clone(&store), Arc::clone(&plain_keys));
            move |_, i| {
                let (store, keys) = (Arc::clone(&store), Arc::clone(&keys));
                async move {
                    let p: Option<Product> = store.get_json(&keys[i]).await.expect("get");
                    std::hint::black_box(p.expect("present"));
                }
            }
        })
    };
    let (ours, theirs, ratio) = crate::alternate(ROUNDS, hits, gets).await;
    line("cache_hits_per_sec", format!("{ours:.0}"));
    line("get_json_per_sec", format!("{theirs:.0}"));
    line("cache_hit_ratio_vs_get_json", format!("{ratio:.2}"));
}

/// Admitting checks per second on the memory store ÷ governor's keyed limiter (its default
/// `DashMap` state) per second: the same 100,000 identifiers in the same order, 2 tasks, one
/// process, rounds alternating which goes first.
async fn ratelimit_memory_vs_governor() {
    let ids: Arc<Vec<String>> = Arc::new((0..IDENTIFIERS).map(|i| format!("client:{i}")).collect());
    let order: Arc<Vec<Vec<u32>>> = Arc::new(
        (0..2u32)
            .map(|t| {
                (0..OPS_PER_TASK as u32)
                    .map(|n| (t * 7919 + n) % IDENTIFIERS as u32)
                    .collect()
            })
            .collect(),
    );
    let ours = Arc::new(RateLimiter::fixed_window(
        MemoryStore::new(),
        u64::MAX,
        Duration::from_secs(60),
    ));
    let theirs = Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::MAX,
    )));
    let checks = || async {
        throughput!(order, (Arc::clone(&ours), Arc::clone(&ids)), |s, i| {
            assert!(s.0.check(&s.1[i]).await.expect("check").allowed)
        })
    };
    let governed = || async {
        throughput!(order, (Arc::clone(&theirs), Arc::clone(&ids)), |s, i| {
            assert!(s.0.check_key(&s.1[i]).is_ok())
        })
    };
    let (ours, theirs, ratio) = crate::alternate(ROUNDS, checks, governed).await;
    line("ratelimit_memory_checks_per_sec", format!("{ours:.0}"));
    line("governor_keyed_checks_per_sec", format!("{theirs:.0}"));
    line("ratelimit_memory_ratio_vs_governor", format!("{ratio:.2}"));
}

/// Runs `op(task, i)` `OPS_PER_TASK` times from each of `tasks` tasks; returns ops/s. (A
/// memory operation never yields, so a timed loop could not be stopped from outside.)
async fn counted<F, Fut>(tasks: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for n in 0..OPS_PER_TASK {
                    op(t, (t * 7919 + n) % KEYS).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("benchmark task");
    }
    (tasks * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64()
}

/// Rate-limit checks per second ÷ a raw INCR + EXPIRE pipeline per second, 64 concurrent.
async fn ratelimit_redis_ratio(store: RedisStore, url: &str) {
    let raw: ConnectionManager = redis::Client::open(url)
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("connecting the raw client");
    let limiter = Arc::new(RateLimiter::fixed_window(
        store,
        u64::MAX,
        Duration::from_secs(60),
    ));
    let ids: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("client:{i}")).collect());
    let checks = || {
        throughput(64, {
            let (limiter, ids) = (Arc::clone(&limiter), Arc::clone(&ids));
            move |_, i| {
                let (limiter, ids) = (Arc::clone(&limiter), Arc::clone(&ids));
                async move {
                    assert!(limiter.check(&ids[i]).await.expect("check").allowed);
                }
            }
        })
    };
    let raw_checks = || {
        throughput(64, {
            let (raw, ids) = (raw.clone(), Arc::clone(&ids));
            move |_, i| {
                let (mut raw, ids) = (raw.clone(), Arc::clone(&ids));
                async move {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("clock")
                        .as_secs();
                    let key = format!("raw:ratelimit:{}:{}", ids[i], now - now % 60);
                    let (count,): (u64,) = redis::pipe()
                        .incr(&key, 1)
                        .expire(&key, 60)
                        .ignore()
                        .query_async(&mut raw)
                        .await
                        .expect("raw pipeline");
                    assert!(count > 0);
                }
            }
        })
    };
    let (ours, theirs, ratio) = crate::alternate(ROUNDS, checks, raw_checks).await;
    line("ratelimit_redis_checks_per_sec_c64", format!("{ours:.0}"));
    line("ratelimit_redis_raw_per_sec_c64", format!("{theirs:.0}"));
    line("ratelimit_redis_ratio_vs_raw_c64", format!("{ratio:.2}"));
}
