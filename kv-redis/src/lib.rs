//! The Redis backend of `kvkit`: the whole [`KvStore`] contract on a single Redis server or a Redis
//! Cluster, over one multiplexed connection that reconnects by itself.
//!
//! ```no_run
//! use kvkit_core::{KvStore, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! let store = kvkit_redis::RedisStore::builder("redis://127.0.0.1:6379")
//!     .namespace("myapp:")
//!     .connect()
//!     .await?;
//! store.put("user:1", "Ada".into(), PutOptions::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # How data is laid out
//!
//! Under a namespace `ns` (default `kv:`), a key `k` is stored as:
//!
//! | Redis key | type | holds |
//! |---|---|---|
//! | `ns` `v:` `k` | string | the value, with the entry's expiry as a Redis TTL (millisecond precision) |
//! | `ns` `i` | sorted set | every key name, all with score 0: the ordered index |
//! | `ns` `x` | sorted set | the keys that expire, scored by their expiry time in unix ms |
//!
//! A value without metadata is stored as it is, so counters are plain decimal strings that
//! `INCRBY` understands and a `get` is one `GET`, as fast as the raw crate. A value with metadata
//! (or one that happens to begin with the frame marker) is framed: the 4-byte marker
//! `ff 4b 56 01`, the metadata's JSON length as a big-endian `u32`, the JSON, then the value.
//! Value and metadata therefore change together in one `SET`. A value may be up to 512 MiB less
//! the frame header and the largest metadata (64 KiB), so that any framed value fits one Redis
//! argument (`proto-max-bulk-len`, 512 MB by default); a larger one is refused before any I/O.
//!
//! It needs Redis 7.0 or later (`PEXPIRETIME`, functions); Debian's `redis-server` 7.0 is what
//! the tests run.
//!
//! A put is one `MULTI`/`EXEC` round trip: `SET` with the expiry, `ZADD` to the index, and for an
//! expiring key `ZADD` to the expiry index. Put-if-absent is `SET NX` and the index updates in one
//! Lua script, so it is atomic.
//!
//! An entry's [`Version`] is the SHA-1 of its stored bytes (value and metadata) and its
//! `PEXPIRETIME`, computed by the client on `get_with_metadata` and by the server in the Lua
//! scripts of `put(…, PutOptions::new().if_version(v))` and `delete_if_version`, which compare
//! and write in one atomic step: no extra key per entry, and a `get` stays one `GET`. A key
//! rewritten with exactly the same value, metadata and expiry keeps its version.
//!
//! # Counters: one short call, a second one to create
//!
//! An increment of an existing counter is one round trip: a short Lua routine given only the
//! value key and the delta (no argument at all for the usual delta of 1) runs `EXISTS`, then
//! `INCRBY`, leaving the counter's expiry and index entries as they are. When the key is absent
//! (or expired), that routine changes nothing and answers so, and a second script creates the
//! counter: `INCRBY`, the expiry, and both index entries, or a plain `INCRBY` if another client
//! created it meanwhile. Each call is atomic, so an increment that fails or is interrupted
//! between the two never leaves a counter without its expiry or missing from the listing, and a
//! counter that exists is always indexed.
//!
//! The short routine runs as a Redis function (`FCALL`): the store loads its library, named
//! `kv_` and a hash of its code (so stores of different versions never replace each other's), on
//! first use and again whenever a server lacks it (on a cluster, on every primary). Where the
//! server refuses functions (an ACL without `FCALL` or `FUNCTION`, or a Redis-compatible server
//! without them), the store runs the same code as a script (`EVALSHA`) from then on.
//!
//! The trade-off: a counter's first increment (for a rate limiter, the first request of each
//! window) takes two round trips, so that every other increment carries no index keys or expiry
//! arguments, and Redis charges for every argument a script receives. Measured as
//! `redis-server` CPU time per increment of an existing counter on Redis 7.0: 8.0 µs for one
//! script doing both (it needs three keys and four arguments), 6.1 µs for the short one as a
//! script with the delta, 5.8 µs without it, 5.3 µs as a function without it; an `INCR` +
//! `EXPIRE` pipeline costs 3.1 µs. A `MULTI`/`EXEC` of `SET NX PX`, `INCRBY` and the index `ZADD` cost 7.2 µs, and
//! more on the client.
//!
//! # Listing without scanning: the trade-off
//!
//! Redis `SCAN` is unordered and walks the whole keyspace, so listing uses the `ns i` sorted set
//! instead: `ZRANGE … BYLEX` from the prefix (or after the cursor) returns keys in byte order in
//! O(log n + limit), however many other keys the database holds, and a prefix holding `*`, `?` or
//! `[` is matched literally. The cost is on writes of new keys, which also enter the index, and
//! on memory: the index takes roughly 40-60 bytes of Redis memory per key.
//!
//! An overwrite relies on the existing key being indexed already, so the index keys must never
//! be evicted: run Redis with `maxmemory-policy noeviction` or a `volatile-*` policy (the index
//! sorted sets have no TTL), not `allkeys-*`.
//!
//! Redis expires values on its own, so the index can hold names of keys that have expired. A
//! listing skips them and removes them as it meets them, and one in sixteen expiring writes also
//! sweeps up to 32 due entries from both indexes (found through `ns x`), so dead names cannot
//! pile up even if nothing ever lists them. Keys written to these Redis keys by anything other
//! than this store are not indexed.
//!
//! # Redis Cluster
//!
//! [`RedisStore::cluster`] spreads keys over 16 shards (configurable), each with its own hash
//! tag: key `k` of shard `s` lives under `{h:s}ns v:k`, where `h` is the namespace's
//! [`stable_hash`](kvkit_core::stable_hash) in hex, next to its shard's two indexes, so every
//! transaction and script touches one slot. The tag holds no part of the namespace, so any
//! namespace works, even one holding `{` or `}` (which would otherwise end the tag early and
//! spread a key's value and indexes over different slots). A listing runs the page script on every shard and merges the pages;
//! a batch runs one transaction per shard.
//!
//! # Failures
//!
//! Every operation is bounded by a timeout (default 2 s): while Redis is unreachable, calls fail
//! with a retryable [`Error`] ([`Error::is_retryable`]) instead of hanging, and the connection
//! comes back by itself once Redis does. Passwords in URLs never appear in `Debug` or errors.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, Expiry, KeyInfo, KvStore, ListOptions,
    ListPage, PutItem, PutOptions, Result, SystemClock, Version, WriteCondition, cursor,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RetryMethod, Script, ServerErrorKind};

