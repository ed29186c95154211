//! The Redis backend of `kv`: the whole [`KvStore`] contract on a single Redis server or a Redis
//! Cluster, over one multiplexed connection that reconnects by itself.
//!
//! ```no_run
//! use kv_core::{KvStore, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kv_core::Result<()> {
//! let store = kv_redis::RedisStore::builder("redis://127.0.0.1:6379")
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
//! | `ns` `m:` `k` | string | the metadata as JSON, only when there is some, with the same expiry |
//! | `ns` `i` | sorted set | every key name, all with score 0: the ordered index |
//! | `ns` `x` | sorted set | the keys that expire, scored by their expiry time in unix ms |
//!
//! A read (`get`) is one plain `GET`, as fast as the raw crate. Every write is one Lua script, so
//! the value, its metadata and both indexes change atomically in one round trip; a counter is
//! `INCRBY` plus the first-creation TTL in the same script, and put-if-absent is `SET NX` there.
//!
//! # Listing without scanning: the trade-off
//!
//! Redis `SCAN` is unordered and walks the whole keyspace, so listing uses the `ns i` sorted set
//! instead: `ZRANGE … BYLEX` from the prefix (or after the cursor) returns keys in byte order in
//! O(log n + limit), however many other keys the database holds, and a prefix holding `*`, `?` or
//! `[` is matched literally. The cost is on writes: a put of a new key also adds it to the index
//! (an overwrite does not), and the index takes roughly 40-60 bytes of Redis memory per key.
//!
//! Redis expires values on its own, so the index can hold names of keys that have expired. A
//! listing skips them and removes them as it meets them, and every write that sets an expiry
//! also drops up to two due entries from both indexes (found through `ns x`), so dead names
//! cannot pile up even if nothing ever lists them. Keys written to these Redis keys by anything
//! other than this store are not indexed.
//!
//! # Redis Cluster
//!
//! [`RedisBuilder::cluster`] spreads keys over 16 shards (configurable), each with its own hash
//! tag: key `k` of shard `s` lives under `{ns s}v:k`, next to its shard's two indexes, so every
//! script touches one slot. A listing runs the page script on every shard and merges the pages;
//! a batch runs one script per shard.
//!
//! # Failures
//!
//! Every operation is bounded by a timeout (default 2 s): while Redis is unreachable, calls fail
//! with a retryable [`Error`] ([`Error::is_retryable`]) instead of hanging, and the connection
//! comes back by itself once Redis does. Passwords in URLs never appear in `Debug` or errors.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;
use kv_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, Expiry, KeyInfo, KvStore, ListOptions,
    ListPage, PutItem, PutOptions, Result, SystemClock, cursor,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, RetryMethod, Script, ScriptInvocation};

const BACKEND: &str = "redis";
/// Items in one batch script, so a huge batch never blocks Redis for long.
const BATCH_CHUNK: usize = 1000;

static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/sweep.lua"),
        include_str!("lua/put.lua")
    ))
});
static PUT_IF_ABSENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/sweep.lua"),
        include_str!("lua/put_if_absent.lua")
    ))
});
static INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/sweep.lua"),
        include_str!("lua/incr.lua")
    ))
});
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/delete.lua")));
static GET_META: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/get_meta.lua")));
static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/list.lua")));

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
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => invocation.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => invocation.invoke_async(&mut c.clone()).await,
        }
    }
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
                let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                // The modulo keeps the value below n, a u32.
                (hash % u64::from(n)) as u32
            }
        }
    }

    fn base(&self, shard: u32) -> String {
        match self.shards {
            None => self.namespace.clone(),
            Some(_) => format!("{{{}{shard:02}}}", self.namespace),
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

    fn meta(&self, key: &str) -> String {
        format!("{}m:{key}", self.base)
    }
}

struct Inner {
    conn: Conn,
    layout: Layout,
    caps: Capabilities,
    timeout: Duration,
    /// The URL(s) with any password replaced, for `Debug`.
    display: String,
}

/// A [`KvStore`] on Redis or Redis Cluster. Cheap to clone: clones share the connection.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv_core::Result<()> {
/// let store = kv_redis::RedisStore::connect("redis://:secret@127.0.0.1:6379").await?;
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
/// assert_eq!(kv_redis::redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
/// assert_eq!(kv_redis::redact_url("rediss://:pw@h"), "rediss://:***@h");
/// assert_eq!(kv_redis::redact_url("redis://h:6379"), "redis://h:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{masked}{}", &rest[at..])
}

