//! The Cloudflare Workers KV backend of `kvkit`: the whole [`KvStore`] contract over Cloudflare's
//! REST API (v4), so a Rust service reads and writes the same namespace as its Workers.
//!
//! ```no_run
//! use kvkit_core::{KvStore, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! // Account, namespace and token from CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_KV_NAMESPACE_ID and
//! // CLOUDFLARE_API_TOKEN, or set on the builder.
//! let store = kvkit_cloudflare::CloudflareStore::builder()
//!     .namespace_id("0f2ac74b498b48028cb68387c421e279")
//!     .build()?;
//! store.put("user:1", "Ada".into(), PutOptions::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # How the contract maps onto the API
//!
//! | operation | REST call(s) |
//! |---|---|
//! | `get` | `GET values/{key}`: raw bytes; 404 with code 10009 is `None` |
//! | `get_with_metadata` | `POST bulk/get` with `withMetadata` (value, metadata and expiration in one read); a value that is not UTF-8 is then read exactly with `GET values/{key}`; if Cloudflare refuses the bulk read (400), `GET values/{key}` and `GET metadata/{key}` |
//! | `put` | `PUT values/{key}`: the raw bytes, or multipart (`value` and `metadata` parts) when there is metadata; the expiry as the `expiration` / `expiration_ttl` query parameter |
//! | `delete` | `DELETE values/{key}` |
//! | `list` | `GET keys?prefix=&limit=&cursor=`: Cloudflare's cursor from `result_info` (empty means last page) inside ours |
//! | `get_many` | one `POST bulk/get` for up to 100 keys (values that are not UTF-8 re-read one by one; every key read alone if Cloudflare refuses the bulk read with a 400) |
//! | `put_many` / `delete_many` | `PUT bulk` / `POST bulk/delete`, 1,000 items a request by default (at most 10,000 and under 100 MB); `unsuccessful_keys` retried, then reported |
//! | `increment`, `put_if_absent` | a read, then a write: see below |
//!
//! Keys are percent-encoded in paths (every byte outside `A-Z a-z 0-9 - . _ ~`, so `/` is `%2F`),
//! and prefixes and cursors in query strings. Cloudflare's limits ([`Capabilities::cloudflare`]:
//! keys of 1 to 512 bytes other than `.` and `..`, values up to 25 MiB, metadata up to 1024 bytes
//! of JSON, TTLs of at least 60 s, absolute expirations at least 60 s away and, since workerd
//! takes expirations as 32-bit seconds, no later than [`MAX_EXPIRATION_SECS`] (2038-01-19)) are
//! checked before any request, with the same typed [`Error`]s as every other backend.
//!
//! Cloudflare counts `expiration_ttl` from its clock's current whole second, which would end a key
//! up to a second early. So a TTL is sent as `expiration_ttl` plus the part of the current second
//! already gone (rounded up to one second): the key lives at least its TTL, and its expiration is
//! reported as write time + TTL rounded up to a second, as the contract says.
//!
//! # Trade-offs
//!
//! - **Best-effort counter and put-if-absent.** KV has no atomic operation, so
//!   [`increment`](KvStore::increment) reads the counter and writes the sum, and
//!   [`put_if_absent`](KvStore::put_if_absent) checks for the key (`GET metadata/{key}`) and then
//!   writes it. Concurrent increments of one counter can be lost, and several concurrent
//!   put-if-absent calls can all win; [`Capabilities::atomic_counter`] and
//!   [`Capabilities::atomic_put_if_absent`] say `false`. Route such writes through one Worker with
//!   a Durable Object when they must be exact. An increment keeps the counter's metadata and
//!   expiration, except that Cloudflare refuses expirations under 60 s away: an increment in the
//!   last minute of a counter's life moves its expiry to 60 s from now.
//! - **Eventual consistency.** A write is visible at once where it was made, but other
//!   Cloudflare locations (and so other clients) can read the old value, or a cached "not found",
//!   for 60 s or more; listings lag the same way. [`Capabilities::consistency`] is
//!   [`Consistency::Eventual`](kvkit_core::Consistency::Eventual).
//! - **Metadata passes through JavaScript.** JSON `null` metadata is no metadata (it reads back
//!   as `None`), and numbers are IEEE doubles, so integers beyond ±2⁵³ change
//!   ([`Capabilities::exact_metadata`] is `false`).
//! - **Batch reads are text.** `bulk/get` returns values as text, so a value that is not valid
//!   UTF-8 comes back with replacement characters; every value holding U+FFFD is then read again
//!   exactly, alone (for `get_with_metadata`, a write between the two reads can pair the new
//!   value with the old metadata). A value starting with a UTF-8 byte-order mark loses it in
//!   `get_many`.
//! - **REST is an admin path, not a hot path.** Every call is an HTTPS round trip to Cloudflare's
//!   API (tens of milliseconds), and the API allows 1,200 requests per 5 minutes per token across
//!   all of Cloudflare's API, after which every call gets HTTP 429 for five minutes; a key takes
//!   at most one write a second. Use the batch operations: 10,000 writes cost 10 requests, a
//!   100-key read one. [`CloudflareStore::request_count`] counts the requests really sent.
//!
//! # Failures
//!
//! A 429 is retried after its `retry-after`; a 5xx, a timeout or a lost connection is retried
//! with jittered exponential backoff, both within the [`RetryPolicy`]. What remains is a typed
//! error: [`Error::RateLimited`], [`Error::Timeout`], or a retryable [`Error::Backend`]. A 401 or
//! 403 is [`Error::PermissionDenied`] with Cloudflare's error code and message. Other failures
//! are [`Error::Backend`] whose `source` is an [`ApiError`] carrying the status and Cloudflare's
//! error codes. The API token never appears in `Debug` output, logs or errors.
//!
//! # Testing without Cloudflare
//!
//! `kv-cloudflare/emulator/` serves this REST API from a Worker running in workerd (Cloudflare's
//! runtime, through Miniflare) on a real KV binding, so limits, expiry, ordering and cursors are
//! Cloudflare's own. The tests start it on a free loopback port; point
//! [`CloudflareBuilder::base_url`] at it (see `kvkit_test_servers::CfEmulator`).