const BACKEND: &str = "redis";
/// Items in one batch script, so a huge batch never blocks Redis for long.
const BATCH_CHUNK: usize = 1000;

/// Marks a framed value: metadata length, metadata JSON, then the value.
const FRAME_MAGIC: [u8; 4] = [0xff, b'K', b'V', 0x01];
/// One expiring write in this many also sweeps the expiry index.
const SWEEP_EVERY: u64 = 16;
/// Entries one sweep handles at most.
const SWEEP_BATCH: usize = 32;

static PUT_IF_ABSENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_if_absent.lua")));
static INCR: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/incr.lua")));
static INCR_EXISTING: LazyLock<Routine> =
    LazyLock::new(|| Routine::new(include_str!("lua/incr_existing.lua")));
static SWAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/swap.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/sweep.lua")));
static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/list.lua")));
static PUT_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_if_version.lua")));
static DELETE_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_if_version.lua")));

/// The version of a stored entry: the SHA-1 of its stored (framed) bytes and its `PEXPIRETIME`,
/// as the conditional-write scripts compute them on the server.
fn version_of(stored: &[u8], pexpiretime: i64) -> Version {
    let digest = sha1_smol::Sha1::from(stored).digest();
    Version::from_token(format!("{digest}:{pexpiretime}"))
}

/// The largest argument Redis accepts (`proto-max-bulk-len`, 512 MB by default).
const MAX_BULK_BYTES: usize = 512 * 1024 * 1024;
/// The frame's header: the magic and the metadata length.
const FRAME_HEADER_BYTES: usize = FRAME_MAGIC.len() + 4;

/// What this backend allows: a value is limited so that, framed with the largest metadata, it
/// still fits one Redis argument. An oversized write is then refused before any I/O, instead of
/// the server dropping the connection that every call in flight shares.
fn capabilities() -> Capabilities {
    let caps = Capabilities::new(BACKEND);
    let max_value = MAX_BULK_BYTES - FRAME_HEADER_BYTES - caps.max_metadata_bytes;
    caps.with_max_value_bytes(max_value)
}

/// The stored form of a value: as it is, or framed with its metadata.
fn frame(value: Bytes, metadata_json: Option<&str>) -> Bytes {
    match metadata_json {
        None if !value.starts_with(&FRAME_MAGIC) => value,
        _ => {
            let meta = metadata_json.unwrap_or_default().as_bytes();
            // Metadata is validated against max_metadata_bytes (far below 4 GiB) before this.
            let len = u32::try_from(meta.len()).unwrap_or(u32::MAX);
            let mut framed = Vec::with_capacity(8 + meta.len() + value.len());
            framed.extend_from_slice(&FRAME_MAGIC);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(meta);
            framed.extend_from_slice(&value);
            Bytes::from(framed)
        }
    }
}

/// Splits a stored value into the value and its metadata JSON (empty when none).
fn unframe(stored: Bytes) -> (Bytes, Bytes) {
    if stored.len() >= 8 && stored.starts_with(&FRAME_MAGIC) {
        let len = u32::from_be_bytes([stored[4], stored[5], stored[6], stored[7]]);
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(8))
            .filter(|&end| end <= stored.len());
        if let Some(end) = end {
            return (stored.slice(end..), stored.slice(8..end));
        }
    }
    (stored, Bytes::new())
}

/// The connection: one multiplexed connection to a server, or a cluster connection.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            // Boxed, so the cluster's larger future does not grow every single-server call.
            Conn::Cluster(c) => Box::pin(cmd.query_async(&mut c.clone())).await,
        }
    }

    async fn pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => Box::pin(pipe.query_async(&mut c.clone())).await,
        }
    }

    /// Runs a script call built by [`script_call`]; a server that does not know the script
    /// (restarted, flushed, or a new cluster node) gets it loaded and the call is retried once.
    async fn eval<T: FromRedisValue>(&self, script: &Script, call: &Cmd) -> redis::RedisResult<T> {
        match self.query(call).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Box::pin(self.load(script)).await?;
                self.query(call).await
            }
            result => result,
        }
    }

    /// Runs a call built by [`Routine::call`]; a server that has neither the function's library
    /// nor the script (restarted, flushed, or a new cluster node) gets it loaded (the library on
    /// every primary of a cluster) and the call is retried once.
    async fn routine<T: FromRedisValue>(
        &self,
        routine: &Routine,
        function: bool,
        call: &Cmd,
    ) -> redis::RedisResult<T> {
        if !function {
            return self.eval(&routine.script, call).await;
        }
        match self.query(call).await {
            Err(e) if e.detail() == Some("Function not found") => {
                let mut load = redis::cmd("FUNCTION");
                load.arg("LOAD").arg("REPLACE").arg(&routine.library);
                Box::pin(self.query::<()>(&load)).await?;
                self.query(call).await
            }
            result => result,
        }
    }

    async fn load(&self, script: &Script) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => script.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => script.load_async(&mut c.clone()).await,
        }
    }
}

