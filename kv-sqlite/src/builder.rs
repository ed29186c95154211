//! Configuring and opening a store, from a builder or a `sqlite:` URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kvkit_core::{Capabilities, Clock, Error, Result, SystemClock};

use crate::errors::BACKEND;
use crate::store::SqliteStore;

/// What an acknowledged write survives.
///
/// Both settings run the database in WAL mode, and a write is acknowledged only once the
/// transaction holding it has committed; they differ in when SQLite syncs the WAL file to disk.
///
/// ```
/// use kvkit_sqlite::Durability;
/// assert_eq!(Durability::default(), Durability::Full);
/// assert_eq!("normal".parse::<Durability>().unwrap(), Durability::Normal);
/// assert!("fast".parse::<Durability>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous=FULL`: every commit syncs the WAL before it returns, so an
    /// acknowledged write survives a crash of the process **and** a power loss or a crash of the
    /// operating system (as far as the disk honours `fsync`). The default. Group commit shares
    /// one sync among all the writes waiting at the time.
    #[default]
    Full,
    /// `PRAGMA synchronous=NORMAL`: commits do not sync; the WAL is synced only when it is
    /// checkpointed into the database. An acknowledged write survives a crash (or a kill) of the
    /// process, since the operating system still holds it, but the last commits may be lost on
    /// a power loss or an operating-system crash. The database stays consistent either way.
    Normal,
}

impl Durability {
    /// The value of `PRAGMA synchronous`.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(Error::configuration(
                BACKEND,
                format!("unknown durability {s:?} (expected full or normal)"),
            )),
        }
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A file (created if missing), with its `-wal` and `-shm` files beside it.
    File(PathBuf),
    /// A private in-memory database, gone when the store is dropped.
    Memory,
}

/// How many reader connections a file store opens unless told otherwise.
const DEFAULT_READERS: usize = 4;

/// Configures a [`SqliteStore`].
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{KvStore, PutOptions};
/// use kvkit_sqlite::{Durability, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("kvkit-sqlite-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::builder()
///     .path(dir.join("builder.db"))
///     .durability(Durability::Normal)
///     .busy_timeout(Duration::from_secs(2))
///     .open()
///     .await?;
/// store.put("k", "v".into(), PutOptions::new()).await?;
/// assert_eq!(store.get("k").await?.as_deref(), Some(&b"v"[..]));
/// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteBuilder {
    pub(crate) location: Option<Location>,
    pub(crate) durability: Durability,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) caps: Capabilities,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) reap_interval: Duration,
    pub(crate) max_size: Option<u64>,
}

impl fmt::Debug for SqliteBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBuilder")
            .field("location", &self.location)
            .field("durability", &self.durability)
            .field("clock", &self.clock)
            .field("readers", &self.readers)
            .field("busy_timeout", &self.busy_timeout)
            .field("reap_interval", &self.reap_interval)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl Default for SqliteBuilder {
    fn default() -> Self {
        Self {
            location: None,
            durability: Durability::Full,
            clock: Arc::new(SystemClock),
            caps: Capabilities::new(BACKEND),
            readers: DEFAULT_READERS,
            busy_timeout: Duration::from_secs(5),
            reap_interval: Duration::from_secs(1),
            max_size: None,
        }
    }
}