/// Configures a [`RedisStore`].
///
/// ```no_run
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv_core::Result<()> {
/// let store = kv_redis::RedisStore::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
///     .namespace("sessions:")
///     .timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBuilder {
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
            .finish()
    }
}

impl RedisBuilder {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self {
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
    /// let builder = kv_redis::RedisStore::builder("redis://127.0.0.1").namespace("app1:");
    /// # let _ = builder;
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long to wait for a connection (default 2 s).
    ///
    /// ```
    /// let builder = kv_redis::RedisStore::builder("redis://127.0.0.1")
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
    /// let builder = kv_redis::RedisStore::builder("redis://127.0.0.1")
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
    /// let builder = kv_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]).shards(32);
    /// # let _ = builder;
    /// ```
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// Connects, failing with a retryable error if Redis cannot be reached in time.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = kv_redis::RedisStore::builder("redis://127.0.0.1:1").connect().await.unwrap_err();
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
        let config_error =
            |e: RedisError| Error::backend(BACKEND, "invalid Redis configuration", false, e);
        let conn = if self.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(self.urls.clone())
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
                return Err(Error::backend(
                    BACKEND,
                    "a single-server store needs exactly one URL",
                    false,
                    std::io::Error::other("use RedisStore::cluster for several nodes"),
                ));
            };
            let client = redis::Client::open(url.as_str()).map_err(config_error)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.timeout))
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(250))
                .set_number_of_retries(3);
            let connect = ConnectionManager::new_with_config(client, config);
            Conn::Single(bounded("connect", self.connect_timeout, connect).await?)
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                layout: Layout {
                    namespace: self.namespace,
                    shards: self.cluster.then_some(self.shards),
                },
                caps: Capabilities::new(BACKEND),
                timeout: self.timeout,
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
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(Error::Timeout {
            backend: BACKEND,
            operation,
            after: timeout,
        }),
        Ok(result) => result.map_err(|e| redis_error(operation, e)),
    }
}

fn redis_error(operation: &'static str, e: RedisError) -> Error {
    if e.is_timeout() {
        return Error::Backend {
            backend: BACKEND,
            message: format!("{operation} timed out"),
            retryable: true,
            source: Some(Box::new(e)),
        };
    }
    let retryable = !matches!(e.retry_method(), RetryMethod::NoRetry);
    Error::backend(BACKEND, format!("{operation} failed"), retryable, e)
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
    key: String,
    value: Bytes,
    metadata: String,
    mode: &'static str,
    when: u64,
}

/// The page one shard returned.
type ShardPage = (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>, i64, Vec<u8>);

