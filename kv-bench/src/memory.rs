//! The memory backend against a bare `DashMap<String, Vec<u8>>`, side by side in one process.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use kvkit_core::{KvStore, ListOptions, PutItem, PutOptions};
use kvkit_memory::MemoryStore;

use crate::alloc::live_bytes;
use crate::{Rng, line, median};

const KEYS: usize = 1_000_000;
const VALUE_BYTES: usize = 100;
const TASKS: usize = 2;
const OPS_PER_TASK: usize = 1_000_000;
const ROUNDS: usize = 3;
/// Keys written and deleted again by the churn measurement.
const CHURN_CYCLES: usize = 1_000_000;
/// Long enough that nothing the churn writes expires while it runs.
const CHURN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Puts timed one by one, per round, for the writer latency lines.
const TIMED_PUTS: usize = 20_000;
/// The writer's pause after each put.
const PUT_INTERVAL: Duration = Duration::from_micros(20);

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

fn value(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; VALUE_BYTES]
}

pub(crate) async fn run() {
    let mut rng = Rng::new(0x5eed);
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(key).collect());
    let order = rng.permutation(KEYS);
    let load_order: Arc<Vec<Vec<u32>>> = Arc::new(
        order
            .chunks(KEYS.div_ceil(TASKS))
            .map(<[u32]>::to_vec)
            .collect(),
    );
    let indices: Arc<Vec<Vec<u32>>> = Arc::new(
        (0..TASKS)
            .map(|_| (0..OPS_PER_TASK).map(|_| rng.below(KEYS) as u32).collect())
            .collect(),
    );

    // Load both, measuring insert throughput and the heap each one holds afterwards. These
    // maps, loaded on a fresh heap, serve the measurements that follow; more loads at the end
    // give the insert ratio its median and spread.
    let (map, dash_first, dash_bytes) = load_dashmap(&keys, &load_order).await;
    let (store, mem_first, mem_bytes) = load_memory(&keys, &load_order).await;

    let dash = (map.clone(), keys.clone());
    let mem = (store.clone(), keys.clone());
    let mut dash_get = Vec::new();
    let mut dash_get_borrow = Vec::new();
    let mut mem_get = Vec::new();
    let mut dash_put = Vec::new();
    let mut mem_put = Vec::new();
    for round in 0..ROUNDS {
        dash_get.push(throughput!(indices, dash, |s, i| {
            black_box(s.0.get(&s.1[i]).map(|v| v.value().clone()))
        }));
        dash_get_borrow.push(throughput!(indices, dash, |s, i| {
            black_box(s.0.get(&s.1[i]).map(|v| v.value().len()))
        }));
        mem_get.push(throughput!(indices, mem, |s, i| {
            black_box(s.0.get(&s.1[i]).await.expect("get"))
        }));
        dash_put.push(throughput!(indices, dash, |s, i| {
            s.0.insert(s.1[i].clone(), value(i + round))
        }));
        mem_put.push(throughput!(indices, mem, |s, i| {
            s.0.put(&s.1[i], Bytes::from(value(i + round)), PutOptions::new())
                .await
                .expect("put")
        }));
    }
    let (dash_get, dash_get_borrow, mem_get) =
        (median(dash_get), median(dash_get_borrow), median(mem_get));
    let (dash_put, mem_put) = (median(dash_put), median(mem_put));
    drop((dash, mem));

    // Listing 100 keys under a prefix with 1M keys stored.
    let mut list_us = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let prefix = format!("key:{:06}", rng.below(KEYS / 100));
        let start = Instant::now();
        let page = store
            .list(ListOptions::new().prefix(prefix))
            .await
            .expect("list");
        list_us.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(page.keys.len(), 100, "each prefix covers 100 keys");
    }
    list_us.sort_by(f64::total_cmp);
    let p50 = list_us[list_us.len() / 2];
    let p99 = list_us[list_us.len() * 99 / 100];

    // Writers while listings run: the same puts timed alone and beside a lister, alternately.
    let (mut put_p99, mut put_p99_listing) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for listing in [round % 2 == 1, round % 2 == 0] {
            let p99 = put_p99_us(&store, listing);
            if listing {
                put_p99_listing.push(p99);
            } else {
                put_p99.push(p99);
            }
        }
    }
    let (put_p99, put_p99_listing) = (median(put_p99), median(put_p99_listing));

    let (ttl_bytes, churn_bytes) = churn(&keys).await;

    drop((map, store));
    let (mut dash_insert, mut mem_insert) = (vec![dash_first], vec![mem_first]);
    let mut insert_ratio = vec![mem_first / dash_first];
    for round in 1..ROUNDS {
        // Alternate which goes first; each load is dropped before the next.
        let (dash, mem) = if round % 2 == 1 {
            let mem = load_memory(&keys, &load_order).await.1;
            (load_dashmap(&keys, &load_order).await.1, mem)
        } else {
            let dash = load_dashmap(&keys, &load_order).await.1;
            (dash, load_memory(&keys, &load_order).await.1)
        };
        dash_insert.push(dash);
        mem_insert.push(mem);
        insert_ratio.push(mem / dash);
    }
    let insert_spread = spread(&insert_ratio);
    let (dash_insert, mem_insert, insert_ratio) = (
        median(dash_insert),
        median(mem_insert),
        median(insert_ratio),
    );

    line("dashmap_get_ops_per_sec", format!("{dash_get:.0}"));
    line(
        "dashmap_get_borrow_ops_per_sec",
        format!("{dash_get_borrow:.0}"),
    );
    line("memory_get_ops_per_sec", format!("{mem_get:.0}"));
    line(
        "memory_get_ratio_vs_dashmap",
        format!("{:.2}", mem_get / dash_get),
    );
    line(
        "memory_get_ratio_vs_dashmap_borrow",
        format!("{:.2}", mem_get / dash_get_borrow),
    );
    line("dashmap_put_ops_per_sec", format!("{dash_put:.0}"));
    line("memory_put_ops_per_sec", format!("{mem_put:.0}"));
    line(
        "memory_put_ratio_vs_dashmap",
        format!("{:.2}", mem_put / dash_put),
    );
    line("dashmap_insert_ops_per_sec", format!("{dash_insert:.0}"));
    line("memory_insert_ops_per_sec", format!("{mem_insert:.0}"));
    line(
        "memory_insert_ratio_vs_dashmap",
        format!("{insert_ratio:.2}"),
    );
    line("memory_insert_ratio_spread", insert_spread);
    line("memory_list_1m_p50_us", format!("{p50:.1}"));
    line("memory_list_1m_p99_us", format!("{p99:.1}"));
    line("memory_put_p99_us", format!("{put_p99:.1}"));
    line(
        "memory_put_p99_us_during_list",
        format!("{put_p99_listing:.1}"),
    );
    line(
        "dashmap_bytes_per_key",
        format!("{:.1}", dash_bytes as f64 / KEYS as f64),
    );
    line(
        "memory_bytes_per_key",
        format!("{:.1}", mem_bytes as f64 / KEYS as f64),
    );
    line(
        "memory_bytes_ratio_vs_dashmap",
        format!("{:.2}", mem_bytes as f64 / dash_bytes as f64),
    );
    line("memory_ttl_bytes_per_key", format!("{ttl_bytes:.1}"));
    line(
        "memory_churn_bytes_per_live_key",
        format!("{churn_bytes:.1}"),
    );
    line(
        "memory_churn_ratio_vs_unchurned",
        format!("{:.2}", churn_bytes / ttl_bytes),
    );
    expiry(&keys).await;
}

