//! The wrappers against the bare stores: tracing and metrics over memory, and the two-tier
//! store against plain Redis.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvkit_core::{KvStore, PutItem};
use kvkit_layers::{Observed, TwoTier};
use kvkit_memory::MemoryStore;
use kvkit_redis::RedisInvalidator;
use kvkit_redis::RedisStore;

use crate::{Rng, line, median};

const KEYS: usize = 1_000_000;
const TASKS: usize = 2;
const OPS_PER_TASK: usize = 1_000_000;
const ROUNDS: usize = 5;

/// A subscriber that, like a production one filtering at INFO, leaves the DEBUG `kv` spans off,
/// or, when `ALL_SPANS` is set, takes every span (and does nothing else with it, the floor of
/// any real subscriber's cost).
struct Subscriber;

static ALL_SPANS: AtomicBool = AtomicBool::new(false);
static SPANS: AtomicU64 = AtomicU64::new(0);

impl tracing::Subscriber for Subscriber {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        ALL_SPANS.load(Ordering::Relaxed) || *metadata.level() <= tracing::Level::INFO
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // As a subscriber filtering at INFO says, so disabled spans cost one comparison.
        Some(if ALL_SPANS.load(Ordering::Relaxed) {
            tracing::level_filters::LevelFilter::TRACE
        } else {
            tracing::level_filters::LevelFilter::INFO
        })
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(SPANS.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Switches between INFO filtering and taking every span.
fn set_all_spans(all: bool) {
    ALL_SPANS.store(all, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// A recorder keeping counters and histogram counts and sums in atomics, one set per name and
/// labels however often it is registered (the store's clones register their own handles), as
/// exporters' registries do.
#[derive(Default)]
struct Recorder(Mutex<HashMap<metrics::Key, Arc<Sum>>>);

static RECORDER: LazyLock<Recorder> = LazyLock::new(Recorder::default);

impl Recorder {
    fn series(&self, key: &metrics::Key) -> Arc<Sum> {
        let mut all = self.0.lock().expect("registry");
        all.entry(key.clone()).or_default().clone()
    }

    /// The total count of every series named `name`.
    fn count(&self, name: &str) -> u64 {
        let all = self.0.lock().expect("registry");
        all.iter()
            .filter(|(key, _)| key.name() == name)
            .map(|(_, sum)| sum.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Default)]
struct Sum(AtomicU64, AtomicU64);

impl metrics::CounterFn for Sum {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Sum {
    fn record(&self, value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
        // The duration in nanoseconds fits u64 for any benchmark.
        self.1.fetch_add((value * 1e9) as u64, Ordering::Relaxed);
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.series(key))
    }
}

/// Random gets from `TASKS` tasks; returns gets/s.
async fn gets<S: KvStore + Clone>(
    store: &S,
    keys: &Arc<Vec<String>>,
    indices: &Arc<Vec<Vec<u32>>>,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, keys, indices) = (store.clone(), keys.clone(), indices.clone());
            tokio::spawn(async move {
                for &i in &indices[t] {
                    black_box(store.get(&keys[i as usize]).await.expect("get"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (TASKS * OPS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn run() {
    tracing::subscriber::set_global_default(Subscriber).expect("installing the subscriber");
    metrics::set_global_recorder(&*RECORDER).expect("installing the recorder");

    let mut rng = Rng::new(7);
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("key:{i:08}")).collect());
    let indices: Arc<Vec<Vec<u32>>> = Arc::new(
        (0..TASKS)
            .map(|_| (0..OPS_PER_TASK).map(|_| rng.below(KEYS) as u32).collect())
            .collect(),
    );
    let bare = MemoryStore::new();
    for chunk in keys.chunks(10_000) {
        let items = chunk
            .iter()
            .map(|k| PutItem::new(k.clone(), vec![b'x'; 100]))
            .collect();
        bare.put_many(items).await.expect("loading");
    }
    let layered = Observed::new(bare.clone());
    let (layered_rate, bare_rate, ratio) = crate::alternate(
        ROUNDS,
        || gets(&layered, &keys, &indices),
        || gets(&bare, &keys, &indices),
    )
    .await;
    let (all_spans_rate, _, all_spans_ratio) = crate::alternate(
        ROUNDS,
        || async {
            set_all_spans(true);
            let rate = gets(&layered, &keys, &indices).await;
            set_all_spans(false);
            rate
        },
        || gets(&bare, &keys, &indices),
    )
    .await;
    // Every observed get reached the recorder, and every one with spans on the subscriber.
    let observed = (ROUNDS * 2 * TASKS * OPS_PER_TASK) as u64;
    assert_eq!(RECORDER.count("kv_operations_total"), observed);
    assert_eq!(RECORDER.count("kv_operation_duration_seconds"), observed);
    assert!(SPANS.load(Ordering::Relaxed) >= observed / 2);
    line("memory_bare_get_ops_per_sec", format!("{bare_rate:.0}"));
    line("traced_get_ops_per_sec", format!("{layered_rate:.0}"));
    line("traced_get_ratio_vs_bare", format!("{ratio:.2}"));
    line(
        "traced_all_spans_get_ops_per_sec",
        format!("{all_spans_rate:.0}"),
    );
    line(
        "traced_all_spans_get_ratio_vs_bare",
        format!("{all_spans_ratio:.2}"),
    );
    drop((bare, layered));

    two_tier().await;
}

/// Hot-key gets at concurrency 64 through a two-tier store and straight from Redis.
async fn two_tier() {
    let (_server, url) = crate::redis_for_bench();
    let connect = || {
        RedisStore::builder(url.as_str())
            .namespace("bench-tier:")
            .connect()
    };
    let plain = connect().await.expect("connecting");
    let invalidator = RedisInvalidator::connect(&url, "bench-tier:invalidate")
        .await
        .expect("pub/sub");
    let tier = Arc::new(
        TwoTier::new(connect().await.expect("connecting"))
            .max_staleness(Duration::from_secs(60))
            .invalidator(invalidator),
    );
    let hot: Arc<Vec<String>> = Arc::new((0..100).map(|i| format!("hot:{i:03}")).collect());
    let value = Bytes::from(vec![b'x'; 100]);
    let items = hot
        .iter()
        .map(|k| PutItem::new(k.clone(), value.clone()))
        .collect();
    plain.put_many(items).await.expect("loading");
    while tier.cached_entries() < hot.len() {
        for key in hot.iter() {
            tier.get(key).await.expect("warming");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut plain_rate, mut tier_rate) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        plain_rate.push(hot_gets(Arc::new(plain.clone()), &hot).await);
        tier_rate.push(hot_gets(tier.clone(), &hot).await);
    }
    let (plain_rate, tier_rate) = (median(plain_rate), median(tier_rate));
    line("redis_hot_get_ops_per_sec_c64", format!("{plain_rate:.0}"));
    line(
        "two_tier_hot_get_ops_per_sec_c64",
        format!("{tier_rate:.0}"),
    );
    line(
        "two_tier_hot_get_ratio_vs_redis",
        format!("{:.1}", tier_rate / plain_rate),
    );
}

async fn hot_gets<S: KvStore>(store: Arc<S>, hot: &Arc<Vec<String>>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (store, hot, stop, done) = (store.clone(), hot.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    black_box(store.get(&hot[i % hot.len()]).await.expect("get"));
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    if i % 64 == 0 {
                        // Local hits never wait, so let the other tasks and the timer run.
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