mod bulk;
mod client;
mod entry;
mod expiry;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, KeyInfo, KvStore, ListOptions, ListPage,
    PutItem, PutOptions, Result, SystemClock, Version,
};
use reqwest::header::HeaderValue;

use client::Http;
pub use client::{ApiError, UnappliedKeys};
use expiry::{counter_expiry, expiry_param};
use wire::{ListState, ListedKey, encode_component};

const BACKEND: &str = "cloudflare";
/// Cloudflare's API, where production requests go.
///
/// ```
/// let store = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("a").namespace_id("n").api_token("t").build()?;
/// assert!(store.value_url("k").starts_with(kvkit_cloudflare::DEFAULT_BASE_URL));
/// # Ok::<(), kvkit_core::Error>(())
/// ```
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The most items one bulk write or delete may carry, the most [`CloudflareBuilder::bulk_batch`]
/// accepts.
///
/// ```
/// let builder = kvkit_cloudflare::CloudflareStore::builder().bulk_batch(kvkit_cloudflare::MAX_BULK_ITEMS);
/// # let _ = builder;
/// ```
pub const MAX_BULK_ITEMS: usize = 10_000;
/// The smallest page the REST listing accepts.
const MIN_REST_LIST_LIMIT: usize = 10;
/// The latest expiration Cloudflare's runtime takes: it stores them as 32-bit seconds
/// (2038-01-19T03:14:07Z). Later ones fail with [`Error::ExpiryTooFar`] before any request.
///
/// ```
/// use kvkit_core::KvStore;
/// let store = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("a").namespace_id("n").api_token("t").build()?;
/// assert_eq!(store.capabilities().max_expiration_secs, kvkit_cloudflare::MAX_EXPIRATION_SECS);
/// # Ok::<(), kvkit_core::Error>(())
/// ```
pub const MAX_EXPIRATION_SECS: u64 = kvkit_core::CLOUDFLARE_MAX_EXPIRATION_SECS;

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
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
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
    /// # let _ = policy;
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
    /// # let _ = policy;
    /// ```
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The backoff before the first retry; it doubles for each later one.
    ///
    /// ```
    /// let policy = kvkit_cloudflare::RetryPolicy::new().initial_backoff(std::time::Duration::from_millis(50));
    /// # let _ = policy;
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
    /// # let _ = policy;
    /// ```
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The wait before retry number `attempt + 1`: half the exponential step plus a random part
    /// of the other half, so clients that failed together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Configures a [`CloudflareStore`]. Unset ids and token come from the environment:
