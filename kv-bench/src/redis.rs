//! The Redis backend against the raw `redis` crate on the same kind of connection (one
//! multiplexed `ConnectionManager`, or one cluster connection), same server, same work, side by
//! side in one process: single operations, then batches against `MGET` and pipelined `SET`s on
//! one server and on a 3-master cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvkit_core::{KvStore, ListOptions, PutItem, PutOptions};
use kvkit_redis::RedisStore;
use redis::AsyncCommands;
use redis::aio::{ConnectionLike, ConnectionManager};

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
    // The store's own call timeout (2 s) for the raw client too, where the crate's default is
    // 500 ms: pipelines of 1,000 keys in flight take longer to answer.
    let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(RAW_TIMEOUT));
    let raw: ConnectionManager = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_manager_with_config(config)
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

    batches("redis", false, &store, raw.clone(), &value).await;
    list_with_1m_keys(&store, &value).await;

    let cluster = kvkit_test_servers::RedisCluster::start(3)
        .expect("redis-server is needed for the cluster benchmark");
    let store = RedisStore::cluster(cluster.urls())
        .namespace("bench:")
        .connect()
        .await
        .expect("connecting the cluster store");
    let raw = redis::cluster::ClusterClientBuilder::new(cluster.urls())
        .response_timeout(RAW_TIMEOUT)
        .build()
        .expect("cluster urls")
        .get_async_connection()
        .await
        .expect("connecting the raw cluster client");
    batches("redis_cluster", true, &store, raw, &value).await;
}

/// Hash-tagged shards of a cluster store (the store's default).
const CLUSTER_SHARDS: usize = 16;
/// The raw clients' response timeout: the store's default call timeout.
const RAW_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys in one batch of the batch comparisons.
const BATCH: usize = 100;
/// Concurrent batches in the batch comparisons.
const BATCH_CONCURRENCY: usize = 16;

