//! The Redis backend against the raw `redis` crate on the same kind of connection (one
//! multiplexed `ConnectionManager`), same server, same work, side by side in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvkit_core::{KvStore, ListOptions, PutItem, PutOptions};
use kvkit_redis::RedisStore;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{line, median};

const KEYS: usize = 10_000;
const VALUE_BYTES: usize = 100;
const ROUND: Duration = Duration::from_millis(600);
const ROUNDS: usize = 9;

/// Runs `op(task, i)` from `concurrency` tasks for one round over the key space.
pub(crate) async fn throughput<F, Fut>(concurrency: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    crate::throughput(concurrency, ROUND, KEYS, op).await
}

pub(crate) async fn run() {
    let (_server, url) = crate::redis_for_bench();
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

    let raw_get = |c: usize| {
        throughput(c, {
            let (raw, keys) = (raw.clone(), raw_keys.clone());
            move |_, i| {
                let (mut raw, keys) = (raw.clone(), keys.clone());
                async move {
                    let v: Option<Vec<u8>> = raw.get(&keys[i]).await.expect("raw get");
                    assert!(v.is_some());
                }
            }
        })
    };
    let our_get = |c: usize| {
        throughput(c, {
            let (store, keys) = (store.clone(), keys.clone());
            move |_, i| {
                let (store, keys) = (store.clone(), keys.clone());
                async move {
                    let v = store.get(&keys[i]).await.expect("get");
                    assert!(v.is_some());
                }
            }
        })
    };
    let raw_put = |c: usize| {
        throughput(c, {
            let (raw, keys, value) = (raw.clone(), raw_keys.clone(), value.clone());
            move |_, i| {
                let (mut raw, keys, value) = (raw.clone(), keys.clone(), value.clone());
                async move {
                    let () = raw.set(&keys[i], &value[..]).await.expect("raw set");
                }
            }
        })
    };
    let our_put = |c: usize| {
        throughput(c, {
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
    };
    for c in [1usize, 64, 256] {
        let (mut get_ratio, mut put_ratio) = (Vec::new(), Vec::new());
        let (mut raw_gets, mut our_gets, mut raw_puts, mut our_puts) =
            (vec![], vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            // Alternate which side goes first, so drift in the machine's speed cancels out.
            let (rg, og, rp, op) = if round % 2 == 0 {
                let (rg, og) = (raw_get(c).await, our_get(c).await);
                let (rp, op) = (raw_put(c).await, our_put(c).await);
                (rg, og, rp, op)
            } else {
                let (og, rg) = (our_get(c).await, raw_get(c).await);
                let (op, rp) = (our_put(c).await, raw_put(c).await);
                (rg, og, rp, op)
            };
            get_ratio.push(og / rg);
            put_ratio.push(op / rp);
            raw_gets.push(rg);
            our_gets.push(og);
            raw_puts.push(rp);
            our_puts.push(op);
        }
        line(
            &format!("redis_raw_get_ops_per_sec_c{c}"),
            format!("{:.0}", median(raw_gets)),
        );
        line(
            &format!("redis_get_ops_per_sec_c{c}"),
            format!("{:.0}", median(our_gets)),
        );
        line(
            &format!("redis_get_ratio_vs_raw_c{c}"),
            format!("{:.2}", median(get_ratio)),
        );
        line(
            &format!("redis_raw_put_ops_per_sec_c{c}"),
            format!("{:.0}", median(raw_puts)),
        );
        line(
            &format!("redis_put_ops_per_sec_c{c}"),
            format!("{:.0}", median(our_puts)),
        );
        line(
            &format!("redis_put_ratio_vs_raw_c{c}"),
            format!("{:.2}", median(put_ratio)),
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
