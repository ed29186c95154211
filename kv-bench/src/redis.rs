//! The Redis backend against the raw `redis` crate on the same kind of connection (one
//! multiplexed `ConnectionManager`), same server, same work, side by side in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_core::{KvStore, ListOptions, PutItem, PutOptions};
use kv_redis::RedisStore;
use kv_testsuite::servers::RedisServer;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{line, median};

const KEYS: usize = 10_000;
const VALUE_BYTES: usize = 100;
const ROUND: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 5;

/// Runs `op(task, i)` from `concurrency` tasks for `ROUND`; returns ops/s.
async fn throughput<F, Fut>(concurrency: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
            tokio::spawn(async move {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i % KEYS).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(ROUND).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("benchmark task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

pub(crate) async fn run() {
    let server;
    let url = match std::env::var("KV_BENCH_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            server = RedisServer::start(&[]).expect("redis-server is needed for this benchmark");
            server.url()
        }
    };
    let store = RedisStore::builder(url.as_str())
        .namespace("bench:")
        .connect()
        .await
        .expect("connecting the store");
    let raw: ConnectionManager = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("connecting the raw client");
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("key:{i:05}")).collect());
    let raw_keys: Arc<Vec<String>> = Arc::new(keys.iter().map(|k| format!("raw:{k}")).collect());
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);

    for chunk in keys.chunks(1000) {
        let items = chunk
            .iter()
            .map(|k| PutItem::new(k.clone(), value.clone()))
            .collect();
        store.put_many(items).await.expect("loading the store");
    }
    let mut pipe = redis::pipe();
    for k in raw_keys.iter() {
        pipe.set(k, &value[..]).ignore();
    }
    pipe.query_async::<()>(&mut raw.clone())
        .await
        .expect("loading raw keys");

    for concurrency in [1usize, 64, 256] {
        let (mut raw_get, mut our_get, mut raw_put, mut our_put) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            raw_get.push(
                throughput(concurrency, {
                    let (raw, keys) = (raw.clone(), raw_keys.clone());
                    move |_, i| {
                        let (mut raw, keys) = (raw.clone(), keys.clone());
                        async move {
                            let v: Option<Vec<u8>> = raw.get(&keys[i]).await.expect("raw get");
                            assert!(v.is_some());
                        }
                    }
                })
                .await,
            );
            our_get.push(
                throughput(concurrency, {
                    let (store, keys) = (store.clone(), keys.clone());
                    move |_, i| {
                        let (store, keys) = (store.clone(), keys.clone());
                        async move {
                            let v = store.get(&keys[i]).await.expect("get");
                            assert!(v.is_some());
                        }
                    }
                })
                .await,
            );
            raw_put.push(
                throughput(concurrency, {
                    let (raw, keys, value) = (raw.clone(), raw_keys.clone(), value.clone());
                    move |_, i| {
                        let (mut raw, keys, value) = (raw.clone(), keys.clone(), value.clone());
                        async move {
                            let () = raw.set(&keys[i], &value[..]).await.expect("raw set");
                        }
                    }
                })
                .await,
            );
            our_put.push(
                throughput(concurrency, {
                    let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                    move |_, i| {
                        let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                        async move {
                            store
                                .put(&keys[i], value, PutOptions::new())
                                .await
                                .expect("put");
                        }
                    }
                })
                .await,
            );
        }
        let (raw_get, our_get) = (median(raw_get), median(our_get));
        let (raw_put, our_put) = (median(raw_put), median(our_put));
        let c = concurrency;
        line(
            &format!("redis_raw_get_ops_per_sec_c{c}"),
            format!("{raw_get:.0}"),
        );
        line(
            &format!("redis_get_ops_per_sec_c{c}"),
            format!("{our_get:.0}"),
        );
        line(
            &format!("redis_get_ratio_vs_raw_c{c}"),
            format!("{:.2}", our_get / raw_get),
        );
        line(
            &format!("redis_raw_put_ops_per_sec_c{c}"),
            format!("{raw_put:.0}"),
        );
        line(
            &format!("redis_put_ops_per_sec_c{c}"),
            format!("{our_put:.0}"),
        );
        line(
            &format!("redis_put_ratio_vs_raw_c{c}"),
            format!("{:.2}", our_put / raw_put),
        );
    }

    list_with_1m_keys(&store, &value).await;
}

/// Lists 100 keys under a prefix while the same index holds 1M other keys.
async fn list_with_1m_keys(store: &RedisStore, value: &Bytes) {
    let loads = (0..1000).map(|batch| {
        let store = store.clone();
        let value = value.clone();
        async move {
            let items = (0..1000)
                .map(|i| PutItem::new(format!("other:{batch:04}:{i:04}"), value.clone()))
                .collect();
            store.put_many(items).await.expect("loading 1M keys");
        }
    });
    futures_util::StreamExt::collect::<Vec<()>>(futures_util::StreamExt::buffer_unordered(
        futures_util::stream::iter(loads),
        16,
    ))
    .await;
    let items = (0..100)
        .map(|i| PutItem::new(format!("target:{i:03}"), value.clone()))
        .collect();
    store
        .put_many(items)
        .await
        .expect("loading the listed keys");
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        let page = store
            .list(ListOptions::new().prefix("target:"))
            .await
            .expect("list");
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(page.keys.len(), 100);
    }
    line("redis_list_1m_p50_us", format!("{:.0}", median(samples)));
}
