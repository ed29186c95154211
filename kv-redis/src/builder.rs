//! Configuring and connecting a store, and keeping passwords out of what is shown of URLs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;

use kvkit_core::{Error, Result};
use redis::RedisError;
use redis::aio::ConnectionManager;

use crate::connection::Conn;
use crate::errors::bounded;
use crate::framing::capabilities;
use crate::layout::{Layout, ShardKeys};
use crate::replication::Ack;
use crate::sentinel::{Failover, SentinelUrl};
use crate::store::{BACKEND, Inner, RedisStore};

/// Replaces the password of a `redis://user:password@host` URL with `***`.
///
/// ```
/// assert_eq!(kvkit_redis::redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
/// assert_eq!(kvkit_redis::redact_url("rediss://:pw@h"), "rediss://:***@h");
/// assert_eq!(kvkit_redis::redact_url("redis://h:6379"), "redis://h:6379");
/// assert_eq!(kvkit_redis::redact_url("redis://u:pa/ss@h"), "redis://u:***@h");
/// assert_eq!(
///     kvkit_redis::redact_url("redis+sentinel://:pw@h1:26379,h2:26379/mymaster"),
///     "redis+sentinel://:***@h1:26379,h2:26379/mymaster"
/// );
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
    replica_reads: bool,
    ack: Option<Ack>,
    connections: usize,
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
            .field("replica_reads", &self.replica_reads)
            .field("ack", &self.ack)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

fn config_error(e: RedisError) -> Error {
    Error::Configuration {
        backend: BACKEND,
        message: "the Redis client refused the connection settings".to_owned(),
        source: Some(Box::new(e)),
    }
}

