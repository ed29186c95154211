//! Sessions stored as `session:{id}`, with unguessable ids, sliding expiry and per-user logout.

use std::fmt::{self, Debug, Display};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use kvkit_core::backend::{from_unix_ms, unix_ms};
use kvkit_core::{
    Bytes, Clock, Error, KvStore, KvStoreExt, PutItem, PutOptions, SystemClock, Version,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::spawn::MaybeSend;

/// The prefix of every session's key, as in the TypeScript pattern.
const SESSION_PREFIX: &str = "session:";
/// The prefix of the per-user index: `session-user:{userId}:{sessionId}`.
const USER_INDEX_PREFIX: &str = "session-user:";
/// The metadata field that records when a session was last written, in unix milliseconds.
const REFRESHED_AT: &str = "refreshedAt";
/// How many fresh ids `create` tries before giving up (a collision of 122 random bits).
const CREATE_ATTEMPTS: usize = 4;

/// What a session holds: any serde type; [`user_id`](Self::user_id) links a session to its user
/// for [`SessionManager::user_sessions`] and [`SessionManager::destroy_user_sessions`].
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Cart { items: Vec<u32> }
/// impl kvkit_patterns::SessionData for Cart {}
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Login { user: String }
/// impl kvkit_patterns::SessionData for Login {
///     fn user_id(&self) -> Option<&str> { Some(&self.user) }
/// }
/// ```
pub trait SessionData: Serialize + DeserializeOwned + MaybeSend + Sync + 'static {
    /// The user this session belongs to, if any (the default: none).
    ///
    /// ```
    /// use kvkit_patterns::SessionData;
    /// let value = serde_json::json!({"userId": "u1"});
    /// assert_eq!(value.user_id(), Some("u1"));
    /// ```
    fn user_id(&self) -> Option<&str> {
        None
    }
}

/// The TypeScript pattern's session, stored as `{"userId", "email", "role", "createdAt"}`, with
/// `createdAt` in unix milliseconds as JavaScript's `Date.now()` gives it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let session = kvkit_patterns::Session {
///     user_id: "u1".into(), email: "ada@example.com".into(), role: "admin".into(),
///     created_at: UNIX_EPOCH + Duration::from_millis(1_767_225_600_123),
/// };
/// let json = r#"{"userId":"u1","email":"ada@example.com","role":"admin","createdAt":1767225600123}"#;
/// assert_eq!(serde_json::to_string(&session).unwrap(), json);
/// assert_eq!(serde_json::from_str::<kvkit_patterns::Session>(json).unwrap(), session);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The user's id.
    pub user_id: String,
    /// The user's email address.
    pub email: String,
    /// The user's role.
    pub role: String,
    /// When the session was created (stored in unix milliseconds).
    #[serde(with = "unix_millis")]
    pub created_at: SystemTime,
}

/// `SystemTime` as JSON unix milliseconds; JavaScript may write them as a float.
mod unix_millis {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        at: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(super::unix_ms(*at))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let ms = f64::deserialize(deserializer)?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(serde::de::Error::custom(
                "createdAt is not a time in unix milliseconds",
            ));
        }
        // Finite and not negative: the cast saturates.
        Ok(super::from_unix_ms(ms as u64))
    }
}

impl SessionData for Session {
    fn user_id(&self) -> Option<&str> {
        Some(&self.user_id)
    }
}

/// Any JSON object; its `userId` field, when a string, is the user.
impl SessionData for serde_json::Value {
    fn user_id(&self) -> Option<&str> {
        self.get("userId").and_then(serde_json::Value::as_str)
    }
}