/// Lua code run as a Redis function (`FCALL`) where the server allows it, else as a script
/// (`EVALSHA`). Redis finds a function by its short name for less than it spends finding a script
/// by its SHA1: on Redis 7.0, ~0.5 µs of server time a call, worth it on the hottest path.
struct Routine {
    script: Script,
    /// `kv_` and a hash of the code: the function's name and its library's, so that stores of
    /// different versions sharing a server never replace each other's code.
    name: String,
    /// The library's source, for `FUNCTION LOAD`.
    library: String,
}

impl Routine {
    fn new(body: &str) -> Self {
        let name = format!("kv_{:016x}", kvkit_core::stable_hash(body));
        let library = format!(
            "#!lua name={name}\nredis.register_function('{name}', function(KEYS, ARGV)\n{body}end)\n"
        );
        Self {
            script: Script::new(body),
            name,
            library,
        }
    }

    /// The `FCALL` (or, without `function`, the `EVALSHA`) with `keys` keys: the keys, then the
    /// arguments, are added to it by the caller.
    fn call(&self, keys: usize, function: bool) -> Cmd {
        if !function {
            return script_call(&self.script, keys);
        }
        let mut call = Cmd::with_capacity(16, 256);
        call.arg("FCALL").arg(&self.name).arg(keys);
        call
    }
}

/// Whether a call failed because the server refuses functions (an ACL without `FCALL` or
/// `FUNCTION`, or a Redis-compatible server without them), so a script must do instead.
fn refuses_functions(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || e.detail().is_some_and(|d| d.starts_with("unknown command"))
}

/// The `EVALSHA` of `script` with `keys` keys: the keys, then the arguments, are added to it by
/// the caller, written straight into the command's buffer.
fn script_call(script: &Script, keys: usize) -> Cmd {
    // Room for the arguments of a typical call, so building it does not reallocate.
    let mut call = Cmd::with_capacity(16, 256);
    call.arg("EVALSHA");
    call.arg(script.get_hash()).arg(keys);
    call
}

/// Where keys live: the namespace, and on a cluster the shard hash tags.
#[derive(Debug, Clone)]
struct Layout {
    namespace: String,
    /// Number of hash-tagged shards on a cluster; `None` on a single server.
    shards: Option<u32>,
}

impl Layout {
    fn shard_count(&self) -> u32 {
        self.shards.unwrap_or(1)
    }

    fn shard_of(&self, key: &str) -> u32 {
        match self.shards {
            None => 0,
            Some(n) => {
                let hash = kvkit_core::stable_hash(key);
                // The modulo keeps the value below n, a u32.
                (hash % u64::from(n)) as u32
            }
        }
    }

    fn base(&self, shard: u32) -> String {
        match self.shards {
            None => self.namespace.clone(),
            Some(_) => format!(
                "{{{:016x}:{shard:02}}}{}",
                kvkit_core::stable_hash(&self.namespace),
                self.namespace
            ),
        }
    }
}

/// Keys of one shard.
struct ShardKeys {
    base: String,
    index: String,
    expiry: String,
}

impl ShardKeys {
    fn new(layout: &Layout, shard: u32) -> Self {
        let base = layout.base(shard);
        Self {
            index: format!("{base}i"),
            expiry: format!("{base}x"),
            base,
        }
    }

    fn value(&self, key: &str) -> String {
        format!("{}v:{key}", self.base)
    }

    /// The value key as a command argument, written straight into the command's buffer.
    fn value_arg<'a>(&'a self, key: &'a str) -> ValueKey<'a> {
        ValueKey {
            base: &self.base,
            key,
        }
    }
}

/// A value key written as one command argument without an intermediate `String`.
struct ValueKey<'a> {
    base: &'a str,
    key: &'a str,
}

impl ValueKey<'_> {
    fn len(&self) -> usize {
        self.base.len() + 2 + self.key.len()
    }
}

impl redis::ToRedisArgs for ValueKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg
            .write_all(self.base.as_bytes())
            .and_then(|()| arg.write_all(b"v:"))
            .and_then(|()| arg.write_all(self.key.as_bytes()));
    }
}

impl redis::ToSingleRedisArg for ValueKey<'_> {}

struct Inner {
    conn: Conn,
    layout: Layout,
    /// The Redis key names of every shard, computed once.
    shards: Vec<ShardKeys>,
    caps: Capabilities,
    timeout: Duration,
    /// Expiring writes so far, to sweep the expiry index on one in `SWEEP_EVERY`.
    expiring_writes: AtomicU64,
    /// Whether hot paths call Redis functions; cleared for good when the server refuses them.
    functions: AtomicBool,
    /// The URL(s) with any password replaced, for `Debug`.
    display: String,
}

/// A [`KvStore`] on Redis or Redis Cluster. Cheap to clone: clones share the connection.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_redis::RedisStore::connect("redis://:secret@127.0.0.1:6379").await?;
/// assert!(!format!("{store:?}").contains("secret"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.display)
            .field("namespace", &self.inner.layout.namespace)
            .field("shards", &self.inner.layout.shards)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Replaces the password of a `redis://user:password@host` URL with `***`.
