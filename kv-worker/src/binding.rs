//! [`WorkerKvStore`]: the `KvStore` contract over a Worker's KV binding.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::{join_all, try_join, try_join_all};
use kvkit_core::backend::cloudflare::{
    ListCursor, WriteExpiry, counter_expiry, last_per_key, refuse_conditional_delete, write_expiry,
};
use kvkit_core::backend::from_unix_secs;
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, Expiry, KeyInfo, KvStore, ListOptions,
    ListPage, PutItem, PutOptions, Result, SystemClock, Version,
};
use serde_json::Value;
use wasm_bindgen::JsCast;
use worker::kv::KvError;

use crate::wire::{self, BACKEND};

/// How many single-key writes or deletes of one batch are in flight at once.
const BATCH_CONCURRENCY: usize = 16;

/// What text decoding leaves where a value was not UTF-8.
const REPLACEMENT: char = '\u{fffd}';

/// Cloudflare Workers KV through the Worker's binding.
///
/// Clones share the binding. Build one per request from the request's `Env` (it is a handful of
/// JavaScript handles), or once and keep it.
///
/// ```ignore
/// # async fn handler(env: worker::Env) -> kvkit_core::Result<()> {
/// use kvkit_core::{KvStore, PutOptions};
/// let store = kvkit_worker::WorkerKvStore::from_env(&env, "KV")?;
/// store.put("greeting", "hello".into(), PutOptions::new()).await?;
/// assert_eq!(store.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkerKvStore {
    kv: worker::kv::KvStore,
    binding: String,
    caps: Capabilities,
}

impl fmt::Debug for WorkerKvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerKvStore")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

/// The message of what the binding threw.
fn js_message(error: &KvError) -> String {
    match error {
        KvError::JavaScript(value) => match value.dyn_ref::<js_sys::Error>() {
            Some(error) => String::from(error.message()),
            None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
        },
        other => other.to_string(),
    }
}

/// Maps what the binding threw onto the contract's errors.
fn binding_error(operation: &'static str, error: &KvError) -> Error {
    wire::error_of(operation, js_message(error))
}

/// The expiry options of a put made now.
fn expiry_options(
    builder: worker::kv::PutOptionsBuilder,
    expiry: Option<Expiry>,
    now: SystemTime,
) -> worker::kv::PutOptionsBuilder {
    match expiry.map(|expiry| write_expiry(expiry, now)) {
        None => builder,
        Some(WriteExpiry::Expiration(secs)) => builder.expiration(secs),
        Some(WriteExpiry::ExpirationTtl(secs)) => builder.expiration_ttl(secs),
    }
}

