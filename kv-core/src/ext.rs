//! Conveniences over any [`KvStore`]: text, JSON, TTL shorthands and key streams.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::store::KvStore;
use crate::types::{KeyInfo, ListOptions, PutOptions};

/// A stream of listed keys, following cursors page by page.
#[cfg(not(target_arch = "wasm32"))]
pub type KeyStream<'a> = futures_util::stream::BoxStream<'a, Result<KeyInfo>>;
/// A stream of listed keys, following cursors page by page.
#[cfg(target_arch = "wasm32")]
pub type KeyStream<'a> = futures_util::stream::LocalBoxStream<'a, Result<KeyInfo>>;

/// The conveniences the seed's TypeScript helpers offer, for every [`KvStore`].
///
/// Implemented for every store (including `dyn KvStore`); import it to use them.
///
/// ```
/// use kvkit_core::{KvStore, KvStoreExt, PutOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_memory::MemoryStore::new();
/// store.put_json("user:1", &serde_json::json!({"name": "Ada"}), PutOptions::new()).await?;
/// let user: Option<serde_json::Value> = store.get_json("user:1").await?;
/// assert_eq!(user.unwrap()["name"], "Ada");
/// # Ok(()) }
/// ```
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait KvStoreExt: KvStore {
    /// Reads `key` as UTF-8 text; bytes that are not UTF-8 give [`Error::Decode`].
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("bad", vec![0xff].into(), PutOptions::new()).await?;
    /// assert!(matches!(store.get_text("bad").await, Err(kvkit_core::Error::Decode { .. })));
    /// assert_eq!(store.get_text("missing").await?, None);
    /// # Ok(()) }
    /// ```
    async fn get_text(&self, key: &str) -> Result<Option<String>> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|e| Error::decode(key, e)),
        }
    }

    /// Writes `value` as UTF-8 text.
    ///
    /// ```
    /// use kvkit_core::{KvStoreExt, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put_text("k", "héllo", PutOptions::new()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("héllo"));
    /// # Ok(()) }
    /// ```
    async fn put_text(&self, key: &str, value: &str, options: PutOptions) -> Result<()> {
        self.put(key, Bytes::copy_from_slice(value.as_bytes()), options)
            .await
    }

    /// Reads `key` as JSON into `T`; bytes that are not valid JSON for `T` give
    /// [`Error::Decode`], never a panic.
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put("n", "{not json".into(), PutOptions::new()).await?;
    /// assert!(matches!(store.get_json::<u32>("n").await, Err(kvkit_core::Error::Decode { .. })));
    /// # Ok(()) }
    /// ```
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::decode(key, e)),
        }
    }

    /// Writes `value` serialized as JSON.
    ///
    /// ```
    /// use kvkit_core::{KvStoreExt, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put_json("list", &vec![1, 2, 3], PutOptions::new()).await?;
    /// assert_eq!(store.get_text("list").await?.as_deref(), Some("[1,2,3]"));
    /// # Ok(()) }
    /// ```
    async fn put_json<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::encode(key, e))?;
        self.put(key, Bytes::from(bytes), options).await
    }

    /// Writes `value` with a TTL, like the seed's `setValue(kv, key, value, ttlSeconds)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// store.put_with_ttl("k", "v", Duration::from_secs(60)).await?;
    /// assert!(store.get_with_metadata("k").await?.unwrap().expiration.is_some());
    /// # Ok(()) }
    /// ```
    async fn put_with_ttl(
        &self,
        key: &str,
        value: impl Into<Bytes> + Send + 'async_trait,
        ttl: Duration,
    ) -> Result<()> {
        self.put(key, value.into(), PutOptions::new().ttl(ttl))
            .await
    }

    /// Every key under `prefix`, in byte order, as a stream that follows cursors page by page.
    ///
    /// ```
    /// use futures_util::TryStreamExt;
    /// use kvkit_core::{KvStoreExt, PutItem};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new();
    /// let items = (0..2500).map(|i| PutItem::new(format!("n:{i:05}"), "x")).collect();
    /// kvkit_core::KvStore::put_many(&store, items).await?;
    /// let keys: Vec<_> = store.list_stream("n:").try_collect().await?;
    /// assert_eq!(keys.len(), 2500);
    /// assert_eq!(keys[2499].name, "n:02499");
    /// # Ok(()) }
    /// ```
    fn list_stream(&self, prefix: &str) -> KeyStream<'_> {
        enum Next {
            Page(Option<String>),
            Done,
        }
        let prefix = prefix.to_owned();
        let pages = stream::try_unfold(Next::Page(None), move |next| {
            let prefix = prefix.clone();
            async move {
                let Next::Page(cursor) = next else {
                    return Ok(None);
                };
                let page = self
                    .list(ListOptions::new().prefix(prefix).cursor(cursor))
                    .await?;
                let next = match page.cursor {
                    Some(cursor) if !page.list_complete => Next::Page(Some(cursor)),
                    _ => Next::Done,
                };
                Ok(Some((stream::iter(page.keys.into_iter().map(Ok)), next)))
            }
        });
        pages.try_flatten().boxed_for_target()
    }
}

impl<S: KvStore + ?Sized> KvStoreExt for S {}

/// Boxes a stream as `Send` on native targets and as local on `wasm32`.
trait BoxedForTarget<'a>: futures_util::Stream<Item = Result<KeyInfo>> + Sized + 'a {
    fn boxed_for_target(self) -> KeyStream<'a>;
}

#[cfg(not(target_arch = "wasm32"))]
impl<'a, S: futures_util::Stream<Item = Result<KeyInfo>> + Send + 'a> BoxedForTarget<'a> for S {
    fn boxed_for_target(self) -> KeyStream<'a> {
        self.boxed()
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a, S: futures_util::Stream<Item = Result<KeyInfo>> + 'a> BoxedForTarget<'a> for S {
    fn boxed_for_target(self) -> KeyStream<'a> {
        self.boxed_local()
    }
}
