//! What each wrapper adds: namespaces that cannot be escaped, retries and timeouts against a
//! fault-injecting store, spans seen by a test subscriber, metrics seen by a test recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kvkit_core::{
    Capabilities, CounterOptions, Entry, Error, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result,
};
use kvkit_layers::{Metered, Namespaced, Observed, Resilient, RetryPolicy, Traced};
use kvkit_memory::MemoryStore;

/// A store that fails its next `failures` calls with `error`, or delays each call.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryStore,
    failures: AtomicU32,
    calls: AtomicU32,
    delay: Option<Duration>,
    retryable: bool,
}

impl Faulty {
    fn failing(failures: u32, retryable: bool) -> Self {
        Self {
            failures: AtomicU32::new(failures),
            retryable,
            ..Self::default()
        }
    }

    async fn fault(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::Backend {
                backend: "faulty",
                message: "injected failure".into(),
                retryable: self.retryable,
                source: None,
            });
        }
        Ok(())
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl KvStore for Faulty {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.fault().await?;
        self.inner.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.fault().await?;
        self.inner.get_with_metadata(key).await
    }
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.fault().await?;
        self.inner.put(key, value, options).await
    }
    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.fault().await?;
        self.inner.put_if_absent(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.fault().await?;
        self.inner.delete(key).await
    }
    async fn delete_if_version(&self, key: &str, version: &kvkit_core::Version) -> Result<()> {
        self.fault().await?;
        self.inner.delete_if_version(key, version).await
    }
    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.fault().await?;
        self.inner.list(options).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.fault().await?;
        self.inner.get_many(keys).await
    }
    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        self.fault().await?;
        self.inner.put_many(items).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.fault().await?;
        self.inner.delete_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.fault().await?;
        self.inner.increment(key, delta, options).await
    }

    fn increment_now(&self, _: &str, _: i64, _: CounterOptions) -> Option<Result<i64>> {
        None
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .max_attempts(attempts)
        .backoff(Duration::from_millis(1), Duration::from_millis(4))
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_until_they_pass() {
    let store = Resilient::new(Faulty::failing(2, true)).retry(fast_retries(3));
    store.put("k", "v".into(), PutOptions::new()).await.unwrap();
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 3);
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_attempt_limit() {
    let store = Resilient::new(Faulty::failing(5, true)).retry(fast_retries(3));
    let err = store.get("k").await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_retried() {
    let store = Resilient::new(Faulty::failing(1, false)).retry(fast_retries(5));
    assert!(store.get("k").await.is_err());
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn increments_are_not_retried_unless_asked() {
    let store = Resilient::new(Faulty::failing(1, true)).retry(fast_retries(5));
    assert!(
        store
            .increment("n", 1, CounterOptions::new())
            .await
            .is_err()
    );
    assert!(
        store
            .put_if_absent("p", "v".into(), PutOptions::new())
            .await
            .is_ok()
    );
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 2);

    let store =
        Resilient::new(Faulty::failing(1, true)).retry(fast_retries(5).retry_non_idempotent(true));
    assert_eq!(
        store
            .increment("n", 1, CounterOptions::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_time_out_retryably_and_are_retried() {
    let faulty = Faulty {
        delay: Some(Duration::from_secs(10)),
        ..Faulty::default()
    };
    let store = Resilient::new(faulty)
        .timeout(Duration::from_millis(100))
        .retry(fast_retries(2));
    let err = store.get("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "get",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_budget() {
    let store = Resilient::new(Faulty::failing(100, true)).retry(
        RetryPolicy::new()
            .max_attempts(1000)
            .backoff(Duration::from_millis(50), Duration::from_millis(50))
            .budget(Duration::from_millis(200)),
    );
    let started = tokio::time::Instant::now();
    assert!(store.get("k").await.is_err());
    assert!(started.elapsed() <= Duration::from_millis(200));
    assert!(store.inner().calls.load(Ordering::SeqCst) < 100);
}

#[tokio::test]
async fn namespaces_cannot_be_escaped() {
    let shared = MemoryStore::new();
    let a = Namespaced::new(shared.clone(), "a/");
    let b = Namespaced::new(shared.clone(), "b/");
    a.put("k", "from a".into(), PutOptions::new())
        .await
        .unwrap();
    b.put("k", "from b".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"from a"[..]));
    assert_eq!(b.get("../a/k").await.unwrap(), None);
    assert!(matches!(a.get("").await, Err(Error::EmptyKey)));
    assert!(matches!(a.get("..").await, Err(Error::ReservedKey { .. })));
    // A cursor issued in one namespace does not list another.
    for i in 0..5 {
        a.put(&format!("x{i}"), "v".into(), PutOptions::new())
            .await
            .unwrap();
    }
    let page = a.list(ListOptions::new().limit(2)).await.unwrap();
    assert!(matches!(
        b.list(ListOptions::new().cursor(page.cursor)).await,
        Err(Error::InvalidCursor { .. })
    ));
    // The key limit leaves room for the prefix.
    let max = a.capabilities().max_key_bytes;
    assert_eq!(max, shared.capabilities().max_key_bytes - 2);
    assert!(matches!(
        a.put(&"k".repeat(max + 1), "v".into(), PutOptions::new())
            .await,
        Err(Error::KeyTooLong { .. })
    ));
    a.put(&"k".repeat(max), "v".into(), PutOptions::new())
        .await
        .unwrap();
}

/// A subscriber that keeps every span's fields (shared, so the test reads them afterwards).
#[derive(Default, Clone)]
struct Spans(Arc<SpanLog>);

#[derive(Default)]
struct SpanLog {
    next: AtomicU64,
    fields: Mutex<HashMap<u64, HashMap<String, String>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = HashMap::new();
        fields.insert("name".to_owned(), span.metadata().name().to_owned());
        span.record(&mut Fields(&mut fields));
        self.0.fields.lock().unwrap().insert(id, fields);
        tracing::span::Id::from_u64(id)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut all = self.0.fields.lock().unwrap();
        if let Some(fields) = all.get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn traced_spans(hash_keys: bool) -> Vec<HashMap<String, String>> {
    let spans = Spans::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(spans.clone(), || {
        runtime.block_on(async {
            let store = Traced::new(MemoryStore::new()).hash_keys(hash_keys);
            store
                .put("user:secret@example.com", "v".into(), PutOptions::new())
                .await
                .unwrap();
            store.get("").await.unwrap_err();
            let long = format!("secret{}", "x".repeat(70_000));
            store.get(&long).await.unwrap_err();
        });
    });
    let mut all: Vec<(u64, HashMap<String, String>)> =
        spans.0.fields.lock().unwrap().drain().collect();
    all.sort_by_key(|(id, _)| *id);
    all.into_iter().map(|(_, fields)| fields).collect()
}

#[test]
fn every_operation_gets_a_span_without_its_key() {
    let spans = traced_spans(false);
    assert_eq!(spans.len(), 3);
    let put = &spans[0];
    assert_eq!(put["name"], "kv");
    assert_eq!(put["backend"], "memory");
    assert_eq!(put["operation"], "put");
    assert_eq!(put["outcome"], "ok");
    assert!(put.contains_key("latency_us"));
    assert!(!put.contains_key("key_hash"));
    assert!(
        !format!("{spans:?}").contains("secret"),
        "a key leaked into a span"
    );
    let get = &spans[1];
    assert_eq!(
        (get["operation"].as_str(), get["outcome"].as_str()),
        ("get", "error")
    );
    assert_eq!(get["error"], "empty_key");
    assert_eq!(get["error_kind"], "invalid_input");
}

#[test]
fn hashed_keys_correlate_without_revealing() {
    let spans = traced_spans(true);
    let hash = &spans[0]["key_hash"];
    assert_eq!(hash.len(), 16);
    assert!(!format!("{spans:?}").contains("secret"));
    assert_eq!(
        traced_spans(true)[0]["key_hash"],
        *hash,
        "hashes are stable"
    );
}

/// A recorder that keeps counter values and histogram samples by name and labels.
#[derive(Default)]
struct Recorded {
    counters: Mutex<HashMap<String, Arc<Count>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Count(AtomicU64);
impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);
impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn describe(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl metrics::Recorder for Recorded {
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
        let mut counters = self.counters.lock().unwrap();
        metrics::Counter::from_arc(counters.entry(describe(key)).or_default().clone())
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        metrics::Histogram::from_arc(histograms.entry(describe(key)).or_default().clone())
    }
}

#[test]
fn operations_are_counted_and_timed_by_outcome() {
    let recorder = Recorded::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = Metered::new(MemoryStore::new());
            for _ in 0..3 {
                store.get("k").await.unwrap();
            }
            store.get("").await.unwrap_err();
            store
                .increment("n", 1, CounterOptions::new())
                .await
                .unwrap();
        });
    });
    let counters = recorder.counters.lock().unwrap();
    let count = |name: &str| counters.get(name).map_or(0, |c| c.0.load(Ordering::SeqCst));
    assert_eq!(
        count("kv_operations_total{backend=memory,operation=get,outcome=ok}"),
        3
    );
    assert_eq!(
        count("kv_operations_total{backend=memory,operation=get,outcome=error}"),
        1
    );
    assert_eq!(
        count("kv_operations_total{backend=memory,operation=increment,outcome=ok}"),
        1
    );
    let histograms = recorder.histograms.lock().unwrap();
    let samples =
        histograms["kv_operation_duration_seconds{backend=memory,operation=get,outcome=ok}"]
            .0
            .lock()
            .unwrap()
            .clone();
    assert_eq!(samples.len(), 3);
    // In seconds: each call took part of the time the whole test took (a sample in
    // milliseconds or nanoseconds would be far larger), and a negative or NaN one is a bug.
    let whole = started.elapsed().as_secs_f64();
    assert!(
        samples.iter().all(|s| (0.0..=whole).contains(s)),
        "{samples:?} against {whole} s"
    );
}

#[test]
fn observed_records_the_same_spans_and_metrics_at_once() {
    let spans = Spans::default();
    let recorder = Recorded::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(spans.clone(), || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let store = Observed::new(MemoryStore::new());
                store.put("k", "v".into(), PutOptions::new()).await.unwrap();
                store.get("k").await.unwrap();
            });
        });
    });
    let all = spans.0.fields.lock().unwrap();
    let operations: Vec<&str> = {
        let mut ids: Vec<&u64> = all.keys().collect();
        ids.sort();
        ids.iter().map(|id| all[id]["operation"].as_str()).collect()
    };
    assert_eq!(operations, ["put", "get"]);
    let counters = recorder.counters.lock().unwrap();
    let get = &counters["kv_operations_total{backend=memory,operation=get,outcome=ok}"];
    assert_eq!(get.0.load(Ordering::SeqCst), 1);
}