/// A session id: a random UUID (version 4, from the operating system's CSPRNG), in the
/// lowercase hyphenated form that `crypto.randomUUID()` gives.
///
/// It is a bearer credential, so `Debug` shows only its first characters; `Display` and
/// [`as_str`](Self::as_str) give all of it (for the cookie).
///
/// ```
/// let id = kvkit_patterns::SessionId::parse("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b").unwrap();
/// assert_eq!(format!("{id:?}"), "SessionId(0f8c2a2e…)");
/// assert!(kvkit_patterns::SessionId::parse("not-a-session").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new random id.
    ///
    /// ```
    /// let a = kvkit_patterns::SessionId::generate().unwrap();
    /// let b = kvkit_patterns::SessionId::generate().unwrap();
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 36);
    /// ```
    pub fn generate() -> kvkit_core::Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::backend(
                "session",
                "the operating system's random source failed",
                false,
                e.to_string(),
            )
        })?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut id = String::with_capacity(36);
        for (i, byte) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                id.push('-');
            }
            id.push(char::from(HEX[usize::from(byte >> 4)]));
            id.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Ok(Self(id))
    }

    /// `id` if it is a lowercase hyphenated UUID, the only form this library issues; anything
    /// else (empty, oversized, other characters) is `None`.
    ///
    /// ```
    /// use kvkit_patterns::SessionId;
    /// assert!(SessionId::parse("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b").is_some());
    /// assert!(SessionId::parse("0F8C2A2E-5B7D-4E0A-9A4B-2C6D8E1F3A5B").is_none());
    /// assert!(SessionId::parse(&"a".repeat(10_000)).is_none());
    /// ```
    pub fn parse(id: &str) -> Option<Self> {
        let bytes = id.as_bytes();
        let well_formed = bytes.len() == 36
            && bytes.iter().enumerate().all(|(i, &b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            });
        well_formed.then(|| Self(id.to_owned()))
    }

    /// The id as text.
    ///
    /// ```
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// assert_eq!(kvkit_patterns::SessionId::parse(id.as_str()), Some(id));
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn key(&self) -> String {
        format!("{SESSION_PREFIX}{}", self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..8])
    }
}

impl Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sessions over any [`KvStore`], wire-compatible with the TypeScript `SessionManager`.
///
/// A session is the JSON of its data under `session:{id}`, with a TTL (24 hours by default).
/// Beyond the TypeScript pattern:
///
/// - Ids come from the OS CSPRNG, and [`create`](Self::create) never overwrites an existing
///   session (it writes with [`put_if_absent`](KvStore::put_if_absent)).
/// - An unknown, malformed, oversized or expired id reads as `None`, and a malformed one never
///   reaches the store. Ids are never logged.
/// - [`refresh`](Self::refresh) slides the expiry but writes at most once per
///   [`refresh_interval`](SessionManagerBuilder::refresh_interval) (Cloudflare KV takes one write
///   a second per key); the last write time is kept in the key's metadata, so the stored JSON
///   stays exactly the TypeScript pattern's.
/// - [`rotate`](Self::rotate) moves a session to a new id (after login, against fixation).
/// - An index under `session-user:{userId}:{sessionId}` lists and destroys all sessions of one
///   user ("log out everywhere"). Sessions created by the TypeScript pattern are not in it.
///
/// A refresh that races a [`destroy`](Self::destroy) of the same session never writes it back
/// where the store has conditional writes
/// ([`Capabilities::conditional_writes`](kvkit_core::Capabilities::conditional_writes): memory,
/// Redis): the refresh is a compare-and-set against the version it read, so a session destroyed
/// (or changed) since is left as it is. On Cloudflare KV, which has none, such a refresh can
/// write the session back: destroy, then let the cookie go, as the middleware does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
/// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
/// assert_eq!(sessions.get(id.as_str()).await?.unwrap().role, "admin");
/// sessions.destroy(id.as_str()).await?;
/// assert_eq!(sessions.get(id.as_str()).await?, None);
/// assert_eq!(sessions.get("forged").await?, None);
/// # Ok(()) }
/// ```
pub struct SessionManager<S, D = Session> {
    store: S,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    refresh_interval: Duration,
    user_index: bool,
    data: PhantomData<fn() -> D>,
}

impl<S: Clone, D> Clone for SessionManager<S, D> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            ttl: self.ttl,
            refresh_interval: self.refresh_interval,
            user_index: self.user_index,
            data: PhantomData,
        }
    }
}

impl<S: Debug, D> Debug for SessionManager<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("refresh_interval", &self.refresh_interval)
            .field("user_index", &self.user_index)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionManager`].
///
/// ```
/// use std::time::Duration;
/// let sessions = kvkit_patterns::SessionManager::<_, serde_json::Value>::builder(kvkit_memory::MemoryStore::new())
///     .ttl(Duration::from_secs(3600))
///     .refresh_interval(Duration::from_secs(300))
///     .build();
/// assert_eq!(sessions.ttl(), Duration::from_secs(3600));
/// ```
pub struct SessionManagerBuilder<S, D> {
    manager: SessionManager<S, D>,
}

impl<S: Debug, D> Debug for SessionManagerBuilder<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionManagerBuilder")
            .field(&self.manager)
            .finish()
    }
}

