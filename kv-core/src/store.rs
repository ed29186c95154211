//! The [`KvStore`] trait and its forwarding implementations.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::types::{CounterOptions, Entry, ListOptions, ListPage, PutItem, PutOptions, Version};

/// One asynchronous key-value interface over every backend.
///
/// Keys are UTF-8 strings, values are bytes, and every key may carry JSON metadata and an
/// expiration. The operations are shaped like Cloudflare Workers KV's, so nothing is lost in
/// translation to it, and every backend (memory, Redis, Cloudflare) keeps the same contract.
/// Conveniences (text, JSON, streams of keys) live in [`KvStoreExt`](crate::KvStoreExt), which
/// every store gets for free.
///
/// The trait is object safe: share a store as `Arc<dyn KvStore>`. Its futures are `Send` on
/// native targets (and not required to be on `wasm32`, where Workers' futures are not).
///
/// ```
/// use std::sync::Arc;
/// use kvkit_core::{KvStore, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store: Arc<dyn KvStore> = Arc::new(kvkit_memory::MemoryStore::new());
/// store.put("greeting", "hello".into(), PutOptions::new()).await?;
/// assert_eq!(store.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(store.get("missing").await?, None);
/// # Ok(()) }
/// ```
///
/// # Contract
///
/// Every rule below has a case in the shared conformance suite (`kvkit-testsuite`), and every
/// backend passes the whole suite. Where a backend legitimately differs, it says so in its
/// [`Capabilities`], and the suite checks what the capabilities promise.
///
/// 1. **Absence is `None`.** Reading a key that was never written, was deleted or has expired
///    returns `Ok(None)`, never an error.
/// 2. **Bytes round-trip exactly**: empty values, invalid UTF-8 and values up to
///    [`Capabilities::max_value_bytes`] come back byte for byte.
/// 3. **A put replaces everything**: value, metadata and expiration together. A put without
///    metadata clears earlier metadata; a put without expiry makes the key permanent.
/// 4. **Deletes are idempotent**: deleting a missing key succeeds.
/// 5. **Metadata round-trips** as the same JSON value through
///    [`get_with_metadata`](Self::get_with_metadata) and [`list`](Self::list) (where
///    [`Capabilities::exact_metadata`] is false, as on Cloudflare, JSON `null` reads back as no
///    metadata and numbers as IEEE doubles).
/// 6. **Expired means absent**, even before any cleanup ran: no read, list or batch returns an
///    expired key. A TTL is measured from the write; an absolute expiration is an instant
///    ([`SystemTime`](std::time::SystemTime), as every instant in the API). Both are rounded up
///    to the backend's [`ttl_precision`](Capabilities::ttl_precision) and reported as the
///    instant the key expires by `get_with_metadata` and `list`.
/// 7. **Listing is ordered and complete**: keys come in byte-lexicographic order of their UTF-8
///    encoding, filtered by prefix, at most `limit` (1 to 1000, default 1000) a page. Following
///    cursors until `list_complete` yields every key present for the whole listing exactly
///    once, even when other keys are written or deleted between pages; a key deleted before its
///    page is read does not appear. A page may hold fewer than `limit` keys (even none) without
///    being the last. `cursor` is `None` exactly when `list_complete`. A cursor continues only a
///    listing of the very prefix it was issued for: with any other prefix, even a shorter one
///    its keys start with, the listing fails with
///    [`Error::InvalidCursor`](crate::Error::InvalidCursor).
/// 8. **Batches** behave like the single operations in order: [`get_many`](Self::get_many)
///    returns one result per key in the order asked (at most
///    [`Capabilities::max_batch_get`] keys); [`put_many`](Self::put_many) validates every item
///    before writing any; neither batch write is atomic as a whole.
/// 9. **Counters** ([`increment`](Self::increment)) treat a missing key as 0, store the result
///    as its decimal string (so `get` returns e.g. `b"5"`), apply the expiry only when the
///    increment creates the counter, refuse a value that is not a decimal `i64` with
///    [`Error::NotACounter`](crate::Error::NotACounter) and an overflow with
///    [`Error::CounterOverflow`](crate::Error::CounterOverflow). An increment of an existing
///    counter keeps its metadata and its expiration as they are (only the value changes). When
///    [`Capabilities::atomic_counter`] is true, concurrent increments are never lost.
/// 10. **Put-if-absent** writes only when the key is absent (or expired) and says whether it
///     wrote. When [`Capabilities::atomic_put_if_absent`] is true, exactly one of many
///     concurrent calls wins.
/// 11. **Input is validated before any I/O** against [`Capabilities`]: empty keys, `.` and `..`,
///     keys, values and metadata over the limits, TTLs of zero or under the minimum, absolute
///     expirations too close or in the past, list limits out of range, cursors the store did not
///     issue and oversized batches each fail with their own [`Error`](crate::Error) variant.
/// 12. **Conditional writes** ([`PutOptions::if_absent`](crate::PutOptions::if_absent),
///     [`PutOptions::if_version`](crate::PutOptions::if_version),
///     [`delete_if_version`](Self::delete_if_version)) write only when their condition holds
///     and otherwise fail with [`Error::ConditionFailed`](crate::Error::ConditionFailed),
///     writing nothing. Every write changes the entry's [`Version`] (a rewrite with identical
///     content may keep it, see [`Version`]). When [`Capabilities::conditional_writes`] is true
///     they are exact: of many concurrent conditional writes against one version, exactly one
///     succeeds; when false, every condition is refused with
///     [`Error::Unsupported`](crate::Error::Unsupported) and entries carry no version.
/// 13. **A failed call may still have been applied.** An error of kind
///     [`Timeout`](crate::ErrorKind::Timeout) or [`Unavailable`](crate::ErrorKind::Unavailable)
///     (the request may have reached the backend before the answer was lost) says nothing about
///     whether a write took effect: read again before assuming it did not, and retry only what is
///     idempotent (a put, a delete; not an increment). Every other error means nothing was
///     written. [`Error::kind`](crate::Error::kind) classifies every error.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait KvStore: Send + Sync + Debug + 'static {
    /// The limits and guarantees of this store.
    ///
    /// ```
    /// use kvkit_core::KvStore;
    /// let store = kvkit_memory::MemoryStore::new();
    /// assert_eq!(store.capabilities().backend, "memory");
    /// ```
    fn capabilities(&self) -> &Capabilities;

    /// Reads the value of `key`; `None` when absent or expired.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("k", vec![0xff, 0x00].into(), PutOptions::new()).await?;
    /// assert_eq!(store.get("k").await?.as_deref(), Some(&[0xff, 0x00][..]));
    /// # Ok(()) }
    /// ```
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Reads the value of `key` with its metadata and expiration.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("k", "v".into(), PutOptions::new().ttl(Duration::from_secs(60))).await?;
    /// let entry = store.get_with_metadata("k").await?.expect("written");
    /// assert!(entry.expiration.is_some());
    /// # Ok(()) }
    /// ```
    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>>;

    /// Writes `value` to `key`, replacing its value, metadata and expiration.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("k", "one".into(), PutOptions::new()).await?;
    /// store.put("k", "two".into(), PutOptions::new()).await?;
    /// assert_eq!(store.get("k").await?.as_deref(), Some(&b"two"[..]));
    /// # Ok(()) }
    /// ```
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()>;

    /// Writes `value` to `key` only if the key is absent; returns whether it wrote.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// assert!(store.put_if_absent("lock", "a".into(), PutOptions::new()).await?);
    /// assert!(!store.put_if_absent("lock", "b".into(), PutOptions::new()).await?);
    /// assert_eq!(store.get("lock").await?.as_deref(), Some(&b"a"[..]));
    /// # Ok(()) }
    /// ```
    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool>;

    /// Deletes `key`; deleting a missing key succeeds.
    ///
    /// ```
    /// use kvkit_core::KvStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.delete("never-written").await?;
    /// # Ok(()) }
    /// ```
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes `key` only if it still has `version` (as read by
    /// [`get_with_metadata`](Self::get_with_metadata)); otherwise deletes nothing and fails with
    /// [`Error::ConditionFailed`](crate::Error::ConditionFailed). Where
    /// [`Capabilities::conditional_writes`] is false it fails with
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    ///
    /// ```
    /// use kvkit_core::{Error, KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("lock", "me".into(), PutOptions::new()).await?;
    /// let mine = store.get_with_metadata("lock").await?.and_then(|e| e.version).expect("versioned");
    /// store.put("lock", "someone else".into(), PutOptions::new()).await?;
    /// let refused = store.delete_if_version("lock", &mine).await;
    /// assert!(matches!(refused, Err(Error::ConditionFailed { .. })));
    /// assert!(store.get("lock").await?.is_some());
    /// # Ok(()) }
    /// ```
    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()>;

    /// Lists one page of keys in byte order; see the contract above for paging.
    ///
    /// ```
    /// use kvkit_core::{KvStore, ListOptions, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// for k in ["user:2", "user:1", "order:1"] {
    ///     store.put(k, "x".into(), PutOptions::new()).await?;
    /// }
    /// let page = store.list(ListOptions::new().prefix("user:")).await?;
    /// let names: Vec<_> = page.keys.iter().map(|k| k.name.as_str()).collect();
    /// assert_eq!(names, ["user:1", "user:2"]);
    /// assert!(page.list_complete);
    /// # Ok(()) }
    /// ```
    async fn list(&self, options: ListOptions) -> Result<ListPage>;

    /// Reads up to [`Capabilities::max_batch_get`] keys at once; one result per key, in order.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("a", "1".into(), PutOptions::new()).await?;
    /// let values = store.get_many(&["a".to_string(), "b".to_string()]).await?;
    /// assert_eq!(values, vec![Some("1".into()), None]);
    /// # Ok(()) }
    /// ```
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>>;

    /// Writes many keys; every item is validated before any is written.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutItem};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put_many(vec![PutItem::new("a", "1"), PutItem::new("b", "2")]).await?;
    /// assert_eq!(store.get("b").await?.as_deref(), Some(&b"2"[..]));
    /// # Ok(()) }
    /// ```
    async fn put_many(&self, items: Vec<PutItem>) -> Result<()>;

    /// Deletes many keys; missing keys are fine.
    ///
    /// ```
    /// use kvkit_core::{KvStore, PutItem};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put_many(vec![PutItem::new("a", "1")]).await?;
    /// store.delete_many(&["a".to_string(), "nope".to_string()]).await?;
    /// assert_eq!(store.get("a").await?, None);
    /// # Ok(()) }
    /// ```
    async fn delete_many(&self, keys: &[String]) -> Result<()>;

    /// Adds `delta` to the counter at `key` (a missing key counts as 0) and returns the new value.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{CounterOptions, KvStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// let window = CounterOptions::new().ttl(Duration::from_secs(60));
    /// assert_eq!(store.increment("hits", 1, window).await?, 1);
    /// assert_eq!(store.increment("hits", 4, window).await?, 5);
    /// assert_eq!(store.get("hits").await?.as_deref(), Some(&b"5"[..]));
    /// # Ok(()) }
    /// ```
    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64>;

    /// [`increment`](Self::increment) answered at once, by a store that counts without I/O: `Some`
    /// with exactly what `increment` would return (same counter, same rules, same errors), or
    /// `None` when the store has to wait for a server, and the caller then awaits `increment`.
    ///
    /// The memory store answers `Some`; every remote backend, and every wrapper that observes or
    /// changes its calls, keeps this default (`None`). Hot paths such as the rate limiter try it
    /// first and so skip a boxed future per call; nothing else about them changes.
    ///
    /// ```
    /// use kvkit_core::{CounterOptions, KvStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// let counted = match store.increment_now("hits", 2, CounterOptions::new()) {
    ///     Some(now) => now?,
    ///     None => store.increment("hits", 2, CounterOptions::new()).await?,
    /// };
    /// assert_eq!(counted, 2);
    /// assert_eq!(store.increment("hits", 1, CounterOptions::new()).await?, 3);
    /// # Ok(()) }
    /// ```
    fn increment_now(&self, key: &str, delta: i64, options: CounterOptions) -> Option<Result<i64>> {
        let _ = (key, delta, options);
        None
    }
}

