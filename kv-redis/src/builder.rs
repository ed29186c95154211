//! Configuring and connecting a store, and keeping passwords out of what is shown of URLs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use kvkit_core::{Error, Result};
use redis::RedisError;
use redis::aio::ConnectionManager;

use crate::connection::Conn;
use crate::errors::bounded;
use crate::framing::capabilities;
use crate::layout::{Layout, ShardKeys};
use crate::store::{BACKEND, Inner, RedisStore};

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
        }
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

    /// The store's connection: one multiplexed connection, or a cluster connection.
    async fn connection(&self) -> Result<Conn> {
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
        let conn = self.connection().await?;
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
