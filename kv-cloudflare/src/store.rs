//! The store: [`CloudflareStore`], what its clones share, and its [`KvStore`] implementation,
//! which sends single-key operations and listings itself and hands batches to `bulk`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, KeyInfo, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result, SystemClock, Version,
};

use crate::BACKEND;
use crate::builder::CloudflareBuilder;
use crate::client::Http;
use kvkit_core::backend::add_to_counter;
use kvkit_core::backend::cloudflare::{ListCursor, counter_expiry, refuse_conditional_delete};

use crate::expiry::expiry_param;
use crate::wire::{self, ListedKey, encode_component};

/// The smallest page the REST listing accepts.
const MIN_REST_LIST_LIMIT: usize = 10;

/// What clones of a store share.
pub(crate) struct Inner {
    pub(crate) http: Http,
    /// `{base}/accounts/{account}/storage/kv/namespaces/{namespace}`.
    pub(crate) namespace_url: String,
    pub(crate) caps: Capabilities,
    pub(crate) bulk_batch: usize,
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
    pub(crate) inner: Arc<Inner>,
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
    /// A builder with nothing set ([`CloudflareBuilder::new`]; the environment is not read).
    ///
    /// ```
    /// let store = kvkit_cloudflare::CloudflareStore::builder()
    ///     .account_id("a").namespace_id("n").api_token("t")
    ///     .build()?;
    /// assert_eq!(store.request_count(), 0);
    /// # Ok::<(), kvkit_core::Error>(())
    /// ```
    pub fn builder() -> CloudflareBuilder {
        CloudflareBuilder::new()
    }

    /// What this backend allows and guarantees: Cloudflare's limits, eventual consistency, a
    /// best-effort counter and put-if-absent, metadata through JavaScript's JSON.
    pub(crate) fn capabilities_of() -> Capabilities {
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
    /// let request = client.get("http://127.0.0.1:1/").build().expect("a request");
    /// assert_eq!(request.method(), "GET");
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.inner.namespace_url)
    }

    pub(crate) fn http(&self) -> &Http {
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
        refuse_conditional_delete(&self.inner.caps, key)
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
            Some(raw) => ListCursor::decode(raw, prefix)?,
            None => ListCursor::default(),
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
                    wire::expiration_of(k.expiration),
                    wire::metadata_of(k.metadata),
                )
            })
            .collect();
        let next = if keys.len() > limit {
            // More keys of this API page remain: continue inside it, after our last key.
            keys.truncate(limit);
            Some(ListCursor {
                after: keys.last().map(|k| k.name.clone()),
                ..state
            })
        } else {
            next_cf.map(|cf| ListCursor {
                cf_cursor: Some(cf),
                after: None,
            })
        };
        Ok(ListPage::new(keys, next.map(|s| s.encode(prefix))))
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
        let expiry = caps.check_expiry(options.expiry_on_create, SystemClock.now())?;
        let Some(entry) = self.read_entry(key).await? else {
            let expiry = expiry_param(expiry, SystemClock.now());
            self.send_put(key, Bytes::from(delta.to_string()), None, expiry)
                .await?;
            return Ok(delta);
        };
        let next = add_to_counter(key, &entry.value, delta)?;
        let metadata = entry.metadata.map(|m| m.to_string());
        let now = SystemClock.now();
        let expiry = entry
            .expiration
            .and_then(|at| expiry_param(Some(counter_expiry(at, now)), now));
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
