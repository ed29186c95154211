//! [`Namespaced`]: every key under a fixed prefix, invisible to the caller.

use bytes::Bytes;
use kvkit_core::{
    Capabilities, CounterOptions, Entry, KeyInfo, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result, Version,
};

/// A store whose keys all live under `prefix` of the inner store.
///
/// Callers see their own keys only: listings strip the prefix, a cursor from another namespace is
/// refused by the inner store, and no key can reach outside (`""`, `.` and `..` are still
/// refused, whatever the prefix). The key limit shrinks by the prefix's length, so a key accepted
/// here is never too long for the inner store.
///
/// ```
/// use kvkit_core::{KvStore, ListOptions, PutOptions};
/// use kvkit_layers::Namespaced;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let shared = kvkit_memory::MemoryStore::new();
/// let tenant = Namespaced::new(shared.clone(), "tenant-a/");
/// tenant.put("user:1", "Ada".into(), PutOptions::new()).await?;
/// assert!(shared.get("tenant-a/user:1").await?.is_some());
/// let page = tenant.list(ListOptions::new()).await?;
/// assert_eq!(page.keys[0].name, "user:1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Namespaced<S> {
    inner: S,
    prefix: String,
    caps: Capabilities,
}

impl<S: KvStore> Namespaced<S> {
    /// Puts every key of `inner` under `prefix`.
    ///
    /// ```
    /// let store = kvkit_layers::Namespaced::new(kvkit_memory::MemoryStore::new(), "app/");
    /// assert_eq!(store.prefix(), "app/");
    /// ```
    pub fn new(inner: S, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let mut caps = inner.capabilities().clone();
        caps.max_key_bytes = caps.max_key_bytes.saturating_sub(prefix.len());
        Self {
            inner,
            prefix,
            caps,
        }
    }

    /// The prefix of this namespace.
    ///
    /// ```
    /// let store = kvkit_layers::Namespaced::new(kvkit_memory::MemoryStore::new(), "a/");
    /// assert_eq!(store.prefix(), "a/");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store underneath.
    ///
    /// ```
    /// let store = kvkit_layers::Namespaced::new(kvkit_memory::MemoryStore::new(), "a/");
    /// let _inner: &kvkit_memory::MemoryStore = store.inner();
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn full(&self, key: &str) -> Result<String> {
        self.caps.check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn full_all(&self, keys: &[String]) -> Result<Vec<String>> {
        keys.iter().map(|k| self.full(k)).collect()
    }
}

#[deny(clippy::missing_trait_methods)]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<S: KvStore> KvStore for Namespaced<S> {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(&self.full(key)?).await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.get_with_metadata(&self.full(key)?).await
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.inner.put(&self.full(key)?, value, options).await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.inner
            .put_if_absent(&self.full(key)?, value, options)
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.full(key)?).await
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.inner
            .delete_if_version(&self.full(key)?, version)
            .await
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.caps.check_list(&options)?;
        let inner_options = ListOptions::new()
            .prefix(format!("{}{}", self.prefix, options.prefix))
            .limit(limit)
            .cursor(options.cursor);
        let page = self.inner.list(inner_options).await?;
        let keys = page
            .keys
            .into_iter()
            .map(|k| {
                let name = k
                    .name
                    .strip_prefix(&self.prefix)
                    .unwrap_or(&k.name)
                    .to_owned();
                KeyInfo::new(name, k.expiration, k.metadata)
            })
            .collect();
        Ok(ListPage::new(keys, page.cursor))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.caps.check_batch_get(keys.len())?;
        self.inner.get_many(&self.full_all(keys)?).await
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        // Items are checked in order, key then value then metadata, so the first bad item
        // decides the error as it would on the inner store (which checks expiries itself).
        let items = items
            .into_iter()
            .map(|item| {
                let key = self.full(&item.key)?;
                self.caps.check_value(&item.key, item.value.len())?;
                self.caps
                    .check_metadata(&item.key, item.options.metadata.as_ref())?;
                Ok(PutItem::new(key, item.value).options(item.options))
            })
            .collect::<Result<Vec<_>>>()?;
        self.inner.put_many(items).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(&self.full_all(keys)?).await
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.inner.increment(&self.full(key)?, delta, options).await
    }

    fn increment_now(&self, key: &str, delta: i64, options: CounterOptions) -> Option<Result<i64>> {
        match self.full(key) {
            Ok(full) => self.inner.increment_now(&full, delta, options),
            Err(invalid) => Some(Err(invalid)),
        }
    }
}
