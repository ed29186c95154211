//! [`Traced`] and [`Metered`]: every operation seen in traces and in metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use kvkit_core::{
    Capabilities, CounterOptions, Entry, KvStore, ListOptions, ListPage, PutItem, PutOptions,
    Result, Version,
};
use tracing::Span;
use tracing::field::Empty;

/// The key's stable hash, so traces can correlate keys without holding them.
fn key_hash(key: &str) -> String {
    format!("{:016x}", kvkit_core::backend::stable_hash(key))
}

/// The kind of an error, without the values (keys among them) its message quotes.
fn error_kind(error: &kvkit_core::Error) -> &'static str {
    use kvkit_core::Error as E;
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
        E::Configuration { .. } => "configuration",
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
    DeleteIfVersion,
    List,
    GetMany,
    PutMany,
    DeleteMany,
    Increment,
}

impl Op {
    const ALL: [Op; 11] = [
        Op::Get,
        Op::GetWithMetadata,
        Op::Put,
        Op::PutIfAbsent,
        Op::Delete,
        Op::DeleteIfVersion,
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
            Op::DeleteIfVersion => "delete_if_version",
            Op::List => "list",
            Op::GetMany => "get_many",
            Op::PutMany => "put_many",
            Op::DeleteMany => "delete_many",
            Op::Increment => "increment",
        }
    }
}

/// The outcome of a result, by its error's [`kind`](kvkit_core::Error::kind): an index into
/// [`OUTCOMES`].
fn outcome_index<T>(result: &Result<T>) -> usize {
    match result {
        Ok(_) => 0,
        Err(e) if e.kind().is_retryable() => 1,
        Err(_) => 2,
    }
}

/// The outcome labels.
const OUTCOMES: [&str; 3] = ["ok", "transient_error", "error"];

/// Runs every `KvStore` method of a wrapper through `$wrap(operation, key, future)`.
macro_rules! wrap_all {
    ($ty:ident, $wrap:ident) => {
        #[deny(clippy::missing_trait_methods)]
        #[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
        #[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
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
            async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
                let call = self.inner().delete_if_version(key, version);
                self.$wrap(Op::DeleteIfVersion, Some(key), call).await
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
            /// `None`: every increment is observed through `increment`.
            fn increment_now(&self, _: &str, _: i64, _: CounterOptions) -> Option<Result<i64>> {
                None
            }
        }
    };
}

/// The clock every operation is timed with.
#[cfg(not(target_arch = "wasm32"))]
mod clock {
    use std::sync::LazyLock;

    /// The TSC through `quanta` where it is invariant (a read costs a few nanoseconds), the
    /// monotonic system clock elsewhere. Calibrated once per process, at the first timed
    /// operation.
    static CLOCK: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);

    /// A raw reading.
    #[inline]
    pub(super) fn raw() -> u64 {
        CLOCK.raw()
    }

    /// Nanoseconds between two raw readings.
    #[inline]
    pub(super) fn nanos_between(start: u64, end: u64) -> u64 {
        CLOCK.delta_as_nanos(start, end)
    }
}

/// The clock every operation is timed with, inside a Worker: `Date.now()`, in milliseconds
/// (workerd's `performance` is not the browser's, which `quanta` expects, and both advance only
/// across I/O there, Cloudflare's defence against timing attacks).
#[cfg(target_arch = "wasm32")]
mod clock {
    use kvkit_core::Clock;

    /// A raw reading: nanoseconds since the epoch, at millisecond resolution.
    pub(super) fn raw() -> u64 {
        kvkit_core::backend::unix_ms(kvkit_core::SystemClock.now()).saturating_mul(1_000_000)
    }

    /// Nanoseconds between two raw readings.
    pub(super) fn nanos_between(start: u64, end: u64) -> u64 {
        end.saturating_sub(start)
    }
}