/// Loads `keys` into an empty `DashMap` from `TASKS` tasks: the map, inserts per second and
/// the heap bytes it holds.
async fn load_dashmap(
    keys: &Arc<Vec<String>>,
    order: &Arc<Vec<Vec<u32>>>,
) -> (Arc<DashMap<String, Vec<u8>>>, f64, usize) {
    let before = live_bytes();
    let map: Arc<DashMap<String, Vec<u8>>> = Arc::new(DashMap::new());
    let rate = throughput!(order, (map.clone(), keys.clone()), |s, i| {
        s.0.insert(s.1[i].clone(), value(i))
    });
    (map, rate, live_bytes().saturating_sub(before))
}

/// Loads `keys` into an empty memory store from `TASKS` tasks: the store, inserts per second
/// and the heap bytes it holds.
async fn load_memory(
    keys: &Arc<Vec<String>>,
    order: &Arc<Vec<Vec<u32>>>,
) -> (MemoryStore, f64, usize) {
    let before = live_bytes();
    let store = MemoryStore::new();
    let rate = throughput!(order, (store.clone(), keys.clone()), |s, i| {
        s.0.put(&s.1[i], Bytes::from(value(i)), PutOptions::new())
            .await
            .expect("put")
    });
    (store, rate, live_bytes().saturating_sub(before))
}

