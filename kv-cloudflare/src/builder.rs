//! Configuring a store: the account, namespace, token and API URL ([`CloudflareBuilder`]), the
//! timeouts, the bulk batch size, and how failed calls are retried ([`RetryPolicy`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kvkit_core::{Error, Result};
use reqwest::header::HeaderValue;

use crate::client::Http;
use crate::store::{CloudflareStore, Inner};
use crate::wire::encode_component;
use crate::{BACKEND, DEFAULT_BASE_URL, MAX_BULK_ITEMS};

/// How failed calls are retried: 429s after their `retry-after`, 5xx answers, timeouts and lost
/// connections after a jittered exponential backoff.
///
/// ```
/// use std::time::Duration;
/// let policy = kvkit_cloudflare::RetryPolicy::new()
///     .max_retries(5)
///     .initial_backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(2));
/// let store = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("a").namespace_id("n").api_token("t")
///     .retry(policy)
///     .build()?;
/// assert!(format!("{store:?}").contains("max_retries: 5"));
/// # Ok::<(), kvkit_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_retries: u32,
    initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// Three retries, backoff from 200 ms doubling up to 10 s; a `retry-after` over 10 s is
    /// not waited for.
    ///
    /// ```
    /// let policy = kvkit_cloudflare::RetryPolicy::new();
    /// assert_eq!(policy, kvkit_cloudflare::RetryPolicy::default());
    /// assert_eq!(format!("{policy:?}"),
    ///     "RetryPolicy { max_retries: 3, initial_backoff: 200ms, max_backoff: 10s }");
    /// ```
    pub fn new() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// No retries: every failure is returned at once.
    ///
    /// ```
    /// assert_eq!(kvkit_cloudflare::RetryPolicy::none(), kvkit_cloudflare::RetryPolicy::new().max_retries(0));
    /// ```
    pub fn none() -> Self {
        Self::new().max_retries(0)
    }

    /// How many times one call is retried after its first try.
    ///
    /// ```
    /// let policy = kvkit_cloudflare::RetryPolicy::new().max_retries(1);
    /// assert!(format!("{policy:?}").contains("max_retries: 1"));
    /// ```
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The backoff before the first retry; it doubles for each later one.
    ///
    /// ```
    /// let policy = kvkit_cloudflare::RetryPolicy::new().initial_backoff(std::time::Duration::from_millis(50));
    /// assert!(format!("{policy:?}").contains("initial_backoff: 50ms"));
    /// ```
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// The longest backoff, and the longest `retry-after` waited for (a longer one is returned
    /// as [`Error::RateLimited`] at once).
    ///
    /// ```
    /// let policy = kvkit_cloudflare::RetryPolicy::new().max_backoff(std::time::Duration::from_secs(1));
    /// assert!(format!("{policy:?}").contains("max_backoff: 1s"));
    /// ```
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The wait before retry number `attempt + 1`: half the exponential step plus a random part
    /// of the other half, so clients that failed together do not retry together.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Configures a [`CloudflareStore`]. [`new`](Self::new) (and [`CloudflareStore::builder`])
/// start from nothing but defaults; [`from_env`](Self::from_env) takes the ids and the token
/// from `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_KV_NAMESPACE_ID` and `CLOUDFLARE_API_TOKEN`, so
/// what a program reads from its environment is its own explicit choice.
///
/// ```
/// use std::time::Duration;
/// let builder = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("023e105f4ecef8ad9ca31a8372d0c353")
///     .namespace_id("0f2ac74b498b48028cb68387c421e279")
///     .api_token("secret-token")
///     .timeout(Duration::from_secs(5));
/// assert!(!format!("{builder:?}").contains("secret-token"));
/// ```
#[derive(Clone)]
pub struct CloudflareBuilder {
    account_id: Option<String>,
    namespace_id: Option<String>,
    api_token: Option<String>,
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    bulk_batch: usize,
}

impl fmt::Debug for CloudflareBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareBuilder")
            .field("account_id", &self.account_id)
            .field("namespace_id", &self.namespace_id)
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("bulk_batch", &self.bulk_batch)
            .finish()
    }
}

impl Default for CloudflareBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CloudflareBuilder {
    /// No ids and no token (set them, or use [`from_env`](Self::from_env)); everything else at
    /// its default. The environment is not read.
    ///
    /// ```
    /// let err = kvkit_cloudflare::CloudflareBuilder::new().build().unwrap_err();
    /// assert_eq!(err.kind(), kvkit_core::ErrorKind::Configuration);
    /// assert!(err.to_string().contains("account_id"), "{err}");
    /// ```
    pub fn new() -> Self {
        Self {
            account_id: None,
            namespace_id: None,
            api_token: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::new(),
            bulk_batch: 1000,
        }
    }

    /// The ids and the token from `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_KV_NAMESPACE_ID` and
    /// `CLOUDFLARE_API_TOKEN` where they are set and not empty; everything else at its default.
    /// Setters called afterwards override them.
    ///
    /// ```no_run
    /// // With the three variables set:
    /// let store = kvkit_cloudflare::CloudflareBuilder::from_env().build()?;
    /// # Ok::<(), kvkit_core::Error>(())
    /// ```
    pub fn from_env() -> Self {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Self {
            account_id: env("CLOUDFLARE_ACCOUNT_ID"),
            namespace_id: env("CLOUDFLARE_KV_NAMESPACE_ID"),
            api_token: env("CLOUDFLARE_API_TOKEN"),
            ..Self::new()
        }
    }