/// The span of one operation: enabled only if a subscriber takes DEBUG spans of target `kv`
/// (otherwise it costs a level comparison and nothing else).
#[inline]
fn operation_span(
    backend: &'static str,
    operation: Op,
    key: Option<&str>,
    hash_keys: bool,
) -> Span {
    let span = tracing::debug_span!(
        target: "kv",
        "kv",
        backend,
        operation = operation.name(),
        outcome = Empty,
        latency_us = Empty,
        key_hash = Empty,
        error = Empty,
        error_kind = Empty,
    );
    if let (false, true, Some(key)) = (span.is_disabled(), hash_keys, key) {
        span.record("key_hash", key_hash(key));
    }
    span
}

/// One counter and one histogram per outcome of an operation.
type Series = [(metrics::Counter, metrics::Histogram); 3];

/// The series of every operation.
type Handles = [Series; 11];

/// The metric handles of a store, registered at its first operation with the recorder in effect
/// then (the thread's local recorder, else the global one) and kept, so an operation costs no
/// key or label building, no allocation and no registry look-up.
#[derive(Debug, Clone, Default)]
struct Registered(OnceLock<Handles>);

impl Registered {
    #[inline]
    fn series(&self, backend: &'static str, operation: Op) -> &Series {
        let handles = self.0.get_or_init(|| {
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
        });
        &handles[operation as usize]
    }
}

/// An operation in flight: polls the store's call inside its span (if enabled) and, when it
/// completes, records the outcome and the latency, read from one pair of clock reads, into the
/// span and the metrics. Dropped before completion, it records nothing.
struct Observation<'a, F> {
    /// The store's call until it completes, then dropped inside the span (as `Instrument` does).
    call: Option<F>,
    span: Span,
    series: Option<&'a Series>,
    /// The raw clock reading at the start, if anything will use the latency.
    started: Option<u64>,
}

impl<'a, F> Observation<'a, F> {
    fn new(call: F, span: Span, series: Option<&'a Series>) -> Self {
        let timed = series.is_some() || !span.is_disabled();
        Self {
            call: Some(call),
            span,
            series,
            started: timed.then(clock::raw),
        }
    }
}

impl<T, F: Future<Output = Result<T>> + Unpin> Future for Observation<'_, F> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        let result = {
            let _entered = this.span.enter();
            let call = this.call.as_mut().expect("polled after completion");
            let result = ready!(Pin::new(call).poll(cx));
            this.call = None;
            result
        };
        let Some(started) = this.started else {
            return Poll::Ready(result);
        };
        let nanos = clock::nanos_between(started, clock::raw());
        let outcome = outcome_index(&result);
        if let Some(series) = this.series {
            let (counter, histogram) = &series[outcome];
            counter.increment(1);
            histogram.record(nanos as f64 / 1e9);
        }
        if !this.span.is_disabled() {
            this.span.record("outcome", OUTCOMES[outcome]);
            this.span.record("latency_us", nanos / 1_000);
            if let Err(e) = &result {
                // Only the variant and the kind of error are recorded, never its message.
                this.span.record("error", error_kind(e));
                this.span.record("error_kind", e.kind().as_str());
            }
        }
        Poll::Ready(result)
    }
}

impl<F> Drop for Observation<'_, F> {
    fn drop(&mut self) {
        if self.call.is_some() {
            let _entered = self.span.enter();
            self.call = None;
        }
    }
}

