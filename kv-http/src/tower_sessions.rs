//! A `tower_sessions::SessionStore` over any [`KvStore`].

use std::fmt;
use std::time::Duration;

use kvkit_core::{Bytes, KvStore, PutOptions};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{Error, Result, SessionStore};

/// How many fresh ids `create` tries before giving up (a collision of 128 random bits).
const CREATE_ATTEMPTS: usize = 4;

/// Stores tower-sessions' records in any [`KvStore`], so an existing tower-sessions app can
/// keep its sessions in memory, Redis or Cloudflare KV without changing its code (feature
/// `tower-sessions`).
///
/// A record is its JSON under `{prefix}{id}` (prefix `tower-session:` by default), stored with
/// a TTL that ends at the record's expiry (at least the backend's minimum TTL). `create` never
/// overwrites another session: it writes with [`put_if_absent`](KvStore::put_if_absent) and
/// draws a new id on a collision.
///
/// tower-sessions' errors hold only text, so a store's error becomes [`Error::Backend`] with
/// all of it: the error, each of its sources (joined with `: `) and its
/// [`ErrorKind`](kvkit_core::ErrorKind), as `redis: GET failed: connection refused (kind:
/// unavailable)`; never a key, so never a session id.
///
/// ```
/// use tower_sessions_core::session_store::SessionStore;
/// use tower_sessions_core::session::{Id, Record};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tower_sessions_core::session_store::Result<()> {
/// let store = kvkit_http::KvSessionStore::new(kvkit_memory::MemoryStore::new());
/// let mut record = Record {
///     id: Id::default(),
///     data: Default::default(),
///     expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
/// };
/// store.create(&mut record).await?;
/// assert_eq!(store.load(&record.id).await?, Some(record));
///
/// // A prefix too long for Cloudflare's 512-byte keys: every call fails, and says why.
/// let tiny = kvkit_memory::MemoryStore::builder().cloudflare_limits().build();
/// let store = kvkit_http::KvSessionStore::new(tiny).prefix(&"p".repeat(600));
/// let Err(tower_sessions_core::session_store::Error::Backend(text)) = store.load(&Id::default()).await else {
///     panic!("a key over the limit");
/// };
/// assert!(text.contains("the limit is 512 bytes (kind: invalid_input)"), "{text}");
/// # Ok(()) }
/// ```
pub struct KvSessionStore<S> {
    store: S,
    prefix: String,
}

impl<S: fmt::Debug> fmt::Debug for KvSessionStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSessionStore")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<S: Clone> Clone for KvSessionStore<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

impl<S: KvStore> KvSessionStore<S> {
    /// Records under `tower-session:` in `store`.
    ///
    /// ```
    /// let store = kvkit_http::KvSessionStore::new(kvkit_memory::MemoryStore::new());
    /// assert!(format!("{store:?}").contains(r#"prefix: "tower-session:""#));
    /// ```
    pub fn new(store: S) -> Self {
        Self {
            store,
            prefix: "tower-session:".to_owned(),
        }
    }

    /// Records under `prefix` instead.
    ///
    /// ```
    /// let store = kvkit_http::KvSessionStore::new(kvkit_memory::MemoryStore::new()).prefix("app1:sessions:");
    /// assert!(format!("{store:?}").contains(r#"prefix: "app1:sessions:""#));
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    fn key(&self, id: &Id) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The record's JSON and the TTL that ends at its expiry; `None` when it has expired.
    fn encode(&self, record: &Record) -> Result<Option<(Bytes, PutOptions)>> {
        let remaining = record.expiry_date - OffsetDateTime::now_utc();
        if !remaining.is_positive() {
            return Ok(None);
        }
        let ttl = Duration::try_from(remaining)
            .unwrap_or(Duration::MAX)
            .max(self.store.capabilities().min_ttl);
        let json = serde_json::to_vec(record).map_err(|e| Error::Encode(chain(&e)))?;
        Ok(Some((Bytes::from(json), PutOptions::new().ttl(ttl))))
    }
}

/// `error` as tower-sessions' [`Error::Backend`], which holds only text: the error, then each of
/// its sources, joined with `: `, then its [`ErrorKind`](kvkit_core::ErrorKind), so a log line
/// of it keeps everything (and, as every `kvkit` error, no key: no session id).
fn backend(error: kvkit_core::Error) -> Error {
    Error::Backend(format!("{} (kind: {})", chain(&error), error.kind()))
}

/// `error` and each of its sources, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[kvkit_core::backend::async_trait]
impl<S: KvStore> SessionStore for KvSessionStore<S> {
    async fn create(&self, record: &mut Record) -> Result<()> {
        for _ in 0..CREATE_ATTEMPTS {
            let Some((value, options)) = self.encode(record)? else {
                return Ok(());
            };
            if self
                .store
                .put_if_absent(&self.key(&record.id), value, options)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(Error::Backend(
            "no free session id after several attempts".to_owned(),
        ))
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let key = self.key(&record.id);
        match self.encode(record)? {
            Some((value, options)) => self.store.put(&key, value, options).await,
            None => self.store.delete(&key).await,
        }
        .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(raw) = self.store.get(&self.key(id)).await.map_err(backend)? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&raw).map_err(|e| Error::Decode(chain(&e)))?;
        Ok((record.expiry_date > OffsetDateTime::now_utc()).then_some(record))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.store.delete(&self.key(id)).await.map_err(backend)
    }
}
