//! [`Traced`] and [`Metered`]: every operation seen in traces and in metrics.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use kv_core::{
    Capabilities, CounterOptions, Entry, KvStore, ListOptions, ListPage, PutItem, PutOptions,
    Result,
};
use tracing::Instrument;
use tracing::field::Empty;

/// The outcome label of a result: `ok`, or the error's kind.
fn outcome<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_retryable() => "transient_error",
        Err(_) => "error",
    }
}

/// A stable 64-bit FNV-1a hash of a key, so traces can correlate keys without holding them.
fn key_hash(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Runs every `KvStore` method of a wrapper through `$wrap(operation, key, future)`.
macro_rules! wrap_all {
    ($ty:ident, $wrap:ident) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: KvStore> KvStore for $ty<S> {
            fn capabilities(&self) -> &Capabilities {
                self.inner.capabilities()
            }
            async fn get(&self, key: &str) -> Result<Option<Bytes>> {
                self.$wrap("get", Some(key), self.inner.get(key)).await
            }
            async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
                self.$wrap(
                    "get_with_metadata",
                    Some(key),
                    self.inner.get_with_metadata(key),
                )
                .await
            }
            async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
                self.$wrap("put", Some(key), self.inner.put(key, value, options))
                    .await
            }
            async fn put_if_absent(
                &self,
                key: &str,
                value: Bytes,
                options: PutOptions,
            ) -> Result<bool> {
                let call = self.inner.put_if_absent(key, value, options);
                self.$wrap("put_if_absent", Some(key), call).await
            }
            async fn delete(&self, key: &str) -> Result<()> {
                self.$wrap("delete", Some(key), self.inner.delete(key))
                    .await
            }
            async fn list(&self, options: ListOptions) -> Result<ListPage> {
                self.$wrap("list", None, self.inner.list(options)).await
            }
            async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
                self.$wrap("get_many", None, self.inner.get_many(keys))
                    .await
            }
            async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
                self.$wrap("put_many", None, self.inner.put_many(items))
                    .await
            }
            async fn delete_many(&self, keys: &[String]) -> Result<()> {
                self.$wrap("delete_many", None, self.inner.delete_many(keys))
                    .await
            }
            async fn increment(
                &self,
                key: &str,
                delta: i64,
                options: CounterOptions,
            ) -> Result<i64> {
                let call = self.inner.increment(key, delta, options);
                self.$wrap("increment", Some(key), call).await
            }
        }
    };
}

/// Wraps every operation in a `tracing` span named `kv` (target `kv`, level DEBUG) with the
/// fields `backend`, `operation`, `outcome` (`ok`, `transient_error` or `error`), `latency_us`
/// and, on failure, `error`.
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
        operation: &'static str,
        key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
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
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.record("outcome", outcome(&result));
        span.record("latency_us", latency);
        if let Err(e) = &result {
            span.record("error", tracing::field::display(e));
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
}

impl<S: KvStore> Metered<S> {
    /// Measures every operation of `inner`.
    ///
    /// ```
    /// let store = kv_layers::Metered::new(kv_memory::MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self { inner }
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
        operation: &'static str,
        _key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        let labels = [
            ("backend", self.inner.capabilities().backend),
            ("operation", operation),
            ("outcome", outcome(&result)),
        ];
        metrics::counter!("kv_operations_total", &labels).increment(1);
        metrics::histogram!("kv_operation_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

wrap_all!(Metered, metered);