///
/// ```
/// assert_eq!(kvkit_redis::redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
/// assert_eq!(kvkit_redis::redact_url("rediss://:pw@h"), "rediss://:***@h");
/// assert_eq!(kvkit_redis::redact_url("redis://h:6379"), "redis://h:6379");
/// assert_eq!(kvkit_redis::redact_url("redis://u:pa/ss@h"), "redis://u:***@h");
/// assert_eq!(
///     kvkit_redis::redact_url("redis+unix:///tmp/r.sock?db=0&pass=secret"),
///     "redis+unix:///tmp/r.sock?db=0&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The password may hold an unencoded `/`, so the user info ends at the last `@` before any
    // query or fragment.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (address, query) = rest.split_at(end);
    let address = match address.rfind('@') {
        None => address.to_owned(),
        Some(at) => {
            let masked = match address[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{masked}{}", &address[at..])
        }
    };
    // A unix-socket URL carries the password as a query parameter.
    let query: String = query
        .split_inclusive(['?', '&', '#'])
        .map(|part| match part.split_once('=') {
            Some((name, value)) if name == "pass" || name == "password" => {
                let tail = value.chars().last().filter(|c| matches!(c, '&' | '#'));
                format!("{name}=***{}", tail.map(String::from).unwrap_or_default())
            }
            _ => part.to_owned(),
        })
        .collect();
    format!("{scheme}://{address}{query}")
}

/// Configures a [`RedisStore`].
///
/// ```no_run
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
///     .namespace("sessions:")
///     .timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBuilder {
    /// PEM root certificates to trust instead of the system's, for `rediss://`.
    #[cfg(feature = "tls")]
    root_certificates: Option<Vec<u8>>,
    urls: Vec<String>,
    cluster: bool,
    namespace: String,
    connect_timeout: Duration,
    timeout: Duration,
    shards: u32,
}

impl fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisBuilder")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("namespace", &self.namespace)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl RedisBuilder {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self {
            #[cfg(feature = "tls")]
            root_certificates: None,
            urls,
            cluster,
            namespace: "kv:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            shards: 16,
        }
    }

    /// Prefix of every Redis key this store uses (default `kv:`), so several applications can
    /// share one Redis.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://127.0.0.1").namespace("app1:");
    /// # let _ = builder;
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long to wait for a connection (default 2 s).
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .connect_timeout(std::time::Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest any operation may take before it fails with [`Error::Timeout`] (default 2 s).
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .timeout(std::time::Duration::from_millis(250));
    /// # let _ = builder;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// On a cluster, how many hash-tagged shards keys are spread over (default 16; at least 1).
    /// Every listing reads all shards, so more shards spread load but make listing dearer.
    /// All stores sharing a namespace must use the same number.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]).shards(32);
    /// # let _ = builder;
    /// ```
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// Trusts these PEM root certificates (instead of the system's) for `rediss://` URLs, e.g. a
    /// private CA. Feature `tls` (on by default).
    ///
    /// ```
    /// let ca = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec();
    /// let builder = kvkit_redis::RedisStore::builder("rediss://redis.internal:6380")
    ///     .tls_root_certificates(ca);
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// The certificates to trust, if custom; installs the ring crypto provider unless the
    /// application installed one.
    #[cfg(feature = "tls")]
    fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        self.root_certificates
            .clone()
            .map(|pem| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            })
    }

    /// Connects, failing with a retryable error if Redis cannot be reached in time.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = kvkit_redis::RedisStore::builder("redis://127.0.0.1:1").connect().await.unwrap_err();
    /// assert!(err.is_retryable());
    /// # }
    /// ```
    pub async fn connect(self) -> Result<RedisStore> {
        let display = self
            .urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
        let config_error = |e: RedisError| Error::Configuration {
            backend: BACKEND,
            message: "the Redis client refused the connection settings".to_owned(),
            source: Some(Box::new(e)),
        };
        let conn = if self.cluster {
            #[allow(unused_mut)]
            let mut builder = redis::cluster::ClusterClientBuilder::new(self.urls.clone());
            #[cfg(feature = "tls")]
            if let Some(certificates) = self.tls_certificates() {
                builder = builder.certs(certificates);
            }
            let client = builder
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.timeout)
                .retries(2)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(config_error)?;
            let connect = client.get_async_connection();
            Conn::Cluster(bounded("connect", self.connect_timeout, connect).await?)
        } else {
            let [url] = self.urls.as_slice() else {
                return Err(Error::configuration(
                    BACKEND,
                    "a single-server store needs exactly one URL (use RedisStore::cluster for \
                     several nodes)",
                ));
            };
            #[cfg(feature = "tls")]
            let client = match self.tls_certificates() {
                Some(certificates) => redis::Client::build_with_tls(url.as_str(), certificates),
                None => redis::Client::open(url.as_str()),
            };
            #[cfg(not(feature = "tls"))]
            let client = redis::Client::open(url.as_str());
            let client = client.map_err(config_error)?;
            // Responses are bounded by the store's own per-operation timeout (one timer per
            // call, covering reconnection waits too), so the connection needs none of its own.
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(None)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(250))
                .set_number_of_retries(3);
            let connect = ConnectionManager::new_with_config(client, config);
            Conn::Single(bounded("connect", self.connect_timeout, connect).await?)
        };
        let layout = Layout {
            namespace: self.namespace,
            shards: self.cluster.then_some(self.shards),
        };
        let shards = (0..layout.shard_count())
            .map(|shard| ShardKeys::new(&layout, shard))
            .collect();
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                layout,
                shards,
                caps: capabilities(),
                timeout: self.timeout,
                expiring_writes: AtomicU64::new(0),
                functions: AtomicBool::new(true),
                display,
            }),
        })
    }
}

/// Runs a Redis call under `timeout`, mapping every failure to [`Error`].
async fn bounded<T>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    within(operation, timeout, call)
        .await?
        .map_err(|e| redis_error(operation, e))
}

/// Runs a Redis call under `timeout`, mapping only the timeout to [`Error::Timeout`].
async fn within<T>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Error::Timeout {
            backend: BACKEND,
            operation,
            after: timeout,
        })
}