impl SqliteBuilder {
    /// Parses a `sqlite:` URL into a builder:
    ///
    /// | URL | database |
    /// |---|---|
    /// | `sqlite:path/to/file.db` | a file, relative to the working directory |
    /// | `sqlite:/var/lib/app/kv.db` or `sqlite:///var/lib/app/kv.db` | a file, absolute |
    /// | `sqlite::memory:` | a private in-memory database (for tests) |
    ///
    /// A query may set `durability=full` (the default) or `durability=normal`, e.g.
    /// `sqlite:kv.db?durability=normal`. The file is created if it does not exist.
    ///
    /// ```
    /// use kvkit_sqlite::SqliteBuilder;
    /// assert!(SqliteBuilder::from_url("sqlite:data/kv.db").is_ok());
    /// assert!(SqliteBuilder::from_url("sqlite:///var/lib/kv.db?durability=normal").is_ok());
    /// assert!(SqliteBuilder::from_url("sqlite::memory:").is_ok());
    /// for bad in ["redis://h", "sqlite:", "sqlite:kv.db?durability=fast", "sqlite:kv.db?mode=ro"] {
    ///     let err = SqliteBuilder::from_url(bad).unwrap_err();
    ///     assert_eq!(err.kind(), kvkit_core::ErrorKind::Configuration, "{bad}");
    /// }
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let Some(rest) = url
            .split_once(':')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("sqlite"))
            .map(|(_, rest)| rest)
        else {
            return Err(Error::configuration(
                BACKEND,
                "a SQLite URL starts with sqlite: (sqlite:path/to/file.db or sqlite::memory:)",
            ));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut builder = Self::default();
        builder = match path {
            ":memory:" => builder.in_memory(),
            "" | "//" => {
                return Err(Error::configuration(
                    BACKEND,
                    "a SQLite URL needs a file path (sqlite:path/to/file.db) or :memory:",
                ));
            }
            _ => builder.path(path.strip_prefix("//").unwrap_or(path)),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("durability", value)) => builder = builder.durability(value.parse()?),
                _ => {
                    return Err(Error::configuration(
                        BACKEND,
                        format!(
                            "unknown SQLite URL parameter {:?} (only durability=full|normal)",
                            pair.split('=').next().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(builder)
    }

    /// Keeps the database in the file at `path` (created if missing; its directory must exist),
    /// with SQLite's `-wal` and `-shm` files beside it. The directory must be on a local file
    /// system: WAL mode does not work over a network file system.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join("kvkit-sqlite-doc-path.db");
    /// let builder = kvkit_sqlite::SqliteStore::builder().path(&path);
    /// assert!(format!("{builder:?}").contains("kvkit-sqlite-doc-path.db"));
    /// ```
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.location = Some(Location::File(path.as_ref().to_owned()));
        self
    }

    /// Keeps the database in memory, private to this store and gone when it is dropped: for
    /// tests. It has no WAL, so its reads are served by the writer's thread, between commits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// use kvkit_core::{KvStore, PutOptions};
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().open().await?;
    /// store.put("k", "v".into(), PutOptions::new()).await?;
    /// assert!(store.get("k").await?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.location = Some(Location::Memory);
        self
    }

    /// What an acknowledged write survives; see [`Durability`]. Default: [`Durability::Full`].
    ///
    /// ```
    /// use kvkit_sqlite::{Durability, SqliteStore};
    /// let builder = SqliteStore::builder().durability(Durability::Normal);
    /// assert!(format!("{builder:?}").contains("Normal"));
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The clock that decides expiry (default: the system clock). Tests pass a
    /// [`ManualClock`](kvkit_core::ManualClock) and never sleep.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_core::{KvStore, KvStoreExt, ManualClock};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let clock = ManualClock::new();
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().clock(clock.clone()).open().await?;
    /// store.put_with_ttl("session", "data", Duration::from_secs(30)).await?;
    /// clock.advance(Duration::from_secs(31));
    /// assert_eq!(store.get("session").await?, None);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits the store enforces (default [`Capabilities::new`]: keys up to 64 KiB, values
    /// up to 512 MiB, metadata up to 64 KiB). The backend name and guarantees stay the store's.
    ///
    /// ```
    /// use kvkit_core::{Capabilities, KvStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let caps = Capabilities::new("any").with_max_value_bytes(4);
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().capabilities(caps).open().await?;
    /// assert_eq!(store.capabilities().backend, "sqlite");
    /// assert!(store.put("k", "12345".into(), Default::default()).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        let mut caps = caps;
        caps.backend = BACKEND;
        self.caps = caps
            .with_atomic(true, true)
            .with_conditional_writes(true)
            .with_exact_metadata(true)
            .with_consistency(kvkit_core::Consistency::Strong);
        self
    }

    /// How many reader connections, each on its own thread, serve reads of a file database
    /// (default 4; at least 1).
    ///
    /// ```
    /// let builder = kvkit_sqlite::SqliteStore::builder().readers(2);
    /// assert!(format!("{builder:?}").contains("readers: 2"));
    /// ```
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long a connection waits for another process's lock on the file before the call
    /// fails with [`Error::Timeout`] (default 5 s), instead of failing at once with "database is
    /// locked".
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = kvkit_sqlite::SqliteStore::builder().busy_timeout(Duration::from_millis(250));
    /// assert!(format!("{builder:?}").contains("250ms"));
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How often the writer thread looks for expired rows to delete (default every second), up
    /// to 256 rows per short transaction; it keeps going while there are more.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = kvkit_sqlite::SqliteStore::builder().reap_interval(Duration::from_millis(100));
    /// assert!(format!("{builder:?}").contains("100ms"));
    /// ```
    pub fn reap_interval(mut self, interval: Duration) -> Self {
        self.reap_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Caps the database at about `bytes` (SQLite's `max_page_count`, in whole pages): a write
    /// that would grow it further fails as a full disk does, with a retryable
    /// [`Error::Backend`] (kind [`Unavailable`](kvkit_core::ErrorKind::Unavailable)) and nothing of
    /// its transaction written, until deletes (or the reclamation of expired rows) free pages.
    /// Default: no limit but the disk's.
    ///
    /// ```
    /// use kvkit_core::{ErrorKind, KvStore, PutOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_sqlite::SqliteStore::builder().in_memory().max_size(64 * 1024).open().await?;
    /// let big = vec![7u8; 128 * 1024];
    /// let err = store.put("big", big.into(), PutOptions::new()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// assert_eq!(store.get("big").await?, None);
    /// # Ok(()) }
    /// ```
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Opens (or creates) the database, checks and migrates its schema, and starts the writer
    /// and reader threads. The SQLite calls run on those threads, never on the caller's.
    ///
    /// Fails with [`Error::Configuration`] without a [`path`](Self::path) or
    /// [`in_memory`](Self::in_memory), for a file that is not a SQLite database, and for a
    /// database written by a newer schema version; with [`Error::PermissionDenied`] for a file
    /// that cannot be written.
    ///
    /// ```
    /// use kvkit_core::ErrorKind;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = kvkit_sqlite::SqliteStore::builder().open().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Configuration);
    /// # }
    /// ```
    pub async fn open(self) -> Result<SqliteStore> {
        SqliteStore::start(self).await
    }
}