/// The lowest and highest of a few ratios, as `lo–hi`.
fn spread(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

/// A current-thread runtime for one benchmark thread, to drive the store's futures.
fn thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

/// Times `TIMED_PUTS` puts that create a key (each deleted again), the writes that enter the
/// ordered index, with or without a thread listing 1,000-key pages meanwhile; returns the 99th
/// percentile in microseconds. The writer pauses `PUT_INTERVAL` after each put, so its puts
/// arrive at any moment of a listing, instead of queueing up behind one and then catching up.
fn put_p99_us(store: &MemoryStore, listing: bool) -> f64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if listing {
            scope.spawn(|| {
                thread_runtime().block_on(async {
                    let mut rng = Rng::new(0x1157);
                    while !stop.load(Ordering::Relaxed) {
                        let prefix = format!("key:00{:03}", rng.below(KEYS / 1000));
                        let page = store
                            .list(ListOptions::new().prefix(prefix))
                            .await
                            .expect("list");
                        assert_eq!(page.keys.len(), 1000, "each prefix covers 1,000 keys");
                    }
                });
            });
        }
        // On a thread of its own, like the lister: a runtime cannot start inside this one.
        let writer = scope.spawn(|| {
            thread_runtime().block_on(async {
                let value = Bytes::from(value(0));
                let mut put_us = Vec::with_capacity(TIMED_PUTS);
                for i in 0..TIMED_PUTS {
                    let key = format!("new:{i:08}");
                    let start = Instant::now();
                    store
                        .put(&key, value.clone(), PutOptions::new())
                        .await
                        .expect("put");
                    put_us.push(start.elapsed().as_secs_f64() * 1e6);
                    store.delete(&key).await.expect("delete");
                    let next = Instant::now() + PUT_INTERVAL;
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
                put_us
            })
        });
        let put_us = writer.join();
        stop.store(true, Ordering::Relaxed);
        let mut put_us = put_us.expect("writer thread");
        put_us.sort_by(f64::total_cmp);
        put_us[put_us.len() * 99 / 100]
    })
}

/// Heap bytes per live key of a store holding `keys` with a 24 h TTL, as loaded and after 1M
/// sessions (other keys, same TTL) were each written and deleted.
async fn churn(keys: &[String]) -> (f64, f64) {
    let before = live_bytes();
    let store = MemoryStore::new();
    for chunk in keys.chunks(10_000) {
        let items = chunk
            .iter()
            .map(|k| {
                PutItem::new(k.clone(), Bytes::from(value(0)))
                    .options(PutOptions::new().ttl(CHURN_TTL))
            })
            .collect();
        store.put_many(items).await.expect("put_many");
    }
    let loaded = live_bytes().saturating_sub(before);
    let value = Bytes::from(value(0));
    for i in 0..CHURN_CYCLES {
        let session = format!("session:{i:08}");
        let options = PutOptions::new().ttl(CHURN_TTL);
        store
            .put(&session, value.clone(), options)
            .await
            .expect("put");
        store.delete(&session).await.expect("delete");
    }
    let churned = live_bytes().saturating_sub(before);
    assert_eq!(
        store.stored_entries(),
        keys.len(),
        "the churn keeps the loaded keys"
    );
    let live = keys.len() as f64;
    (loaded as f64 / live, churned as f64 / live)
}

/// Writes 1M keys with a 1 s TTL and checks, 5 s later and without reading them, how many are
/// gone from memory.
async fn expiry(keys: &Arc<Vec<String>>) {
    let before = live_bytes();
    let store = MemoryStore::new();
    for chunk in keys.chunks(10_000) {
        let items = chunk
            .iter()
            .map(|k| {
                PutItem::new(k.clone(), Bytes::from(value(0)))
                    .options(PutOptions::new().ttl(Duration::from_secs(1)))
            })
            .collect();
        store.put_many(items).await.expect("put_many");
    }
    let loaded = live_bytes().saturating_sub(before);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let left = store.stored_entries();
    let after = live_bytes().saturating_sub(before);
    line(
        "memory_expired_reclaimed",
        format!("{:.3}", (KEYS - left) as f64 / KEYS as f64),
    );
    line(
        "memory_expired_bytes_per_key_before",
        format!("{:.1}", loaded as f64 / KEYS as f64),
    );
    line(
        "memory_expired_bytes_per_key_after",
        format!("{:.1}", after as f64 / KEYS as f64),
    );
}
