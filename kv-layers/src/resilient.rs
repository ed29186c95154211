//! [`Resilient`]: a time limit on every call, and retries of transient failures.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use kvkit_core::{
    Capabilities, CounterOptions, Entry, Error, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result, Version, WriteCondition,
};

/// How [`Resilient`] retries.
///
/// ```
/// use std::time::Duration;
/// let policy = kvkit_layers::RetryPolicy::new()
///     .max_attempts(5)
///     .backoff(Duration::from_millis(20), Duration::from_secs(1))
///     .budget(Duration::from_secs(3));
/// assert_eq!(policy.max_attempts, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The first backoff; each retry doubles it, up to `max_delay`, then takes a random part of
    /// it ("full jitter") so that many clients do not retry in step.
    pub base_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub budget: Duration,
    /// Whether operations that are not idempotent ([`KvStore::increment`] and
    /// [`KvStore::put_if_absent`]) are retried too. A retried increment whose first attempt
    /// reached the server but lost its reply counts twice; a retried put-if-absent can report
    /// `false` for its own earlier write. Off by default.
    pub retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(500),
            budget: Duration::from_secs(2),
            retry_non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// 3 attempts, backoff from 25 ms to 500 ms, a 2 s budget, non-idempotent calls not retried.
    ///
    /// ```
    /// assert!(!kvkit_layers::RetryPolicy::new().retry_non_idempotent);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of attempts (at least 1).
    ///
    /// ```
    /// assert_eq!(kvkit_layers::RetryPolicy::new().max_attempts(0).max_attempts, 1);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first and the largest backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = kvkit_layers::RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(8));
    /// assert_eq!(p.max_delay, Duration::from_millis(8));
    /// ```
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    /// Sets the time after which no retry starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(kvkit_layers::RetryPolicy::new().budget(Duration::ZERO).budget, Duration::ZERO);
    /// ```
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Also retries increments and put-if-absent (see the field's caveat).
    ///
    /// ```
    /// assert!(kvkit_layers::RetryPolicy::new().retry_non_idempotent(true).retry_non_idempotent);
    /// ```
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// The backoff before retry number `retry` (1 for the first), with full jitter.
    fn delay(&self, retry: u32, random: u64) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        let nanos = u64::try_from(exponential.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.saturating_add(1))
    }
}

/// Bounds every call by a timeout and retries retryable failures
/// ([`Error::is_retryable`]) with jittered exponential backoff within a budget.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::KvStore;
/// use kvkit_layers::{Resilient, RetryPolicy};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = Resilient::new(kvkit_memory::MemoryStore::new())
///     .timeout(Duration::from_millis(200))
///     .retry(RetryPolicy::new().max_attempts(4));
/// assert_eq!(store.get("k").await?, None);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Resilient<S> {
    inner: S,
    timeout: Option<Duration>,
    policy: RetryPolicy,
    seed: AtomicU64,
}

impl<S: KvStore> Resilient<S> {
    /// No timeout and the default [`RetryPolicy`] until configured.
    ///
    /// ```
    /// let store = kvkit_layers::Resilient::new(kvkit_memory::MemoryStore::new());
    /// let shown = format!("{store:?}");
    /// assert!(shown.contains("timeout: None"), "{shown}");
    /// assert!(shown.contains(&format!("{:?}", kvkit_layers::RetryPolicy::new())), "{shown}");
    /// ```
    pub fn new(inner: S) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.subsec_nanos().into());
        Self {
            inner,
            timeout: None,
            policy: RetryPolicy::default(),
            seed: AtomicU64::new(seed | 1),
        }
    }

    /// Fails any attempt that takes longer than `timeout` with a retryable [`Error::Timeout`].
    ///
    /// ```
    /// let store = kvkit_layers::Resilient::new(kvkit_memory::MemoryStore::new())
    ///     .timeout(std::time::Duration::from_secs(1));
    /// assert!(format!("{store:?}").contains("timeout: Some(1s)"));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how failures are retried.
    ///
    /// ```
    /// let store = kvkit_layers::Resilient::new(kvkit_memory::MemoryStore::new())
    ///     .retry(kvkit_layers::RetryPolicy::new().max_attempts(1));
    /// assert!(format!("{store:?}").contains("max_attempts: 1"));
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kvkit_layers::Resilient::new(kvkit_memory::MemoryStore::new());
    /// let _inner: &kvkit_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn random(&self) -> u64 {
        // xorshift64*: enough to spread retries; shared state races only make it more random.
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    async fn attempt<T, F>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        match self.timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
                Err(Error::Timeout {
                    backend: self.inner.capabilities().backend,
                    operation,
                    after,
                })
            }),
        }
    }

    async fn run<T, F, Fut>(&self, operation: &'static str, idempotent: bool, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let retries = idempotent || self.policy.retry_non_idempotent;
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.attempt(operation, call()).await {
                Err(e)
                    if retries
                        && e.is_retryable()
                        && attempt < self.policy.max_attempts
                        && started.elapsed() < self.policy.budget =>
                {
                    let mut delay = self.policy.delay(attempt, self.random());
                    if let Error::RateLimited {
                        retry_after: Some(after),
                        ..
                    } = e
                    {
                        delay = delay.max(after);
                    }
                    let left = self.policy.budget.saturating_sub(started.elapsed());
                    if delay >= left {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl<S: KvStore> KvStore for Resilient<S> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.run("get", true, || self.inner.get(key)).await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.run("get_with_metadata", true, || {
            self.inner.get_with_metadata(key)
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        // A conditional put retried after an attempt that timed out but applied would fail its
        // own condition: only an unconditional put is idempotent.
        let idempotent = options.condition == WriteCondition::Always;
        self.run("put", idempotent, || {
            self.inner.put(key, value.clone(), options.clone())
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.run("put_if_absent", false, || {
            self.inner
                .put_if_absent(key, value.clone(), options.clone())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run("delete", true, || self.inner.delete(key)).await
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.run("delete_if_version", false, || {
            self.inner.delete_if_version(key, version)
        })
        .await
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.run("list", true, || self.inner.list(options.clone()))
            .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.run("get_many", true, || self.inner.get_many(keys))
            .await
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        self.run("put_many", true, || self.inner.put_many(items.clone()))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.run("delete_many", true, || self.inner.delete_many(keys))
            .await
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.run("increment", false, || {
            self.inner.increment(key, delta, options)
        })
        .await
    }

    /// `None`: increments go through the timeout and retry policy.
    fn increment_now(&self, _: &str, _: i64, _: CounterOptions) -> Option<Result<i64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_without_overflow() {
        let policy =
            RetryPolicy::new().backoff(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(
            policy.delay(1, u64::MAX),
            Duration::from_nanos(u64::MAX % 10_000_001)
        );
        assert!(policy.delay(3, u64::MAX - 1) <= Duration::from_millis(40));
        assert!(policy.delay(40, 12345) <= Duration::from_millis(100));
        assert_eq!(policy.delay(2, 0), Duration::ZERO);
    }
}