impl<S: KvStore, D: SessionData> SessionManagerBuilder<S, D> {
    /// How long a session lives after its last write (default 24 hours).
    ///
    /// ```
    /// let b = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new())
    ///     .ttl(std::time::Duration::from_secs(600));
    /// assert_eq!(b.build().ttl(), std::time::Duration::from_secs(600));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.manager.ttl = ttl;
        self
    }

    /// The least time between two writes of one session by [`SessionManager::refresh`]
    /// (default 60 s).
    ///
    /// ```
    /// let b = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new())
    ///     .refresh_interval(std::time::Duration::from_secs(5));
    /// assert!(format!("{:?}", b.build()).contains("refresh_interval: 5s"));
    /// ```
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.manager.refresh_interval = interval;
        self
    }

    /// Whether to keep the per-user index (default on); without it, sessions cost one key each.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new())
    ///     .user_index(false)
    ///     .build();
    /// sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert!(sessions.user_sessions("u1").await?.is_empty(), "no index kept");
    /// let listed = kvkit_core::KvStore::list(sessions.store(), Default::default()).await?;
    /// assert_eq!(listed.keys.len(), 1, "one key per session");
    /// # Ok(()) }
    /// ```
    pub fn user_index(mut self, enabled: bool) -> Self {
        self.manager.user_index = enabled;
        self
    }

    /// Reads time from `clock` (the default is the system clock).
    ///
    /// ```
    /// use kvkit_core::Clock;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = kvkit_core::ManualClock::new();
    /// let sessions = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new())
    ///     .clock(clock.clone())
    ///     .build();
    /// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert_eq!(sessions.get(id.as_str()).await?.unwrap().created_at, clock.now());
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.manager.clock = Arc::new(clock);
        self
    }

    /// Builds the manager.
    ///
    /// ```
    /// let sessions = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new()).build();
    /// assert_eq!(sessions.ttl(), std::time::Duration::from_secs(24 * 3600));
    /// ```
    pub fn build(self) -> SessionManager<S, D> {
        self.manager
    }
}

impl<S: KvStore> SessionManager<S, Session> {
    /// A manager of [`Session`]s with the defaults: 24-hour sessions, refreshed at most once a
    /// minute, with the per-user index, on the system clock. For other session types, use
    /// [`builder`](Self::builder): `SessionManager::<_, MyData>::builder(store).build()`.
    ///
    /// ```
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(sessions.ttl().as_secs(), 86_400);
    /// ```
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// Creates a [`Session`] for a user, as the TypeScript pattern's `create(userId, email,
    /// role)`, with `createdAt` from the manager's clock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert_eq!(sessions.get(id.as_str()).await?.unwrap().user_id, "u1");
    /// # Ok(()) }
    /// ```
    pub async fn create_for(
        &self,
        user_id: &str,
        email: &str,
        role: &str,
    ) -> kvkit_core::Result<SessionId> {
        let session = Session {
            user_id: user_id.to_owned(),
            email: email.to_owned(),
            role: role.to_owned(),
            created_at: self.clock.now(),
        };
        self.create(&session).await
    }
}

impl<S: KvStore, D: SessionData> SessionManager<S, D> {
    /// A builder for a manager over `store`.
    ///
    /// ```
    /// let sessions = kvkit_patterns::SessionManager::<_>::builder(kvkit_memory::MemoryStore::new()).build();
    /// assert!(format!("{sessions:?}").contains("user_index: true"));
    /// ```
    pub fn builder(store: S) -> SessionManagerBuilder<S, D> {
        SessionManagerBuilder {
            manager: Self {
                store,
                clock: Arc::new(SystemClock),
                ttl: Duration::from_secs(86_400),
                refresh_interval: Duration::from_secs(60),
                user_index: true,
                data: PhantomData,
            },
        }
    }