/// Classifies a redis-rs error by its kind and the server's error code, never its text.
fn redis_error(operation: &'static str, e: RedisError) -> Error {
    if e.is_timeout() {
        return Error::Backend {
            backend: BACKEND,
            message: format!("{operation} timed out"),
            retryable: true,
            source: Some(Box::new(e)),
        };
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return Error::PermissionDenied {
                backend: BACKEND,
                message: format!(
                    "{operation}: the server refused this user ({})",
                    e.code().unwrap_or("authentication failed")
                ),
            };
        }
        ErrorKind::InvalidClientConfig => {
            return Error::Configuration {
                backend: BACKEND,
                message: format!("{operation}: the Redis client refused its settings"),
                source: Some(Box::new(e)),
            };
        }
        _ => {}
    }
    // Failovers, resharding and loading (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, MASTERDOWN,
    // READONLY, LOADING) and lost connections are transient; redis-rs says which by kind.
    let transient = matches!(
        e.kind(),
        ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
            )
    ) || !matches!(e.retry_method(), RetryMethod::NoRetry);
    Error::backend(BACKEND, format!("{operation} failed"), transient, e)
}

/// The script mode and time argument of an expiry: `0` none, `1` relative ms, `2` absolute ms.
fn expiry_args(expiry: Option<Expiry>) -> (&'static str, u64) {
    match expiry {
        None => ("0", 0),
        Some(Expiry::Ttl(ttl)) => ("1", u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        Some(Expiry::At(secs)) => ("2", secs.saturating_mul(1000)),
    }
}

fn expiration_secs(at_ms: i64) -> Option<u64> {
    u64::try_from(at_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(|ms| ms.div_ceil(1000))
}

fn parse_metadata(key: &str, json: &[u8]) -> Result<Option<serde_json::Value>> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(json)
        .map(Some)
        .map_err(|e| Error::decode(key, e))
}

/// A checked write, ready to send.
struct Write {
    /// The value as stored (framed when it has metadata).
    stored: Bytes,
    expiry: Option<Expiry>,
}

impl Write {
    /// The expiry as a unix-ms score for the expiry index (refined by sweeps to the server's
    /// own time).
    fn expires_at_ms(&self, now_ms: u64) -> Option<u64> {
        kvkit_core::expires_at_ms(self.expiry, now_ms)
    }
}

/// The `SET` of a write, with its expiry; `only_existing` adds `XX`.
fn set_command(value_key: ValueKey<'_>, w: &Write, only_existing: bool) -> Cmd {
    // Sized for the whole command (the expiry takes at most 24 bytes), so it never reallocates.
    let mut set = Cmd::with_capacity(6, 32 + value_key.len() + w.stored.len());
    set.arg("SET").arg(value_key).arg(&w.stored[..]);
    let (_, when) = expiry_args(w.expiry);
    match w.expiry {
        Some(Expiry::Ttl(_)) => {
            set.arg("PX").arg(when);
        }
        Some(Expiry::At(_)) => {
            set.arg("PXAT").arg(when);
        }
        None => {}
    }
    if only_existing {
        set.arg("XX");
    }
    set
}

/// The page one shard returned.
type ShardPage = (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>, i64, Vec<u8>);

impl RedisStore {
    /// Connects to one server: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` (TLS, with the `tls` feature) or `redis+unix:///path/to/socket`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a store on one server.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://127.0.0.1:6379");
    /// # let _ = builder;
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(vec![url.into()], false)
    }

    /// Starts configuring a store on a Redis Cluster, given some of its nodes.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]);
    /// # let _ = builder;
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBuilder::new(nodes.into_iter().map(Into::into).collect(), true)
    }

    fn shard(&self, shard: u32) -> &ShardKeys {
        // Shard numbers come from `Layout::shard_of`, always below the shard count.
        &self.inner.shards[shard as usize]
    }

    fn keys_of(&self, key: &str) -> &ShardKeys {
        self.shard(self.inner.layout.shard_of(key))
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        bounded(operation, self.inner.timeout, call).await
    }

    fn check_write(&self, key: &str, value: Bytes, options: &PutOptions) -> Result<Write> {
        // Only an expiry needs the time.
        let now = options.expiry.map_or(0, |_| SystemClock.now_ms());
        let checked = self.inner.caps.check_put(key, value.len(), options, now)?;
        Ok(Write {
            stored: frame(value, checked.metadata_json.as_deref()),
            expiry: checked.expiry,
        })
    }

    /// Groups items by shard, keeping each item's position.
    fn by_shard<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<(u32, Vec<(usize, T)>)> {
        let mut groups: Vec<(u32, Vec<(usize, T)>)> = Vec::new();
        for (position, item) in items.into_iter().enumerate() {
            let shard = self.inner.layout.shard_of(key(&item));
            match groups.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, group)) => group.push((position, item)),
                None => groups.push((shard, vec![(position, item)])),
            }
        }
        groups
    }

    /// Writes a batch: per shard, one `MULTI`/`EXEC` of the `SET`s and the index updates.
    async fn write_batch(&self, writes: Vec<(Write, String)>) -> Result<()> {
        let now = SystemClock.now_ms();
        let groups = self.by_shard(writes, |(_, key)| key);
        let mut expiring_shards = Vec::new();
        let calls = groups.iter().flat_map(|(shard, group)| {
            let keys = self.shard(*shard);
            if group.iter().any(|(_, (w, _))| w.expiry.is_some()) {
                expiring_shards.push(*shard);
            }
            group.chunks(BATCH_CHUNK).map(move |chunk| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                let mut index = redis::cmd("ZADD");
                index.arg(&keys.index);
                let mut expiring = redis::cmd("ZADD");
                expiring.arg(&keys.expiry);
                let mut any_expiring = false;
                for (_, (w, key)) in chunk {
                    pipe.add_command(set_command(keys.value_arg(key), w, false))
                        .ignore();
                    index.arg(0).arg(key);
                    if let Some(at) = w.expires_at_ms(now) {
                        expiring.arg(at).arg(key);
                        any_expiring = true;
                    }
                }
                pipe.add_command(index).ignore();
                if any_expiring {
                    pipe.add_command(expiring).ignore();
                }
                async move { self.run("put", self.inner.conn.pipeline::<()>(&pipe)).await }
            })
        });
        try_join_all(calls.collect::<Vec<_>>()).await?;
        for shard in expiring_shards {
            self.maybe_sweep(shard).await;
        }
        Ok(())
    }

    /// `SET … XX` of an expiring key, with its expiry-index score in the same round trip.
    async fn overwrite_expiring(
        &self,
        set: Cmd,
        keys: &ShardKeys,
        key: &str,
        at: u64,
    ) -> Result<Option<()>> {
        let mut overwrite = redis::pipe();
        overwrite.add_command(set);
        overwrite
            .cmd("ZADD")
            .arg(&keys.expiry)
            .arg(at)
            .arg(key)
            .ignore();
        let (overwritten,): (Option<()>,) = self
            .run("put", self.inner.conn.pipeline(&overwrite))
            .await?;
        Ok(overwritten)
    }

    /// Writes `w` only if `key` is absent or expired, indexing it, atomically; returns whether
    /// it wrote.
    async fn write_if_absent(&self, key: &str, w: &Write) -> Result<bool> {
        self.write_by_script(&PUT_IF_ABSENT, "put_if_absent", key, w, None)
            .await
    }

    /// Writes `w` only if `key` still holds the entry of `version`, atomically; returns whether
    /// it wrote.
    async fn write_if_version(&self, key: &str, w: &Write, version: &Version) -> Result<bool> {
        match version.as_token() {
            Some(token) => {
                self.write_by_script(&PUT_IF_VERSION, "put", key, w, Some(token))
                    .await
            }
            None => Ok(false),
        }
    }

    /// Runs a conditional-write script (`put_if_absent.lua`, `put_if_version.lua`: the index
    /// keys and the value key, then the name, the value, the expiry and, for the second, the
    /// version); returns whether it wrote.
    async fn write_by_script(
        &self,
        script: &Script,
        operation: &'static str,
        key: &str,
        w: &Write,
        version: Option<&str>,
    ) -> Result<bool> {
        let (mode, when) = expiry_args(w.expiry);
        let keys = self.keys_of(key);
        let mut call = script_call(script, 3);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(keys.value_arg(key))
            .arg(key)
            .arg(&w.stored[..])
            .arg(mode)
            .arg(when);
        if let Some(version) = version {
            call.arg(version);
        }
        let written: i64 = self
            .run(operation, self.inner.conn.eval(script, &call))
            .await?;
        if written == 1 && w.expiry.is_some() {
            self.maybe_sweep(self.inner.layout.shard_of(key)).await;
        }
        Ok(written == 1)
    }

    /// Writes a new (or expired) key and indexes it, atomically.
    async fn create(
        &self,
        keys: &ShardKeys,
        key: &str,
        w: &Write,
        expires_at: Option<u64>,
    ) -> Result<()> {
        let mut create = redis::pipe();
        create.atomic();
        create
            .add_command(set_command(keys.value_arg(key), w, false))
            .ignore();
        create.cmd("ZADD").arg(&keys.index).arg(0).arg(key).ignore();
        if let Some(at) = expires_at {
            create
                .cmd("ZADD")
                .arg(&keys.expiry)
                .arg(at)
                .arg(key)
                .ignore();
        }
        self.run("put", self.inner.conn.pipeline::<()>(&create))
            .await
    }

    /// On one expiring write in `SWEEP_EVERY`, drops up to `SWEEP_BATCH` dead entries from the
    /// shard's indexes: twice what those writes can add, so the indexes cannot grow with
    /// expired keys.
    ///
    /// Best effort: the write it follows has succeeded, so a failed sweep is not reported (a
    /// caller would retry a write that is done); later writes and listings clean up instead.
    async fn maybe_sweep(&self, shard: u32) {
        if !self
            .inner
            .expiring_writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            return;
        }
        let keys = self.shard(shard);
        let mut call = script_call(&SWEEP, 2);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(&keys.base)
            .arg(SWEEP_BATCH);
        let _ = self
            .run("sweep", self.inner.conn.eval::<i64>(&SWEEP, &call))
            .await;
    }

    /// Adds `delta` to a counter whose value is framed with metadata (which `INCRBY` refuses),
    /// by compare-and-set, keeping the metadata and the TTL.
    async fn increment_framed(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
    ) -> Result<i64> {
        let keys = self.keys_of(key);
        let value_key = keys.value(key);
        loop {
            let mut get = redis::cmd("GET");
            get.arg(&value_key);
            let Some(stored) = self
                .run::<Option<Bytes>>("increment", self.inner.conn.query(&get))
                .await?
            else {
                // Deleted meanwhile: an ordinary increment creates it.
                return Box::pin(self.increment(key, delta, options)).await;
            };
            let (value, meta) = unframe(stored.clone());
            let next = kvkit_core::add_to_counter(key, &value, delta)?;
            let meta = (!meta.is_empty()).then(|| String::from_utf8_lossy(&meta).into_owned());
            let replacement = frame(Bytes::from(next.to_string()), meta.as_deref());
            let mut call = script_call(&SWAP, 1);
            call.arg(&value_key).arg(&stored[..]).arg(&replacement[..]);
            let swapped: i64 = self
                .run("increment", self.inner.conn.eval(&SWAP, &call))
                .await?;
            if swapped == 1 {
                return Ok(next);
            }
        }
    }

    /// The common path of an increment: adds `delta` to the counter if it exists, else changes
    /// nothing and returns `None`.
    async fn add_to_existing(&self, key: &str, delta: i64) -> redis::RedisResult<Option<i64>> {
        let call = |function| {
            let mut call = INCR_EXISTING.call(1, function);
            call.arg(self.keys_of(key).value_arg(key));
            // Every argument costs Redis time, so the usual delta of 1 goes without one.
            if delta != 1 {
                call.arg(delta);
            }
            call
        };
        let conn = &self.inner.conn;
        let functions = self.inner.functions.load(Ordering::Relaxed);
        match conn
            .routine(&INCR_EXISTING, functions, &call(functions))
            .await
        {
            Err(e) if functions && refuses_functions(&e) => {
                self.inner.functions.store(false, Ordering::Relaxed);
                Box::pin(conn.routine(&INCR_EXISTING, false, &call(false))).await
            }
            result => result,
        }
    }

    /// Adds `delta` to a counter the fast path found absent: the creating script gives a
    /// counter it creates the expiry and its index entries, atomically, and simply increments
    /// one created meanwhile.
    async fn increment_absent(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
        expiry: Option<Expiry>,
    ) -> Result<i64> {
        let (mode, when) = expiry_args(expiry);
        let keys = self.keys_of(key);
        let mut call = script_call(&INCR, 3);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(keys.value_arg(key))
            .arg(key)
            .arg(delta)
            .arg(mode)
            .arg(when);
        let result = self.inner.conn.eval::<i64>(&INCR, &call);
        match within("increment", self.inner.timeout, result).await? {
            Ok(n) => {
                if n == delta && expiry.is_some() {
                    self.maybe_sweep(self.inner.layout.shard_of(key)).await;
                }
                Ok(n)
            }
            Err(e) => self.counter_error(key, delta, options, e).await,
        }
    }

    /// Maps a Redis error of an increment; a framed value (a counter with metadata, which
    /// `INCRBY` refuses) takes the compare-and-set path instead.
    async fn counter_error(
        &self,
        key: &str,
        delta: i64,
        options: CounterOptions,
        e: RedisError,
    ) -> Result<i64> {
        if e.to_string().contains("not an integer") {
            return self.increment_framed(key, delta, options).await;
        }
        if e.to_string().contains("overflow") {
            return Err(Error::CounterOverflow {
                key: kvkit_core::RedactedKey::new(key),
                delta,
            });
        }
        Err(redis_error("increment", e))
    }

    async fn list_shard(
        &self,
        shard: u32,
        prefix: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<ShardPage> {
        let keys = self.shard(shard);
        let mut call = script_call(&LIST, 2);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(&keys.base)
            .arg(prefix)
            .arg(start)
            .arg(limit)
            .arg((limit * 2).max(1000))
            .arg(&FRAME_MAGIC[..]);
        self.run("list", self.inner.conn.eval(&LIST, &call)).await
    }
}