    /// The account that owns the namespace.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().account_id("023e105f4ecef8ad9ca31a8372d0c353");
    /// assert!(format!("{builder:?}").contains(r#"account_id: Some("023e105f4ecef8ad9ca31a8372d0c353")"#));
    /// ```
    pub fn account_id(mut self, id: impl Into<String>) -> Self {
        self.account_id = Some(id.into());
        self
    }

    /// The KV namespace's id (not its title).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().namespace_id("0f2ac74b498b48028cb68387c421e279");
    /// assert!(format!("{builder:?}").contains(r#"namespace_id: Some("0f2ac74b498b48028cb68387c421e279")"#));
    /// ```
    pub fn namespace_id(mut self, id: impl Into<String>) -> Self {
        self.namespace_id = Some(id.into());
        self
    }

    /// An API token with the "Workers KV Storage" read (and, for writes, write) permission,
    /// sent as `Authorization: Bearer …`.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().api_token("s3cr3t");
    /// let shown = format!("{builder:?}");
    /// assert!(shown.contains(r#"api_token: Some("***")"#) && !shown.contains("s3cr3t"));
    /// ```
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// The API's base URL (default [`DEFAULT_BASE_URL`]): requests go to
    /// `{base_url}/accounts/{account}/storage/kv/namespaces/{namespace}/…`. Point it at the
    /// emulator, or at a proxy.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().base_url("http://127.0.0.1:8787/client/v4");
    /// assert!(format!("{builder:?}").contains(r#"base_url: "http://127.0.0.1:8787/client/v4""#));
    /// ```
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The longest one HTTP request may take, body included (default 30 s); a request that
    /// takes longer is retried, then reported as [`Error::Timeout`].
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().timeout(std::time::Duration::from_secs(5));
    /// assert!(format!("{builder:?}").contains("timeout: 5s"));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take (default 5 s).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().connect_timeout(std::time::Duration::from_secs(1));
    /// assert!(format!("{builder:?}").contains("connect_timeout: 1s"));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed requests are retried (default [`RetryPolicy::new`]).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().retry(kvkit_cloudflare::RetryPolicy::none());
    /// assert!(format!("{builder:?}").contains("max_retries: 0"));
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Items per bulk write or delete request (default 1,000, as wrangler sends: 10,000-item
    /// requests have timed out at Cloudflare; clamped to 1..=10,000). Requests also stay under
    /// 100 MB whatever this says.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().bulk_batch(10_000);
    /// assert!(format!("{builder:?}").contains("bulk_batch: 10000"));
    /// let clamped = kvkit_cloudflare::CloudflareStore::builder().bulk_batch(50_000);
    /// assert!(format!("{clamped:?}").contains("bulk_batch: 10000"));
    /// ```
    pub fn bulk_batch(mut self, items: usize) -> Self {
        self.bulk_batch = items.clamp(1, MAX_BULK_ITEMS);
        self
    }

    /// Builds the store. Fails with a configuration error when the account id, namespace id or
    /// token is missing, or when the token cannot be sent in a header.
    /// Nothing is sent: the first call is the first request.
    ///
    /// ```
    /// let err = kvkit_cloudflare::CloudflareStore::builder()
    ///     .account_id("a").namespace_id("n").api_token("bad\ntoken")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(!err.to_string().contains("bad"));
    /// ```
    pub fn build(self) -> Result<CloudflareStore> {
        let missing = |what: &str, env: &str| {
            Error::configuration(
                BACKEND,
                format!(
                    "no {what}: call CloudflareBuilder::{}, or set {env} and start from \
                     CloudflareBuilder::from_env",
                    what.replace(' ', "_")
                ),
            )
        };
        let account = self
            .account_id
            .ok_or_else(|| missing("account id", "CLOUDFLARE_ACCOUNT_ID"))?;
        let namespace = self
            .namespace_id
            .ok_or_else(|| missing("namespace id", "CLOUDFLARE_KV_NAMESPACE_ID"))?;
        let token = self
            .api_token
            .ok_or_else(|| missing("api token", "CLOUDFLARE_API_TOKEN"))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Error::configuration(
                BACKEND,
                "the API token holds characters that cannot be sent in a header",
            )
        })?;
        auth.set_sensitive(true);
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("kv-cloudflare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::backend(BACKEND, "could not build the HTTP client", false, e))?;
        let namespace_url = format!(
            "{}/accounts/{}/storage/kv/namespaces/{}",
            self.base_url,
            encode_component(&account),
            encode_component(&namespace)
        );
        Ok(CloudflareStore {
            inner: Arc::new(Inner {
                http: Http {
                    client,
                    auth,
                    retry: self.retry,
                    timeout: self.timeout,
                    requests: AtomicU64::new(0),
                },
                namespace_url,
                caps: CloudflareStore::capabilities_of(),
                bulk_batch: self.bulk_batch,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        let policy = RetryPolicy::new()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        for attempt in 0..40 {
            let d = policy.backoff(attempt);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
        let first = policy.backoff(0);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
    }
}