impl RedisStore {
    /// Connects to one server: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` (TLS, with the `tls` feature) or `redis+unix:///path/to/socket`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kv_core::Result<()> {
    /// let store = kv_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a store on one server.
    ///
    /// ```
    /// let builder = kv_redis::RedisStore::builder("redis://127.0.0.1:6379");
    /// # let _ = builder;
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(vec![url.into()], false)
    }

    /// Starts configuring a store on a Redis Cluster, given some of its nodes.
    ///
    /// ```
    /// let builder = kv_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]);
    /// # let _ = builder;
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBuilder::new(nodes.into_iter().map(Into::into).collect(), true)
    }

    fn shard(&self, shard: u32) -> ShardKeys {
        ShardKeys::new(&self.inner.layout, shard)
    }

    fn keys_of(&self, key: &str) -> ShardKeys {
        self.shard(self.inner.layout.shard_of(key))
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        bounded(operation, self.inner.timeout, call).await
    }

    fn check_write(&self, key: String, value: Bytes, options: &PutOptions) -> Result<Write> {
        let checked =
            self.inner
                .caps
                .check_put(&key, value.len(), options, SystemClock.now_ms())?;
        let (mode, when) = expiry_args(checked.expiry);
        Ok(Write {
            key,
            value,
            metadata: checked.metadata_json.unwrap_or_default(),
            mode,
            when,
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

    async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        let groups = self.by_shard(writes, |w| &w.key);
        let calls = groups.iter().flat_map(|(shard, group)| {
            let keys = self.shard(*shard);
            group.chunks(BATCH_CHUNK).map(move |chunk| {
                let mut invocation = PUT.key(&keys.index);
                invocation
                    .key(&keys.expiry)
                    .arg(&keys.base)
                    .arg(chunk.len());
                for (_, w) in chunk {
                    invocation
                        .key(keys.value(&w.key))
                        .key(keys.meta(&w.key))
                        .arg(&w.key)
                        .arg(&w.value[..])
                        .arg(&w.metadata)
                        .arg(w.mode)
                        .arg(w.when);
                }
                async move {
                    self.run("put", self.inner.conn.invoke::<i64>(&invocation))
                        .await
                }
            })
        });
        try_join_all(calls).await?;
        Ok(())
    }

    async fn list_shard(
        &self,
        shard: u32,
        prefix: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<ShardPage> {
        let keys = self.shard(shard);
        let mut invocation = LIST.key(&keys.index);
        invocation
            .key(&keys.expiry)
            .arg(&keys.base)
            .arg(prefix)
            .arg(start)
            .arg(limit)
            .arg((limit * 2).max(1000));
        self.run("list", self.inner.conn.invoke(&invocation)).await
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
        let cmd = redis::cmd("GET")
            .arg(self.keys_of(key).value(key))
            .to_owned();
        self.run("get", self.inner.conn.query(&cmd)).await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.caps.check_key(key)?;
        let keys = self.keys_of(key);
        let mut invocation = GET_META.key(keys.value(key));
        invocation.key(keys.meta(key));
        let found: Option<(Bytes, Vec<u8>, i64)> = self
            .run("get_with_metadata", self.inner.conn.invoke(&invocation))
            .await?;
        found
            .map(|(value, meta, at)| {
                Ok(Entry::new(
                    value,
                    parse_metadata(key, &meta)?,
                    expiration_secs(at),
                ))
            })
            .transpose()
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let write = self.check_write(key.to_owned(), value, &options)?;
        self.write_batch(vec![write]).await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        let w = self.check_write(key.to_owned(), value, &options)?;
        let keys = self.keys_of(key);
        let mut invocation = PUT_IF_ABSENT.key(&keys.index);
        invocation
            .key(&keys.expiry)
            .key(keys.value(key))
            .key(keys.meta(key))
            .arg(&keys.base)
            .arg(key)
            .arg(&w.value[..])
            .arg(&w.metadata)
            .arg(w.mode)
            .arg(w.when);
        let written: i64 = self
            .run("put_if_absent", self.inner.conn.invoke(&invocation))
            .await?;
        Ok(written == 1)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_many(&[key.to_owned()]).await
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
        Ok(ListPage::new(keys, next.map(|last| cursor::encode(&last))))
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
                cmd.arg(shard_keys.value(key));
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
                out[*position] = value;
            }
        }
        Ok(out)
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let writes = items
            .into_iter()
            .map(|item| self.check_write(item.key, item.value, &item.options))
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
                let mut invocation = DELETE.key(&shard_keys.index);
                invocation.key(&shard_keys.expiry).arg(chunk.len());
                for (_, key) in chunk {
                    invocation
                        .key(shard_keys.value(key))
                        .key(shard_keys.meta(key))
                        .arg(key.as_str());
                }
                async move {
                    self.run("delete", self.inner.conn.invoke::<i64>(&invocation))
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
        let (mode, when) = expiry_args(expiry);
        let keys = self.keys_of(key);
        let mut invocation = INCR.key(&keys.index);
        invocation
            .key(&keys.expiry)
            .key(keys.value(key))
            .arg(&keys.base)
            .arg(key)
            .arg(delta)
            .arg(mode)
            .arg(when);
        let call = self.inner.conn.invoke::<String>(&invocation);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Err(_) => Err(Error::Timeout {
                backend: BACKEND,
                operation: "increment",
                after: self.inner.timeout,
            }),
            Ok(Ok(n)) => n
                .parse()
                .map_err(|e| Error::backend(BACKEND, "increment returned a non-integer", false, e)),
            Ok(Err(e)) => {
                let message = e.to_string();
                if message.contains("not an integer") {
                    Err(Error::NotACounter {
                        key: key.to_owned(),
                    })
                } else if message.contains("overflow") {
                    Err(Error::CounterOverflow {
                        key: key.to_owned(),
                        delta,
                    })
                } else {
                    Err(redis_error("increment", e))
                }
            }
        }
    }
}