/// `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_KV_NAMESPACE_ID` and `CLOUDFLARE_API_TOKEN`.
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
    /// Reads the ids and the token from the environment (when set there); everything else at
    /// its default.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareBuilder::new();
    /// # let _ = builder;
    /// ```
    pub fn new() -> Self {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Self {
            account_id: env("CLOUDFLARE_ACCOUNT_ID"),
            namespace_id: env("CLOUDFLARE_KV_NAMESPACE_ID"),
            api_token: env("CLOUDFLARE_API_TOKEN"),
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::new(),
            bulk_batch: 1000,
        }
    }

    /// The account that owns the namespace.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().account_id("023e105f4ecef8ad9ca31a8372d0c353");
    /// # let _ = builder;
    /// ```
    pub fn account_id(mut self, id: impl Into<String>) -> Self {
        self.account_id = Some(id.into());
        self
    }

    /// The KV namespace's id (not its title).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().namespace_id("0f2ac74b498b48028cb68387c421e279");
    /// # let _ = builder;
    /// ```
    pub fn namespace_id(mut self, id: impl Into<String>) -> Self {
        self.namespace_id = Some(id.into());
        self
    }

    /// An API token with the "Workers KV Storage" read (and, for writes, write) permission,
    /// sent as `Authorization: Bearer …`.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().api_token("token");
    /// # let _ = builder;
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
    /// # let _ = builder;
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
    /// # let _ = builder;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take (default 5 s).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().connect_timeout(std::time::Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed requests are retried (default [`RetryPolicy::new`]).
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder().retry(kvkit_cloudflare::RetryPolicy::none());
    /// # let _ = builder;
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
    /// # let _ = builder;
    /// ```
    pub fn bulk_batch(mut self, items: usize) -> Self {
        self.bulk_batch = items.clamp(1, MAX_BULK_ITEMS);
        self
    }

    /// Builds the store. Fails when the account id, namespace id or token is missing (from
    /// both the builder and the environment), or when the token cannot be sent in a header.
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
                    "no {what}: set {env} or call CloudflareBuilder::{}",
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

struct Inner {
    http: Http,
    /// `{base}/accounts/{account}/storage/kv/namespaces/{namespace}`.
    namespace_url: String,
    caps: Capabilities,
    bulk_batch: usize,
}

/// A [`KvStore`] on a Cloudflare Workers KV namespace, over the REST API. Cheap to clone: clones
/// share the HTTP connection pool and the request counter.
///
/// ```
/// let store = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("acct").namespace_id("ns").api_token("secret-token")
///     .build()?;
/// assert!(!format!("{store:?}").contains("secret-token"));
/// assert_eq!(store.request_count(), 0);
/// # Ok::<(), kvkit_core::Error>(())
/// ```
#[derive(Clone)]
pub struct CloudflareStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for CloudflareStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareStore")
            .field("namespace_url", &self.inner.namespace_url)
            .field("timeout", &self.inner.http.timeout)
            .field("retry", &self.inner.http.retry)
            .field("bulk_batch", &self.inner.bulk_batch)
            .finish_non_exhaustive()
    }
}

impl CloudflareStore {
    /// A builder, with the ids and token from the environment when set there.
    ///
    /// ```
    /// let builder = kvkit_cloudflare::CloudflareStore::builder();
    /// # let _ = builder;
    /// ```
    pub fn builder() -> CloudflareBuilder {
        CloudflareBuilder::new()
    }

    /// What this backend allows and guarantees: Cloudflare's limits, eventual consistency, a
    /// best-effort counter and put-if-absent, metadata through JavaScript's JSON.
    fn capabilities_of() -> Capabilities {
        Capabilities::cloudflare(BACKEND)
            .with_consistency(kvkit_core::Consistency::Eventual)
            .with_atomic(false, false)
            .with_conditional_writes(false)
            .with_exact_metadata(false)
    }

    /// How many HTTP requests this store (and its clones) has sent, retries included.
    ///
    /// ```
    /// let store = kvkit_cloudflare::CloudflareStore::builder()
    ///     .account_id("a").namespace_id("n").api_token("t").build()?;
    /// assert_eq!(store.request_count(), 0);
    /// # Ok::<(), kvkit_core::Error>(())
    /// ```
    pub fn request_count(&self) -> u64 {
        self.inner.http.requests.load(Ordering::Relaxed)
    }

    /// The HTTP client the store sends with, to send other API calls over the same connections.
    ///
    /// ```
    /// let store = kvkit_cloudflare::CloudflareStore::builder()
    ///     .account_id("a").namespace_id("n").api_token("t").build()?;
    /// let client: &reqwest::Client = store.http_client();
    /// # let _ = client;
    /// # Ok::<(), kvkit_core::Error>(())
    /// ```
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http.client
    }

    /// The URL of `key`'s value, as `get` and `put` use it: the key percent-encoded.
    ///
    /// ```
    /// let store = kvkit_cloudflare::CloudflareStore::builder()
    ///     .base_url("http://127.0.0.1:1/client/v4")
    ///     .account_id("a").namespace_id("n").api_token("t").build()?;
    /// assert_eq!(
    ///     store.value_url("a/b c"),
    ///     "http://127.0.0.1:1/client/v4/accounts/a/storage/kv/namespaces/n/values/a%2Fb%20c"
    /// );
    /// # Ok::<(), kvkit_core::Error>(())
    /// ```
    pub fn value_url(&self, key: &str) -> String {
        format!(
            "{}/values/{}",
            self.inner.namespace_url,
            encode_component(key)
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.inner.namespace_url)
    }

    fn http(&self) -> &Http {
        &self.inner.http
    }
}