    /// How long a session lives after its last write.
    ///
    /// ```
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(sessions.ttl(), std::time::Duration::from_secs(86_400));
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The store the sessions live in.
    ///
    /// ```
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(kvkit_core::KvStore::capabilities(sessions.store()).backend, "memory");
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Stores `data` as a new session and returns its id. It never overwrites a session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::<_, serde_json::Value>::builder(kvkit_memory::MemoryStore::new()).build();
    /// let id = sessions.create(&serde_json::json!({"userId": "u1", "theme": "dark"})).await?;
    /// assert_eq!(sessions.get(id.as_str()).await?.unwrap()["theme"], "dark");
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, data: &D) -> kvkit_core::Result<SessionId> {
        let value = encode(data)?;
        self.create_raw(value, data.user_id()).await
    }

    async fn create_raw(
        &self,
        value: Bytes,
        user_id: Option<&str>,
    ) -> kvkit_core::Result<SessionId> {
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate()?;
            // The index entry goes first: a session is never live without it, and an entry
            // whose session was never written expires with its TTL.
            if let Some(index_key) = self.index_key(user_id, &id) {
                self.store
                    .put(&index_key, Bytes::new(), self.index_options())
                    .await?;
            }
            if self
                .store
                .put_if_absent(&id.key(), value.clone(), self.write_options())
                .await?
            {
                return Ok(id);
            }
        }
        Err(Error::backend(
            "session",
            "no free session id after several attempts",
            true,
            "session id collision",
        ))
    }

    /// The session's data, or `None` when the id is unknown, malformed, oversized or expired,
    /// or its stored JSON does not decode as `D` (logged, without the id).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// assert_eq!(sessions.get("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b").await?, None);
    /// assert_eq!(sessions.get("../../etc/passwd").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, id: impl AsRef<str>) -> kvkit_core::Result<Option<D>> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(None);
        };
        Ok(self
            .store
            .get(&id.key())
            .await?
            .and_then(|raw| decode::<D>(&raw)))
    }

    /// Reads the session and slides its expiry, writing only when the last write is at least
    /// the refresh interval old: what a request handler calls on every request.
    ///
    /// Only the read can fail the call. A refresh write that fails is logged (target
    /// `kvkit::session`, at `warn`, with the error and its kind, never the id) and the session
    /// is returned as read: the request goes on, and a later request slides the expiry. Use
    /// [`refresh`](Self::refresh) to learn whether the write went through.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert_eq!(sessions.get_and_refresh(id.as_str()).await?.unwrap().email, "ada@example.com");
    /// assert_eq!(sessions.get_and_refresh("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get_and_refresh(&self, id: impl AsRef<str>) -> kvkit_core::Result<Option<D>> {
        let Some((data, refreshed)) = self.read_and_refresh(id.as_ref()).await? else {
            return Ok(None);
        };
        if let Err(error) = refreshed {
            tracing::warn!(
                target: "kvkit::session",
                kind = %error.kind(),
                %error,
                "sliding the session's expiry failed; serving the session as read"
            );
        }
        Ok(Some(data))
    }

    /// Slides the session's expiry to a full TTL from now, as the TypeScript pattern's
    /// `refresh`, but writes only when the last write is at least the refresh interval old.
    /// Returns whether the session exists; a failed write is an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert!(sessions.refresh(id.as_str()).await?);
    /// assert!(!sessions.refresh("0f8c2a2e-5b7d-4e0a-9a4b-2c6d8e1f3a5b").await?);
    /// # Ok(()) }
    /// ```
    pub async fn refresh(&self, id: impl AsRef<str>) -> kvkit_core::Result<bool> {
        match self.read_and_refresh(id.as_ref()).await? {
            Some((_, refreshed)) => refreshed.map(|()| true),
            None => Ok(false),
        }
    }

    /// The session's data, and the outcome of the refresh write when one was due: an error of
    /// the read is the call's, an error of the write is handed back beside the data.
    async fn read_and_refresh(
        &self,
        id: &str,
    ) -> kvkit_core::Result<Option<(D, kvkit_core::Result<()>)>> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(None);
        };
        let Some(entry) = self.store.get_with_metadata(&id.key()).await? else {
            return Ok(None);
        };
        let Some(data) = decode::<D>(&entry.value) else {
            return Ok(None);
        };
        let refreshed = if self.refresh_due(entry.metadata.as_ref()) {
            self.rewrite(&id, entry.value, entry.version, data.user_id())
                .await
        } else {
            Ok(())
        };
        Ok(Some((data, refreshed)))
    }

    /// Deletes the session (and its index entry). Deleting an unknown id succeeds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// sessions.destroy(id.as_str()).await?;
    /// sessions.destroy(id.as_str()).await?;
    /// assert!(sessions.user_sessions("u1").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn destroy(&self, id: impl AsRef<str>) -> kvkit_core::Result<()> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(());
        };
        let key = id.key();
        let user = if self.user_index {
            self.store
                .get(&key)
                .await?
                .and_then(|raw| decode::<D>(&raw))
        } else {
            None
        };
        let mut keys = vec![key];
        keys.extend(self.index_key(user.as_ref().and_then(D::user_id), &id));
        self.store.delete_many(&keys).await
    }

    /// Moves the session to a new id and destroys the old one (call it when privileges change,
    /// at login above all, so an id planted before login is worthless after). `None` when the
    /// session does not exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let old = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// let new = sessions.rotate(old.as_str()).await?.unwrap();
    /// assert_eq!(sessions.get(old.as_str()).await?, None);
    /// assert_eq!(sessions.get(new.as_str()).await?.unwrap().email, "ada@example.com");
    /// # Ok(()) }
    /// ```
    pub async fn rotate(&self, id: impl AsRef<str>) -> kvkit_core::Result<Option<SessionId>> {
        let Some(old) = SessionId::parse(id.as_ref()) else {
            return Ok(None);
        };
        let Some(raw) = self.store.get(&old.key()).await? else {
            return Ok(None);
        };
        let user = decode::<D>(&raw);
        let new = self
            .create_raw(raw, user.as_ref().and_then(D::user_id))
            .await?;
        let mut keys = vec![old.key()];
        keys.extend(self.index_key(user.as_ref().and_then(D::user_id), &old));
        self.store.delete_many(&keys).await?;
        Ok(Some(new))
    }

    /// The live sessions of `user_id` created through this library.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let a = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// let b = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// sessions.create_for("u2", "grace@example.com", "user").await?;
    /// let mut mine = sessions.user_sessions("u1").await?;
    /// mine.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    /// let mut expected = vec![a, b];
    /// expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    /// assert_eq!(mine, expected);
    /// # Ok(()) }
    /// ```
    pub async fn user_sessions(&self, user_id: &str) -> kvkit_core::Result<Vec<SessionId>> {
        let indexed = self.indexed(user_id).await?;
        let mut live = Vec::with_capacity(indexed.len());
        let max_batch = self.store.capabilities().max_batch_get.max(1);
        for chunk in indexed.chunks(max_batch) {
            let keys: Vec<String> = chunk.iter().map(SessionId::key).collect();
            let values = self.store.get_many(&keys).await?;
            live.extend(
                chunk
                    .iter()
                    .zip(values)
                    .filter(|(_, value)| value.is_some())
                    .map(|(id, _)| id.clone()),
            );
        }
        Ok(live)
    }

    /// Destroys every session of `user_id` created through this library ("log out
    /// everywhere") and returns how many index entries were removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let sessions = kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new());
    /// let a = sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// sessions.create_for("u1", "ada@example.com", "admin").await?;
    /// assert_eq!(sessions.destroy_user_sessions("u1").await?, 2);
    /// assert_eq!(sessions.get(a.as_str()).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn destroy_user_sessions(&self, user_id: &str) -> kvkit_core::Result<usize> {
        let indexed = self.indexed(user_id).await?;
        let mut keys = Vec::with_capacity(indexed.len() * 2);
        for id in &indexed {
            keys.push(id.key());
            keys.extend(self.index_key(Some(user_id), id));
        }
        self.store.delete_many(&keys).await?;
        Ok(indexed.len())
    }

    /// The session ids in the index of `user_id`. Entries of another user whose id extends
    /// this one (`a` and `a:b`) do not parse as ids after the prefix, so they are skipped.
    async fn indexed(&self, user_id: &str) -> kvkit_core::Result<Vec<SessionId>> {
        let prefix = format!("{USER_INDEX_PREFIX}{user_id}:");
        if self.store.capabilities().check_key(&prefix).is_err() {
            return Ok(Vec::new());
        }
        let keys: Vec<_> = self.store.list_stream(&prefix).try_collect().await?;
        Ok(keys
            .iter()
            .filter_map(|info| info.name.strip_prefix(&prefix))
            .filter_map(SessionId::parse)
            .collect())
    }

    fn refresh_due(&self, metadata: Option<&serde_json::Value>) -> bool {
        let last = metadata
            .and_then(|m| m.get(REFRESHED_AT))
            .and_then(serde_json::Value::as_u64);
        match last {
            Some(last) => {
                let interval = u64::try_from(self.refresh_interval.as_millis()).unwrap_or(u64::MAX);
                unix_ms(self.clock.now()).saturating_sub(last) >= interval
            }
            None => true,
        }
    }

    /// Writes the session's bytes back unchanged with a full TTL, and its index entry.
    /// Writes the session back with a fresh TTL: with the version it was read at, a
    /// compare-and-set that leaves a session destroyed or changed since as it is; without one
    /// (a store without conditional writes), a plain write, in one batch with its index entry.
    async fn rewrite(
        &self,
        id: &SessionId,
        value: Bytes,
        version: Option<Version>,
        user_id: Option<&str>,
    ) -> kvkit_core::Result<()> {
        let index_key = self.index_key(user_id, id);
        let Some(version) = version else {
            let mut items = vec![PutItem::new(id.key(), value).options(self.write_options())];
            if let Some(index_key) = index_key {
                items.push(PutItem::new(index_key, Bytes::new()).options(self.index_options()));
            }
            return self.store.put_many(items).await;
        };
        let options = self.write_options().if_version(version);
        match self.store.put(&id.key(), value, options).await {
            Ok(()) => {}
            // Destroyed, rotated or rewritten since it was read: nothing to refresh.
            Err(Error::ConditionFailed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        match index_key {
            Some(index_key) => {
                self.store
                    .put(&index_key, Bytes::new(), self.index_options())
                    .await
            }
            None => Ok(()),
        }
    }

    fn write_options(&self) -> PutOptions {
        PutOptions::new()
            .ttl(self.ttl)
            .metadata(json!({ REFRESHED_AT: unix_ms(self.clock.now()) }))
    }

    fn index_options(&self) -> PutOptions {
        PutOptions::new().ttl(self.ttl)
    }

    /// The index key of a session, when the index is on, the session has a user, and the key
    /// fits the backend.
    fn index_key(&self, user_id: Option<&str>, id: &SessionId) -> Option<String> {
        let user_id = user_id.filter(|_| self.user_index)?;
        let key = format!("{USER_INDEX_PREFIX}{user_id}:{}", id.as_str());
        self.store
            .capabilities()
            .check_key(&key)
            .is_ok()
            .then_some(key)
    }
}

fn encode<D: Serialize>(data: &D) -> kvkit_core::Result<Bytes> {
    serde_json::to_vec(data)
        .map(Bytes::from)
        .map_err(|e| Error::encode("session", e))
}

fn decode<D: DeserializeOwned>(raw: &[u8]) -> Option<D> {
    match serde_json::from_slice(raw) {
        Ok(data) => Some(data),
        Err(error) => {
            tracing::warn!(target: "kvkit::session", %error, "stored session did not decode; treating it as absent");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use kvkit_core::{
        Capabilities, CounterOptions, Entry, ErrorKind, ListOptions, ListPage, Result,
    };
    use kvkit_memory::MemoryStore;

    use super::*;

    /// A memory store whose writes fail as a store that went away does.
    #[derive(Debug)]
    struct WritesFail(MemoryStore);

    fn down() -> Error {
        Error::backend("test", "connection lost", true, "reset by peer")
    }

    #[kvkit_core::backend::async_trait]
    impl KvStore for WritesFail {
        fn capabilities(&self) -> &Capabilities {
            self.0.capabilities()
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>> {
            self.0.get(key).await
        }
        async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
            self.0.get_with_metadata(key).await
        }
        async fn put(&self, _: &str, _: Bytes, _: PutOptions) -> Result<()> {
            Err(down())
        }
        async fn put_if_absent(&self, _: &str, _: Bytes, _: PutOptions) -> Result<bool> {
            Err(down())
        }
        async fn delete(&self, _: &str) -> Result<()> {
            Err(down())
        }
        async fn delete_if_version(&self, _: &str, _: &Version) -> Result<()> {
            Err(down())
        }
        async fn list(&self, options: ListOptions) -> Result<ListPage> {
            self.0.list(options).await
        }
        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
            self.0.get_many(keys).await
        }
        async fn put_many(&self, _: Vec<PutItem>) -> Result<()> {
            Err(down())
        }
        async fn delete_many(&self, _: &[String]) -> Result<()> {
            Err(down())
        }
        async fn increment(&self, _: &str, _: i64, _: CounterOptions) -> Result<i64> {
            Err(down())
        }
    }

    #[tokio::test]
    async fn a_failed_refresh_write_fails_refresh_but_not_the_read() {
        let memory = MemoryStore::new();
        let id = SessionManager::new(memory.clone())
            .create_for("u1", "ada@example.com", "admin")
            .await
            .expect("create");
        let sessions = SessionManager::<_>::builder(WritesFail(memory))
            .refresh_interval(Duration::ZERO)
            .build();
        let read = sessions.get_and_refresh(id.as_str()).await.expect("read");
        assert_eq!(read.expect("live").email, "ada@example.com");
        let error = sessions.refresh(id.as_str()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
}