fn utf8_key(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::backend(BACKEND, "the index holds a key that is not UTF-8", false, e))
}

#[async_trait::async_trait]
impl KvStore for RedisStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.caps.check_key(key)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys_of(key).value_arg(key));
        let stored: Option<Bytes> = self.run("get", self.inner.conn.query(&cmd)).await?;
        Ok(stored.map(|stored| unframe(stored).0))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        let value_key = self.keys_of(key).value(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&value_key)
            .cmd("PEXPIRETIME")
            .arg(&value_key);
        let (stored, at): (Option<Bytes>, i64) = self
            .run("get_with_metadata", self.inner.conn.pipeline(&pipe))
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let version = version_of(&stored, at);
        let (value, meta) = unframe(stored);
        Ok(Some(
            Entry::new(value, parse_metadata(key, &meta)?, expiration_secs(at))
                .with_version(version),
        ))
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let w = self.check_write(key, value, &options)?;
        match &options.condition {
            WriteCondition::Always => {}
            WriteCondition::IfAbsent => {
                return match Box::pin(self.write_if_absent(key, &w)).await? {
                    true => Ok(()),
                    false => Err(Error::condition_failed(key)),
                };
            }
            WriteCondition::IfVersion(version) => {
                return match Box::pin(self.write_if_version(key, &w, version)).await? {
                    true => Ok(()),
                    false => Err(Error::condition_failed(key)),
                };
            }
            _ => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "this write condition",
                });
            }
        }
        let keys = self.keys_of(key);
        let expires_at = w.expiry.and_then(|_| w.expires_at_ms(SystemClock.now_ms()));
        // An existing key is already indexed (every creation indexes it atomically, and names
        // leave the index only with their key), so an overwrite is a plain `SET … XX`; for an
        // expiring key, its expiry-index score goes in the same round trip.
        let set = set_command(keys.value_arg(key), &w, true);
        let overwritten: Option<()> = match expires_at {
            None => self.run("put", self.inner.conn.query(&set)).await?,
            // The rarer paths are boxed, so the common future stays small.
            Some(at) => Box::pin(self.overwrite_expiring(set, keys, key, at)).await?,
        };
        if overwritten.is_none() {
            Box::pin(self.create(keys, key, &w, expires_at)).await?;
        }
        if w.expiry.is_some() {
            Box::pin(self.maybe_sweep(self.inner.layout.shard_of(key))).await;
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let caps = &self.inner.caps;
        caps.check_condition(&options.condition, "conditions in put_if_absent", false)?;
        let w = self.check_write(key, value, &options)?;
        self.write_if_absent(key, &w).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_many(&[key.to_owned()]).await
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.inner.caps.check_key(key)?;
        let Some(token) = version.as_token() else {
            return Err(Error::condition_failed(key));
        };
        let keys = self.keys_of(key);
        let mut call = script_call(&DELETE_IF_VERSION, 3);
        call.arg(&keys.index)
            .arg(&keys.expiry)
            .arg(keys.value_arg(key))
            .arg(key)
            .arg(token);
        let deleted: i64 = self
            .run(
                "delete_if_version",
                self.inner.conn.eval(&DELETE_IF_VERSION, &call),
            )
            .await?;
        match deleted {
            1 => Ok(()),
            _ => Err(Error::condition_failed(key)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.inner.caps.check_list(&options)?;
        let prefix = options.prefix.as_str();
        let start: Vec<u8> = match &options.cursor {
            Some(c) => [b"(", cursor::decode(c, prefix)?.as_bytes()].concat(),
            None if prefix.is_empty() => b"-".to_vec(),
            None => [b"[", prefix.as_bytes()].concat(),
        };
        let pages = try_join_all(
            (0..self.inner.layout.shard_count())
                .map(|shard| self.list_shard(shard, prefix, &start, limit)),
        )
        .await?;
        // Every shard covered its keys up to its last scanned name; one that stopped early
        // bounds the merged page, so nothing between its stop and the page end is skipped.
        let bound: Option<Vec<u8>> = pages
            .iter()
            .filter(|page| page.3 == 1)
            .map(|page| page.4.clone())
            .min();
        let mut merged: Vec<(Vec<u8>, i64, Vec<u8>)> = Vec::new();
        for (names, exps, metas, _, _) in pages {
            for ((name, at), meta) in names.into_iter().zip(exps).zip(metas) {
                if bound.as_ref().is_none_or(|b| name <= *b) {
                    merged.push((name, at, meta));
                }
            }
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = merged.len() > limit;
        merged.truncate(limit);
        let mut keys = Vec::with_capacity(merged.len());
        for (name, at, meta) in merged {
            let name = utf8_key(name)?;
            let metadata = parse_metadata(&name, &meta)?;
            keys.push(KeyInfo::new(name, expiration_secs(at), metadata));
        }
        let next = if truncated {
            keys.last().map(|k| k.name.clone())
        } else {
            bound.map(utf8_key).transpose()?
        };
        Ok(ListPage::new(
            keys,
            next.map(|last| cursor::encode(prefix, &last)),
        ))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let caps = &self.inner.caps;
        caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.by_shard(keys.iter().collect(), |k| k.as_str());
        let calls = groups.iter().map(|(shard, group)| {
            let shard_keys = self.shard(*shard);
            let mut cmd = redis::cmd("MGET");
            for (_, key) in group {
                cmd.arg(shard_keys.value_arg(key));
            }
            async move {
                let values: Vec<Option<Bytes>> =
                    self.run("get_many", self.inner.conn.query(&cmd)).await?;
                Ok::<_, Error>((group, values))
            }
        });
        let mut out = vec![None; keys.len()];
        for (group, values) in try_join_all(calls).await? {
            for ((position, _), value) in group.iter().zip(values) {
                out[*position] = value.map(|stored| unframe(stored).0);
            }
        }
        Ok(out)
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let caps = &self.inner.caps;
        let writes = items
            .into_iter()
            .map(|item| {
                caps.check_condition(&item.options.condition, "conditions in put_many", false)?;
                Ok((
                    self.check_write(&item.key, item.value, &item.options)?,
                    item.key,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if writes.is_empty() {
            return Ok(());
        }
        self.write_batch(writes).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let caps = &self.inner.caps;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        let groups = self.by_shard(keys.iter().collect(), |k| k.as_str());
        let calls = groups.iter().flat_map(|(shard, group)| {
            let shard_keys = self.shard(*shard);
            group.chunks(BATCH_CHUNK).map(move |chunk| {
                let mut del = redis::cmd("DEL");
                let mut unindex = redis::cmd("ZREM");
                unindex.arg(&shard_keys.index);
                let mut unexpire = redis::cmd("ZREM");
                unexpire.arg(&shard_keys.expiry);
                for (_, key) in chunk {
                    del.arg(shard_keys.value(key));
                    unindex.arg(key.as_str());
                    unexpire.arg(key.as_str());
                }
                let mut pipe = redis::pipe();
                pipe.atomic();
                pipe.add_command(del).ignore();
                pipe.add_command(unindex).ignore();
                pipe.add_command(unexpire).ignore();
                async move {
                    self.run("delete", self.inner.conn.pipeline::<()>(&pipe))
                        .await
                }
            })
        });
        try_join_all(calls).await?;
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        let caps = &self.inner.caps;
        caps.check_key(key)?;
        let expiry = caps.check_expiry(options.expiry_on_create, SystemClock.now_ms())?;
        // An existing counter takes one short call on its value key alone; only an absent one
        // needs the script that creates it with its expiry and index entries.
        let result = self.add_to_existing(key, delta);
        // The Redis error is inspected in `counter_error`, so only the timeout is mapped here.
        match within("increment", self.inner.timeout, result).await? {
            Ok(Some(n)) => Ok(n),
            // The rarer path is boxed, so the common future stays small.
            Ok(None) => Box::pin(self.increment_absent(key, delta, options, expiry)).await,
            Err(e) => Box::pin(self.counter_error(key, delta, options, e)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_value_with_the_largest_metadata_fits_one_redis_argument() {
        let caps = capabilities();
        let metadata = "x".repeat(caps.max_metadata_bytes);
        let framed = FRAME_HEADER_BYTES + metadata.len() + caps.max_value_bytes;
        assert_eq!(framed, MAX_BULK_BYTES);
        let small = frame(Bytes::from_static(b"v"), Some(&metadata));
        assert_eq!(small.len(), FRAME_HEADER_BYTES + metadata.len() + 1);
    }
}