#[async_trait::async_trait]
impl KvStore for CloudflareStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.caps.check_key(key)?;
        Ok(self.get_value(key).await?.map(|(value, _)| value))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        self.read_entry(key).await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let w = self.check_write(key.to_owned(), value, &options)?;
        self.put_checked(w).await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let w = self.check_write(key.to_owned(), value, &options)?;
        let url = self.url(&format!("metadata/{}", encode_component(key)));
        let client = &self.inner.http.client;
        let response = self
            .http()
            .send("put_if_absent", true, || client.get(&url))
            .await?;
        if response.status() != reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.http()
            .is_key_not_found("put_if_absent", response)
            .await?;
        self.put_checked(w).await?;
        Ok(true)
    }

    async fn delete_if_version(&self, key: &str, _version: &Version) -> Result<()> {
        self.inner.caps.check_key(key)?;
        // Workers KV has no conditional operations: refused, never applied on a best-effort basis.
        Err(Error::Unsupported {
            backend: BACKEND,
            operation: "conditional writes",
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.caps.check_key(key)?;
        let url = self.value_url(key);
        let client = &self.inner.http.client;
        let response = self
            .http()
            .send("delete", true, || client.delete(&url))
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            self.http().is_key_not_found("delete", response).await?;
        }
        Ok(())
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.inner.caps.check_list(&options)?;
        let prefix = options.prefix.as_str();
        let state = match &options.cursor {
            Some(raw) => ListState::decode(raw, prefix)?,
            None => ListState {
                prefix_hash: kvkit_core::stable_hash(prefix),
                cf_cursor: None,
                after: None,
            },
        };
        // The API pages at least 10 keys; a smaller page is cut from a larger one.
        let mut url = format!(
            "{}?limit={}",
            self.url("keys"),
            limit.max(MIN_REST_LIST_LIMIT)
        );
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", encode_component(prefix)));
        }
        if let Some(cf) = &state.cf_cursor {
            url.push_str(&format!("&cursor={}", encode_component(cf)));
        }
        let client = &self.inner.http.client;
        let envelope = self
            .http()
            .json::<Vec<ListedKey>>("list", || client.get(&url))
            .await?;
        let next_cf = envelope
            .result_info
            .and_then(|info| info.cursor)
            .filter(|c| !c.is_empty());
        let mut keys: Vec<KeyInfo> = envelope
            .result
            .unwrap_or_default()
            .into_iter()
            .filter(|k| state.after.as_ref().is_none_or(|after| k.name > *after))
            .map(|k| {
                KeyInfo::new(
                    k.name,
                    wire::expiration_secs(k.expiration),
                    wire::metadata_of(k.metadata),
                )
            })
            .collect();
        let next = if keys.len() > limit {
            // More keys of this API page remain: continue inside it, after our last key.
            keys.truncate(limit);
            Some(ListState {
                after: keys.last().map(|k| k.name.clone()),
                ..state
            })
        } else {
            next_cf.map(|cf| ListState {
                prefix_hash: state.prefix_hash,
                cf_cursor: Some(cf),
                after: None,
            })
        };
        Ok(ListPage::new(keys, next.map(|s| s.encode())))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.get_many_in_bulk(keys).await
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        self.put_many_in_bulk(items).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.delete_many_in_bulk(keys).await
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        let caps = &self.inner.caps;
        caps.check_key(key)?;
        let expiry = caps.check_expiry(options.expiry_on_create, SystemClock.now_ms())?;
        let Some(entry) = self.read_entry(key).await? else {
            let expiry = expiry_param(expiry, SystemClock.now_ms());
            self.send_put(key, Bytes::from(delta.to_string()), None, expiry)
                .await?;
            return Ok(delta);
        };
        let next = kvkit_core::add_to_counter(key, &entry.value, delta)?;
        let metadata = entry.metadata.map(|m| m.to_string());
        let now_ms = SystemClock.now_ms();
        let expiry = entry.expiration.map(|at| counter_expiry(at, now_ms));
        self.send_put(
            key,
            Bytes::from(next.to_string()),
            metadata.as_deref(),
            expiry,
        )
        .await?;
        Ok(next)
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