/// Forwards every method to the store behind a smart pointer.
macro_rules! forward_store {
    ($($ty:ty),+) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
        #[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
        impl<T: KvStore + ?Sized> KvStore for $ty {
            fn capabilities(&self) -> &Capabilities {
                (**self).capabilities()
            }
            async fn get(&self, key: &str) -> Result<Option<Bytes>> {
                (**self).get(key).await
            }
            async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
                (**self).get_with_metadata(key).await
            }
            async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
                (**self).put(key, value, options).await
            }
            async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
                (**self).put_if_absent(key, value, options).await
            }
            async fn delete(&self, key: &str) -> Result<()> {
                (**self).delete(key).await
            }
            async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
                (**self).delete_if_version(key, version).await
            }
            async fn list(&self, options: ListOptions) -> Result<ListPage> {
                (**self).list(options).await
            }
            async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
                (**self).get_many(keys).await
            }
            async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
                (**self).put_many(items).await
            }
            async fn delete_many(&self, keys: &[String]) -> Result<()> {
                (**self).delete_many(keys).await
            }
            async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
                (**self).increment(key, delta, options).await
            }
            fn increment_now(&self, key: &str, delta: i64, options: CounterOptions) -> Option<Result<i64>> {
                (**self).increment_now(key, delta, options)
            }
        }
    )+};
}

forward_store!(Arc<T>, Box<T>);