impl RedisBuilder {
    pub(crate) fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self {
            #[cfg(feature = "tls")]
            root_certificates: None,
            urls,
            cluster,
            namespace: "kv:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            shards: 16,
            replica_reads: false,
            ack: None,
            connections: 1,
        }
    }

    /// How many connections the store opens (default 1; at least 1), spreading its calls over
    /// them in turn; on a cluster, each is a cluster connection (one connection per node).
    ///
    /// One multiplexed connection pipelines the commands of every caller, which is the fastest
    /// way to use Redis, until a command blocks: Redis runs a connection's commands in order, so
    /// with [`wait_for_replicas`](Self::wait_for_replicas) each write's `WAIT` holds every
    /// command queued behind it, and one connection carries about one write per replication
    /// round trip. Several connections let that many writes wait at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = kvkit_redis::RedisStore::builder("redis+sentinel://127.0.0.1:26379/mymaster")
    ///     .wait_for_replicas(1, Duration::from_millis(500))
    ///     .connections(8);
    /// assert!(format!("{builder:?}").contains("connections: 8"));
    /// let at_least_one = kvkit_redis::RedisStore::builder("redis://127.0.0.1").connections(0);
    /// assert!(format!("{at_least_one:?}").contains("connections: 1"));
    /// ```
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// On a Sentinel store (`redis+sentinel://`), sends the reads `get`, `get_many` and
    /// `get_with_metadata` to a replica the sentinels name, found again when it fails; listings,
    /// writes and counters stay on the primary (default off; a single server or a cluster
    /// refuses it at [`connect`](Self::connect) with a configuration error).
    ///
    /// Redis replicates asynchronously, so a replica read can be stale: right after a write
    /// (even one confirmed by [`wait_for_replicas`](Self::wait_for_replicas) if that replica was
    /// not among those counted), a read may return the old value or none, and two reads in a row
    /// may go back in time if the replica changes. Expired entries read as absent on a replica
    /// too. Use it for data that tolerates that, to take load off the primary.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis+sentinel://127.0.0.1:26379/mymaster")
    ///     .read_from_replicas(true);
    /// assert!(format!("{builder:?}").contains("replica_reads: true"));
    /// ```
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.replica_reads = on;
        self
    }

    /// Makes every write (puts, deletes, conditional writes, counters, batches) wait until at
    /// least `replicas` replicas have it, for up to `timeout` (Redis `WAIT`, sent in the same
    /// round trip); `replicas` 0 turns it off (the default). On a cluster, the replicas are
    /// those of the key's master.
    ///
    /// A write that fewer replicas confirmed in time fails with
    /// [`Error::NotReplicated`](kvkit_core::Error::NotReplicated) (retryable): **it may still
    /// have been applied**, and reach the replicas later, or be lost if the primary fails first.
    /// A write that succeeds survives the loss of its primary when a replica that has it is
    /// promoted (Sentinel and Cluster promote the most up-to-date replica). Each write then
    /// takes the replication round trip too, and a store whose replicas are all down cannot
    /// write. The store's [`timeout`](Self::timeout) is extended by `timeout` for writes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = kvkit_redis::RedisStore::builder("redis+sentinel://127.0.0.1:26379/mymaster")
    ///     .wait_for_replicas(1, Duration::from_millis(500));
    /// assert!(format!("{builder:?}").contains("ack: Some(Ack { replicas: 1, timeout: 500ms })"));
    /// let off = kvkit_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .wait_for_replicas(0, Duration::ZERO);
    /// assert!(format!("{off:?}").contains("ack: None"));
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.ack = (replicas > 0).then_some(Ack { replicas, timeout });
        self
    }

    /// Prefix of every Redis key this store uses (default `kv:`), so several applications can
    /// share one Redis.
    ///
    /// ```
    /// let builder = kvkit_redis::RedisStore::builder("redis://127.0.0.1").namespace("app1:");
    /// assert!(format!("{builder:?}").contains(r#"namespace: "app1:""#));
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
    /// assert!(format!("{builder:?}").contains("connect_timeout: 1s"));
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
    /// assert!(format!("{builder:?}").contains(" timeout: 250ms"));
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
    /// assert!(format!("{builder:?}").contains("shards: 32"));
    /// let at_least_one = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000"]).shards(0);
    /// assert!(format!("{at_least_one:?}").contains("shards: 1"));
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
    /// assert!(format!("{builder:?}").contains("rediss://redis.internal:6380"));
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

    /// A [`RedisInvalidator`](crate::RedisInvalidator) for a [`TwoTier`](kvkit_layers::TwoTier) in front of the store
    /// this builder connects, on the same servers with the same settings (TLS roots, timeouts),
    /// announcing and listening on `channel` (feature `layers`). The namespace plays no part:
    /// give each application its own channel.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let builder = kvkit_redis::RedisStore::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
    /// let invalidator = builder.connect_invalidator("app:invalidate").await?;
    /// assert!(format!("{invalidator:?}").contains("listeners: 2"));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "layers")]
    pub async fn connect_invalidator(
        &self,
        channel: impl Into<String>,
    ) -> Result<crate::RedisInvalidator> {
        let publisher = self.connection().await?;
        let listeners = self
            .urls
            .iter()
            .map(|url| self.client(url))
            .collect::<Result<_>>()?;
        Ok(crate::RedisInvalidator::new(
            publisher,
            listeners,
            channel.into(),
            self.connect_timeout,
            self.timeout,
        ))
    }

    /// A client of one server, with the TLS roots if custom.
    fn client(&self, url: &str) -> Result<redis::Client> {
        #[cfg(feature = "tls")]
        let client = match self.tls_certificates() {
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
            None => redis::Client::open(url),
        };
        #[cfg(not(feature = "tls"))]
        let client = redis::Client::open(url);
        client.map_err(config_error)
    }

    /// A connection to the primary (or, for `replica`, a replica) the sentinels name, made now
    /// so that a wrong address or password fails here.
    async fn sentinel_connection(&self, url: &SentinelUrl, replica: bool) -> Result<Conn> {
        #[cfg(feature = "tls")]
        let client = url.client(replica, self.tls_certificates());
        #[cfg(not(feature = "tls"))]
        let client = url.client(replica);
        let failover = Arc::new(Failover::new(
            client.map_err(config_error)?,
            self.connect_timeout,
        ));
        let connect = failover.run(|_| async { Ok(()) });
        bounded("connect", self.connect_timeout, connect).await?;
        Ok(Conn::Sentinel(failover))
    }

    /// The Sentinel URL, if the store is on one (`None` for a cluster or another scheme).
    fn sentinel_url(&self) -> Option<Result<SentinelUrl>> {
        match self.urls.as_slice() {
            [url] if !self.cluster => SentinelUrl::parse(url),
            _ => None,
        }
    }

    /// The store's connection: one multiplexed connection, a cluster connection, or one to the
    /// primary the sentinels name.
    async fn connection(&self) -> Result<Conn> {
        if let Some(url) = self.sentinel_url() {
            // Boxed, so the Sentinel client's deep future does not deepen every connect's type.
            return Box::pin(self.sentinel_connection(&url?, false)).await;
        }
        if self.cluster {
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
            return Ok(Conn::Cluster(
                bounded("connect", self.connect_timeout, connect).await?,
            ));
        }
        let [url] = self.urls.as_slice() else {
            return Err(Error::configuration(
                BACKEND,
                "a single-server store needs exactly one URL (use RedisStore::cluster for \
                 several nodes)",
            ));
        };
        let client = self.client(url)?;
        // Responses are bounded by the store's own per-operation timeout (one timer per
        // call, covering reconnection waits too), so the connection needs none of its own.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(250))
            .set_number_of_retries(3);
        let connect = ConnectionManager::new_with_config(client, config);
        Ok(Conn::Single(
            bounded("connect", self.connect_timeout, connect).await?,
        ))
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
        let mut conns = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            conns.push(self.connection().await?);
        }
        let replica = match (self.replica_reads, self.sentinel_url()) {
            (false, _) => None,
            (true, Some(url)) => Some(Box::pin(self.sentinel_connection(&url?, true)).await?),
            (true, None) => {
                return Err(Error::configuration(
                    BACKEND,
                    "replica reads need a Sentinel store (a redis+sentinel:// URL)",
                ));
            }
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
                conns,
                turn: AtomicUsize::new(0),
                replica,
                ack: self.ack,
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