impl WorkerKvStore {
    /// The store behind the KV namespace bound to the Worker as `binding`.
    ///
    /// A binding the Worker does not have is [`Error::Backend`], not a panic.
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let store = kvkit_worker::WorkerKvStore::from_env(&env, "KV")?;
    /// assert!(format!("{store:?}").contains(r#"binding: "KV""#));
    /// assert!(kvkit_worker::WorkerKvStore::from_env(&env, "NO_SUCH_BINDING").is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_env(env: &worker::Env, binding: &str) -> Result<Self> {
        let kv = env.kv(binding).map_err(|e| Error::Backend {
            backend: BACKEND,
            message: format!("the Worker has no KV binding {binding:?}: {e}"),
            retryable: false,
            source: None,
        })?;
        Ok(Self::new(kv, binding))
    }

    /// The store behind a binding the caller already holds (`binding` names it in `Debug`).
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> worker::Result<()> {
    /// let store = kvkit_worker::WorkerKvStore::new(env.kv("KV")?, "KV");
    /// assert!(!kvkit_core::KvStore::capabilities(&store).atomic_counter);
    /// # Ok(()) }
    /// ```
    pub fn new(kv: worker::kv::KvStore, binding: &str) -> Self {
        Self {
            kv,
            binding: binding.to_owned(),
            caps: Capabilities::cloudflare(BACKEND)
                .with_consistency(kvkit_core::Consistency::Eventual)
                .with_atomic(false, false)
                .with_conditional_writes(false)
                .with_exact_metadata(false),
        }
    }

    /// The binding this store calls.
    ///
    /// ```ignore
    /// # async fn handler(store: kvkit_worker::WorkerKvStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use kvkit_core::{KvStoreExt, PutOptions};
    ///
    /// store.put_text("greeting", "hello", PutOptions::new()).await?;
    /// let raw: &worker::kv::KvStore = store.binding();
    /// assert_eq!(raw.get("greeting").text().await?.as_deref(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub fn binding(&self) -> &worker::kv::KvStore {
        &self.kv
    }

    async fn read_bytes(&self, operation: &'static str, key: &str) -> Result<Option<Bytes>> {
        let value = self
            .kv
            .get(key)
            .bytes()
            .await
            .map_err(|e| binding_error(operation, &e))?;
        Ok(value.map(Bytes::from))
    }

    /// The expiration of `key` as a listing reports it (the binding reports it nowhere else).
    async fn expiration_of(
        &self,
        operation: &'static str,
        key: &str,
    ) -> Result<Option<SystemTime>> {
        let page = self
            .kv
            .list()
            .prefix(key.to_owned())
            .limit(1)
            .execute()
            .await
            .map_err(|e| binding_error(operation, &e))?;
        Ok(page
            .keys
            .into_iter()
            .find(|k| k.name == key)
            .and_then(|k| k.expiration)
            .map(from_unix_secs))
    }

    async fn read_entry(&self, operation: &'static str, key: &str) -> Result<Option<Entry>> {
        let read = async {
            self.kv
                .get(key)
                .bytes_with_metadata::<Value>()
                .await
                .map_err(|e| binding_error(operation, &e))
        };
        let ((value, metadata), expiration) =
            try_join(read, self.expiration_of(operation, key)).await?;
        Ok(value.map(|value| {
            Entry::new(
                Bytes::from(value),
                metadata.filter(|m| !m.is_null()),
                expiration,
            )
        }))
    }

    async fn write(
        &self,
        operation: &'static str,
        key: &str,
        value: &[u8],
        metadata_json: Option<&str>,
        expiry: Option<Expiry>,
    ) -> Result<()> {
        let builder = self
            .kv
            .put_bytes(key, value)
            .map_err(|e| binding_error(operation, &e))?;
        let mut builder = expiry_options(builder, expiry, SystemClock.now());
        if let Some(json) = metadata_json {
            // Validated JSON: check_put serialized it.
            let metadata: Value = serde_json::from_str(json).map_err(|e| Error::encode(key, e))?;
            builder = builder
                .metadata(metadata)
                .map_err(|e| binding_error(operation, &e))?;
        }
        builder
            .execute()
            .await
            .map_err(|e| binding_error(operation, &e))
    }

    async fn put_checked(
        &self,
        operation: &'static str,
        key: &str,
        value: &[u8],
        options: &PutOptions,
    ) -> Result<()> {
        let checked = self
            .caps
            .check_put(key, value.len(), options, SystemClock.now())?;
        self.write(
            operation,
            key,
            value,
            checked.metadata_json.as_deref(),
            checked.expiry,
        )
        .await
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for WorkerKvStore {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.caps.check_key(key)?;
        self.read_bytes("get", key).await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.caps.check_key(key)?;
        self.read_entry("get_with_metadata", key).await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.put_checked("put", key, &value, &options).await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let checked = self
            .caps
            .check_put(key, value.len(), &options, SystemClock.now())?;
        if self.read_bytes("put_if_absent", key).await?.is_some() {
            return Ok(false);
        }
        self.write(
            "put_if_absent",
            key,
            &value,
            checked.metadata_json.as_deref(),
            checked.expiry,
        )
        .await?;
        Ok(true)
    }

    async fn delete_if_version(&self, key: &str, _version: &Version) -> Result<()> {
        refuse_conditional_delete(&self.caps, key)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.caps.check_key(key)?;
        self.kv
            .delete(key)
            .await
            .map_err(|e| binding_error("delete", &e))
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.caps.check_list(&options)?;
        let prefix = options.prefix.as_str();
        let state = options
            .cursor
            .as_deref()
            .map(|raw| ListCursor::decode(raw, prefix))
            .transpose()?;
        let mut request = self.kv.list().limit(limit as u64);
        if !prefix.is_empty() {
            request = request.prefix(prefix.to_owned());
        }
        if let Some(cf_cursor) = state.and_then(|state| state.cf_cursor) {
            request = request.cursor(cf_cursor);
        }
        let page = request
            .execute()
            .await
            .map_err(|e| binding_error("list", &e))?;
        let keys = page
            .keys
            .into_iter()
            .map(|k| {
                let expiration = k.expiration.map(from_unix_secs);
                KeyInfo::new(k.name, expiration, k.metadata.filter(|m| !m.is_null()))
            })
            .collect();
        let next = page
            .cursor
            .filter(|c| !page.list_complete && !c.is_empty())
            .map(|cf_cursor| {
                ListCursor {
                    cf_cursor: Some(cf_cursor),
                    after: None,
                }
                .encode(prefix)
            });
        Ok(ListPage::new(keys, next))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| self.caps.check_key(key))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::with_capacity(keys.len());
        let unique: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| seen.insert(*k))
            .collect();
        let texts = self
            .kv
            .get_bulk(&unique)
            .text()
            .await
            .map_err(|e| binding_error("get_many", &e))?;
        // Values that were not UTF-8 came back with replacement characters: read them exactly.
        let inexact: Vec<&str> = unique
            .iter()
            .copied()
            .filter(|k| {
                texts
                    .get(*k)
                    .is_some_and(|t| t.as_ref().is_some_and(|t| t.contains(REPLACEMENT)))
            })
            .collect();
        let exact = try_join_all(inexact.iter().map(|k| self.read_bytes("get_many", k))).await?;
        let exact: HashMap<&str, Option<Bytes>> = inexact.into_iter().zip(exact).collect();
        Ok(keys
            .iter()
            .map(|key| match exact.get(key.as_str()) {
                Some(value) => value.clone(),
                None => texts.get(key).cloned().flatten().map(Bytes::from),
            })
            .collect())
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let now_ms = SystemClock.now();
        let writes = items
            .into_iter()
            .map(|item| {
                let checked =
                    self.caps
                        .check_put(&item.key, item.value.len(), &item.options, now_ms)?;
                Ok((item.key, (item.value, checked)))
            })
            .collect::<Result<Vec<_>>>()?;
        for chunk in last_per_key(writes).chunks(BATCH_CONCURRENCY) {
            let results = join_all(chunk.iter().map(|(key, (value, checked))| {
                self.write(
                    "put_many",
                    key,
                    value,
                    checked.metadata_json.as_deref(),
                    checked.expiry,
                )
            }))
            .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        keys.iter().try_for_each(|key| self.caps.check_key(key))?;
        let keys = last_per_key(keys.iter().map(|k| (k.clone(), ())).collect());
        for chunk in keys.chunks(BATCH_CONCURRENCY) {
            let results = join_all(chunk.iter().map(|(key, ())| async move {
                self.kv
                    .delete(key)
                    .await
                    .map_err(|e| binding_error("delete_many", &e))
            }))
            .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.caps.check_key(key)?;
        let expiry = self
            .caps
            .check_expiry(options.expiry_on_create, SystemClock.now())?;
        let Some(entry) = self.read_entry("increment", key).await? else {
            self.write("increment", key, delta.to_string().as_bytes(), None, expiry)
                .await?;
            return Ok(delta);
        };
        let next = kvkit_core::backend::add_to_counter(key, &entry.value, delta)?;
        let metadata = entry.metadata.map(|m| m.to_string());
        let now = SystemClock.now();
        let expiry = entry.expiration.map(|at| counter_expiry(at, now));
        self.write(
            "increment",
            key,
            next.to_string().as_bytes(),
            metadata.as_deref(),
            expiry,
        )
        .await?;
        Ok(next)
    }
}
