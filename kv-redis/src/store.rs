//! The store: its shared state and the [`KvStore`] implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::try_join_all;
use kvkit_core::backend::from_unix_ms;
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, KvStore, ListOptions, ListPage, PutItem,
    PutOptions, Result, SystemClock, Version, WriteCondition,
};

use crate::builder::RedisBuilder;
use crate::conditional::{delete_if_version_call, version_of};
use crate::connection::Conn;
use crate::errors::{bounded, within};
use crate::framing::{parse_metadata, unframe};
use crate::layout::{Layout, ShardKeys};
use crate::replication::{Ack, Acked};
use crate::scripts::DELETE_IF_VERSION;
use crate::writes::{BATCH_CHUNK, set_command};

/// The backend's name, in capabilities and errors.
pub(crate) const BACKEND: &str = "redis";

/// What every clone of a store shares.
pub(crate) struct Inner {
    /// The connections calls are spread over, in turn (at least one).
    pub(crate) conns: Vec<Conn>,
    /// The next connection's turn.
    pub(crate) turn: AtomicUsize,
    /// A replica's connection, for reads, with replica reads on.
    pub(crate) replica: Option<Conn>,
    /// How many replicas must confirm every write, if any.
    pub(crate) ack: Option<Ack>,
    pub(crate) layout: Layout,
    /// The Redis key names of every shard, computed once.
    pub(crate) shards: Vec<ShardKeys>,
    pub(crate) caps: Capabilities,
    pub(crate) timeout: Duration,
    /// Expiring writes so far, to sweep the expiry index on one in `SWEEP_EVERY`.
    pub(crate) expiring_writes: AtomicU64,
    /// Whether hot paths call Redis functions; cleared for good when the server refuses them.
    pub(crate) functions: AtomicBool,
    /// The URL(s) with any password replaced, for `Debug`.
    pub(crate) display: String,
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
    pub(crate) inner: Arc<Inner>,
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

/// An entry's expiry in unix seconds (rounded up) from its `PEXPIRETIME`; `None` for a key
/// without one (-1) or an absent key (-2).
pub(crate) fn expiration_of(at_ms: i64) -> Option<SystemTime> {
    u64::try_from(at_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(from_unix_ms)
}

impl RedisStore {
    /// Connects to one server: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` (TLS, with the `tls` feature) or `redis+unix:///path/to/socket`; or to the
    /// primary that Redis Sentinel names:
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/service-name[/db]`
    /// (`rediss+sentinel://…` for TLS), following its failovers (see
    /// [High availability](crate#high-availability)).
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

    /// Starts configuring a store on one server, or through Sentinel (the URLs of
    /// [`RedisStore::connect`]).
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://:s3cr3t@127.0.0.1:6379");
    /// let shown = format!("{builder:?}");
    /// assert!(shown.contains("cluster: false") && !shown.contains("s3cr3t"), "{shown}");
    /// let sentinel = kvkit_redis::RedisStore::builder(
    ///     "redis+sentinel://:s3cr3t@10.0.0.1:26379,10.0.0.2:26379/mymaster",
    /// );
    /// let shown = format!("{sentinel:?}");
    /// assert!(shown.contains("10.0.0.2:26379/mymaster") && !shown.contains("s3cr3t"), "{shown}");
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(vec![url.into()], false)
    }

    /// Starts configuring a store on a Redis Cluster, given some of its nodes.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]);
    /// assert!(format!("{builder:?}").contains("cluster: true"));
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBuilder::new(nodes.into_iter().map(Into::into).collect(), true)
    }

    /// The connection for the next call: each in turn.
    pub(crate) fn conn(&self) -> &Conn {
        let conns = &self.inner.conns;
        &conns[self.inner.turn.fetch_add(1, Ordering::Relaxed) % conns.len()]
    }

    /// The connection for the next plain read: the replica's with replica reads on.
    pub(crate) fn reads(&self) -> &Conn {
        self.inner.replica.as_ref().unwrap_or_else(|| self.conn())
    }

    /// The Redis key names of shard `shard`.
    pub(crate) fn shard(&self, shard: u32) -> &ShardKeys {
        // Shard numbers come from `Layout::shard_of`, always below the shard count.
        &self.inner.shards[shard as usize]
    }

    /// The Redis key names of the shard holding `key`.
    pub(crate) fn keys_of(&self, key: &str) -> &ShardKeys {
        self.shard(self.inner.layout.shard_of(key))
    }

    /// Runs a Redis call under the store's timeout, mapping every failure to [`Error`].
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        bounded(operation, self.inner.timeout, call).await
    }

    /// Groups items by shard, keeping each item's position.
    pub(crate) fn by_shard<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> Vec<(u32, Vec<(usize, T)>)> {
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
        let stored: Option<Bytes> = self.run("get", self.reads().query(&cmd)).await?;
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
            .run("get_with_metadata", self.reads().pipeline(&pipe))
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let version = version_of(&stored, at);
        let (value, meta) = unframe(stored);
        Ok(Some(
            Entry::new(value, parse_metadata(key, &meta)?, expiration_of(at)).with_version(version),
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
        let expires_at = w.expiry.and_then(|_| w.expires_at_ms(SystemClock.now()));
        // An existing key is already indexed (every creation indexes it atomically, and names
        // leave the index only with their key), so an overwrite is a plain `SET … XX`; for an
        // expiring key, its expiry-index score goes in the same round trip.
        let set = set_command(keys.value_arg(key), &w, true);
        let (overwritten, replicas): Acked<Option<()>> = match expires_at {
            None => {
                let ack = self.inner.ack;
                self.run_acked("put", self.conn().write_query(&set, ack))
                    .await?
            }
            // The rarer paths are boxed, so the common future stays small.
            Some(at) => Box::pin(self.overwrite_expiring(set, keys, key, at)).await?,
        };
        match overwritten {
            Some(()) => self.confirm("put", replicas)?,
            None => Box::pin(self.create(keys, key, &w, expires_at)).await?,
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
        let call = delete_if_version_call(self.keys_of(key), key, token);
        let (deleted, replicas): Acked<i64> = self
            .run_acked(
                "delete_if_version",
                self.conn()
                    .eval_write(&DELETE_IF_VERSION, &call, self.inner.ack),
            )
            .await?;
        match deleted {
            1 => self.confirm("delete_if_version", replicas),
            _ => Err(Error::condition_failed(key)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.list_page(options).await
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
                    self.run("get_many", self.reads().query(&cmd)).await?;
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
                    let ack = self.inner.ack;
                    self.run_write("delete", self.conn().write_transaction(&pipe, ack))
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
        let expiry = caps.check_expiry(options.expiry_on_create, SystemClock.now())?;
        // An existing counter takes one short call on its value key alone; only an absent one
        // needs the script that creates it with its expiry and index entries.
        let result = self.add_to_existing(key, delta);
        // The Redis error is inspected in `counter_error`, so only the timeout is mapped here.
        match within("increment", self.write_timeout(), result).await? {
            Ok((Some(n), replicas)) => self.confirm("increment", replicas).map(|()| n),
            // The rarer path is boxed, so the common future stays small.
            Ok((None, _)) => Box::pin(self.increment_absent(key, delta, options, expiry)).await,
            Err(e) => Box::pin(self.counter_error(key, delta, options, e)).await,
        }
    }
}