/// Wraps every operation in a `tracing` span named `kv` (target `kv`, level DEBUG) with the
/// fields `backend`, `operation`, `outcome` (`ok`, `transient_error` or `error`), `latency_us`
/// and, on failure, `error` (the variant, such as `key_too_long`) and `error_kind` (its
/// [`ErrorKind`](kvkit_core::ErrorKind), such as `invalid_input`); never the message.
///
/// Keys can hold user data (emails, session ids), so they are not recorded unless
/// [`Traced::hash_keys`] asks for a stable hash of each (`key_hash`). When no subscriber takes
/// the span, the operation is not timed: the span costs a level comparison.
///
/// ```
/// use kvkit_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_layers::Traced::new(kvkit_memory::MemoryStore::new()).hash_keys(true);
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
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_layers::Traced::new(kvkit_memory::MemoryStore::new());
    /// assert!(format!("{store:?}").contains("hash_keys: false"));
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
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
    /// let store = kvkit_layers::Traced::new(kvkit_memory::MemoryStore::new()).hash_keys(true);
    /// assert!(format!("{store:?}").contains("hash_keys: true"));
    /// ```
    pub fn hash_keys(mut self, hash: bool) -> Self {
        self.hash_keys = hash;
        self
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kvkit_layers::Traced::new(kvkit_memory::MemoryStore::new());
    /// let _inner: &kvkit_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn traced<F>(&self, operation: Op, key: Option<&str>, call: F) -> Observation<'_, F> {
        let backend = self.inner.capabilities().backend;
        let span = operation_span(backend, operation, key, self.hash_keys);
        Observation::new(call, span, None)
    }
}

wrap_all!(Traced, traced);

/// Counts every operation and measures its latency through the [`metrics`] facade, so any
/// recorder (Prometheus or otherwise) can export them:
///
/// - counter `kv_operations_total`, labels `backend`, `operation`, `outcome`;
/// - histogram `kv_operation_duration_seconds`, same labels.
///
/// The handles are registered at the store's first operation, with the recorder in effect then,
/// and kept (clones made after the first operation share them), so an operation costs two clock
/// reads and two updates through the handles. Building the store before installing the recorder
/// is fine; operating it before is not: install the recorder before the first operation.
///
/// ```
/// use kvkit_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_layers::Metered::new(kvkit_memory::MemoryStore::new());
/// store.get("k").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    handles: Registered,
}

impl<S: KvStore> Metered<S> {
    /// Measures every operation of `inner`.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_layers::Metered::new(kvkit_memory::MemoryStore::new());
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            handles: Registered::default(),
        }
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kvkit_layers::Metered::new(kvkit_memory::MemoryStore::new());
    /// let _inner: &kvkit_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn metered<F>(&self, operation: Op, _key: Option<&str>, call: F) -> Observation<'_, F> {
        let backend = self.inner.capabilities().backend;
        let series = self.handles.series(backend, operation);
        Observation::new(call, Span::none(), Some(series))
    }
}

wrap_all!(Metered, metered);

/// [`Traced`] and [`Metered`] in one layer: the same spans and the same metrics (registered as
/// [`Metered`]'s are), timed by one pair of clock reads, with one boxed future per operation
/// where stacking the two takes two.
///
/// ```
/// use kvkit_core::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_layers::Observed::new(kvkit_memory::MemoryStore::new()).hash_keys(true);
/// assert_eq!(store.get("k").await?, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    hash_keys: bool,
    handles: Registered,
}

impl<S: KvStore> Observed<S> {
    /// Traces and measures every operation of `inner`.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_layers::Observed::new(kvkit_memory::MemoryStore::new());
    /// assert!(format!("{store:?}").contains("hash_keys: false"));
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            hash_keys: false,
            handles: Registered::default(),
        }
    }

    /// Records a stable hash of single-key operations' keys, as [`Traced::hash_keys`].
    ///
    /// ```
    /// let store = kvkit_layers::Observed::new(kvkit_memory::MemoryStore::new()).hash_keys(true);
    /// assert!(format!("{store:?}").contains("hash_keys: true"));
    /// ```
    pub fn hash_keys(mut self, hash: bool) -> Self {
        self.hash_keys = hash;
        self
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kvkit_layers::Observed::new(kvkit_memory::MemoryStore::new());
    /// let _inner: &kvkit_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn observed<F>(&self, operation: Op, key: Option<&str>, call: F) -> Observation<'_, F> {
        let backend = self.inner.capabilities().backend;
        let span = operation_span(backend, operation, key, self.hash_keys);
        let series = self.handles.series(backend, operation);
        Observation::new(call, span, Some(series))
    }
}

wrap_all!(Observed, observed);