/// `get_many` of 100 keys against one raw `MGET` of as many, and `put_many` of 100 against one
/// raw pipeline of as many `SET`s, in keys per second at 16 batches in flight; then the best
/// `put_many` rate against the best raw pipelined rate over batches of 100 and 1,000 keys at 4
/// and 16 in flight (the peak the server gives a raw client). `prefix` names the topology;
/// `cluster` says whether it is one.
async fn batches<C>(prefix: &str, cluster: bool, store: &RedisStore, raw: C, value: &Bytes)
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let keys: Vec<String> = (0..KEYS).map(|i| format!("batch:{i:05}")).collect();
    // A raw pipeline or `MGET` on a cluster must stay in one slot, so a raw client spreads its
    // keys over hash tags and sends one command per tag, as the store does over its shards:
    // there, raw keys take one of as many tags as the store has shards (16), round robin.
    let raw_keys: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| match cluster {
            true => format!("{{raw{}}}:{k}", i % CLUSTER_SHARDS),
            false => format!("raw:{k}"),
        })
        .collect();
    let groups = |keys: &[String], size: usize| -> Arc<Vec<Vec<String>>> {
        Arc::new(keys.chunks(size).map(<[String]>::to_vec).collect())
    };
    let (ours, theirs) = (groups(&keys, BATCH), groups(&raw_keys, BATCH));
    for (our_batch, raw_batch) in ours.iter().zip(theirs.iter()) {
        let items = our_batch
            .iter()
            .map(|k| PutItem::new(k.clone(), value.clone()))
            .collect();
        store.put_many(items).await.expect("loading the store");
        raw_set(&raw, raw_batch, value).await;
    }

    let our_get_many = || {
        batch_throughput(BATCH_CONCURRENCY, Arc::clone(&ours), {
            let store = store.clone();
            move |batch: Vec<String>| {
                let store = store.clone();
                async move {
                    let values = store.get_many(&batch).await.expect("get_many");
                    assert!(values.iter().all(Option::is_some));
                }
            }
        })
    };
    let raw_mget = || {
        batch_throughput(BATCH_CONCURRENCY, Arc::clone(&theirs), {
            let raw = raw.clone();
            move |batch: Vec<String>| {
                let raw = raw.clone();
                async move {
                    let gets = by_tag(&batch).into_iter().map(|group| {
                        let mut raw = raw.clone();
                        async move {
                            let values: Vec<Option<Vec<u8>>> =
                                raw.mget(&group).await.expect("raw MGET");
                            assert!(values.iter().all(Option::is_some));
                        }
                    });
                    futures_util::future::join_all(gets).await;
                }
            }
        })
    };
    let (ours_get, raw_get, get_ratio) = crate::alternate(ROUNDS, our_get_many, raw_mget).await;
    line(
        &format!("{prefix}_get_many_100_keys_per_s"),
        format!("{ours_get:.0}"),
    );
    line(
        &format!("{prefix}_raw_mget_100_keys_per_s"),
        format!("{raw_get:.0}"),
    );
    line(
        &format!("{prefix}_get_many_100_ratio_vs_raw_mget"),
        format!("{get_ratio:.2}"),
    );

    let our_put_many = |batches: Arc<Vec<Vec<String>>>, concurrency: usize| {
        batch_throughput(concurrency, batches, {
            let (store, value) = (store.clone(), value.clone());
            move |batch: Vec<String>| {
                let (store, value) = (store.clone(), value.clone());
                async move {
                    let items = batch
                        .into_iter()
                        .map(|k| PutItem::new(k, value.clone()))
                        .collect();
                    store.put_many(items).await.expect("put_many");
                }
            }
        })
    };
    let raw_pipeline = |batches: Arc<Vec<Vec<String>>>, concurrency: usize| {
        batch_throughput(concurrency, batches, {
            let (raw, value) = (raw.clone(), value.clone());
            move |batch: Vec<String>| {
                let (raw, value) = (raw.clone(), value.clone());
                async move { raw_set(&raw, &batch, &value).await }
            }
        })
    };
    let (ours_put, raw_put, put_ratio) = crate::alternate(
        ROUNDS,
        || our_put_many(Arc::clone(&ours), BATCH_CONCURRENCY),
        || raw_pipeline(Arc::clone(&theirs), BATCH_CONCURRENCY),
    )
    .await;
    line(
        &format!("{prefix}_put_many_100_keys_per_s"),
        format!("{ours_put:.0}"),
    );
    line(
        &format!("{prefix}_raw_pipeline_100_keys_per_s"),
        format!("{raw_put:.0}"),
    );
    line(
        &format!("{prefix}_put_many_100_ratio_vs_raw_pipeline"),
        format!("{put_ratio:.2}"),
    );

    let (mut best_ours, mut best_raw) = (0f64, 0f64);
    for size in [100, 1000] {
        let (ours, theirs) = (groups(&keys, size), groups(&raw_keys, size));
        for concurrency in [4, 16] {
            let (o, t, _) = crate::alternate(
                3,
                || our_put_many(Arc::clone(&ours), concurrency),
                || raw_pipeline(Arc::clone(&theirs), concurrency),
            )
            .await;
            best_ours = best_ours.max(o);
            best_raw = best_raw.max(t);
        }
    }
    line(
        &format!("{prefix}_put_many_keys_per_s"),
        format!("{best_ours:.0}"),
    );
    line(
        &format!("{prefix}_raw_pipeline_peak_keys_per_s"),
        format!("{best_raw:.0}"),
    );
    line(
        &format!("{prefix}_put_many_share_of_raw_peak"),
        format!("{:.2}", best_ours / best_raw),
    );
}

/// Sets `keys` to `value` with one pipeline (not a transaction) of `SET`s per hash tag, all
/// in flight at once.
async fn raw_set<C: ConnectionLike + Clone>(raw: &C, keys: &[String], value: &Bytes) {
    let pipelines = by_tag(keys).into_iter().map(|group| {
        let mut raw = raw.clone();
        async move {
            let mut pipe = redis::pipe();
            for key in &group {
                pipe.set(key, &value[..]).ignore();
            }
            pipe.query_async::<()>(&mut raw)
                .await
                .expect("raw pipeline");
        }
    });
    futures_util::future::join_all(pipelines).await;
}

/// `keys` grouped by their hash tag (`{…}`), in order of first appearance; untagged keys form
/// one group.
fn by_tag(keys: &[String]) -> Vec<Vec<String>> {
    let tag = |key: &str| {
        key.strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .map(|(tag, _)| tag.to_owned())
    };
    let mut groups: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for key in keys {
        let t = tag(key);
        match groups.iter_mut().find(|(g, _)| *g == t) {
            Some((_, group)) => group.push(key.clone()),
            None => groups.push((t, vec![key.clone()])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// Runs `op(batch)` from `concurrency` tasks for one round, cycling through `batches`;
/// returns keys per second.
async fn batch_throughput<F, Fut>(concurrency: usize, batches: Arc<Vec<Vec<String>>>, op: F) -> f64
where
    F: Fn(Vec<String>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_batch = batches[0].len() as f64;
    let count = batches.len();
    let ops = crate::throughput(concurrency, ROUND, count, move |_, i| {
        let batch = batches[i].clone();
        op(batch)
    })
    .await;
    ops * per_batch
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
