//! One constructor for every backend, from a URL: what a service's configuration names.

use std::fmt;
use std::sync::Arc;

use kvkit_core::KvStore;

/// Why [`open`] could not make a store. URLs in messages have their password removed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = kvkit::open("ftp://example").await.unwrap_err();
/// assert!(matches!(err, kvkit::OpenError::UnknownScheme { .. }));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL's scheme names no backend.
    UnknownScheme {
        /// The scheme.
        scheme: String,
    },
    /// The backend exists, but this build of `kvkit` was compiled without its feature.
    FeatureDisabled {
        /// The scheme asked for.
        scheme: String,
        /// The `kvkit` feature that enables it.
        feature: &'static str,
    },
    /// The URL is malformed for its backend.
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The backend refused to connect.
    Store(kvkit_core::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownScheme { scheme } => write!(
                f,
                "no backend for URL scheme {scheme:?} (expected memory:, sqlite:, redis://, \
                 rediss://, redis+unix://, redis+cluster://, redis+sentinel:// or cloudflare://)"
            ),
            Self::FeatureDisabled { scheme, feature } => write!(
                f,
                "{scheme}: URLs need the `{feature}` feature of the kvkit crate, which this build \
                 does not have (add `features = [\"{feature}\"]` to the kvkit dependency)"
            ),
            Self::Invalid { message } => f.write_str(message),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<kvkit_core::Error> for OpenError {
    fn from(e: kvkit_core::Error) -> Self {
        Self::Store(e)
    }
}

/// Opens the store that `url` names, so the backend is one setting:
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory:` (or `memory://`) | a new, empty [`memory::MemoryStore`](crate::memory::MemoryStore) | `memory` |
/// | `sqlite:path/to/file.db` (relative), `sqlite:///abs/path.db`, `sqlite::memory:` (private, for tests); `?durability=normal` trades power-loss safety for speed | a durable `sqlite::SqliteStore` in that file, created if missing | `sqlite` |
/// | `redis://[:password@]host:port[/db]`, `rediss://…` (TLS), `redis+unix:///path` | one Redis server | `redis` |
/// | `redis+cluster://host:port,host:port` (`rediss+cluster://` for TLS) | a Redis Cluster, from its seed nodes | `redis` |
/// | `redis+sentinel://[user:password@]host:port[,host:port…]/service-name[/db]` (`rediss+sentinel://` for TLS); the credentials are the servers', the addresses the sentinels' (port 26379 if omitted) | the primary the sentinels name for the service, found again after a failover | `redis` |
/// | `cloudflare://ACCOUNT_ID/NAMESPACE_ID[?base_url=URL]`, or `cloudflare:` with both ids from `CLOUDFLARE_ACCOUNT_ID` and `CLOUDFLARE_KV_NAMESPACE_ID` | a Workers KV namespace over the REST API; the token always comes from `CLOUDFLARE_API_TOKEN`, never from the URL | `cloudflare` |
///
/// A URL for a backend whose feature is off is a clear [`OpenError::FeatureDisabled`], never a
/// panic.
///
/// ```
/// use kvkit::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kvkit::OpenError> {
/// let store = kvkit::open("memory:").await?;
/// store.put("k", "v".into(), kvkit::PutOptions::new()).await?;
/// assert_eq!(store.capabilities().backend, "memory");
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "memory" => memory(&scheme),
        "sqlite" => sqlite(url, &scheme).await,
        "redis" | "rediss" | "redis+unix" | "redis+sentinel" | "rediss+sentinel" => {
            redis(url, &scheme).await
        }
        "redis+cluster" | "rediss+cluster" => redis_cluster(url, &scheme).await,
        "cloudflare" => cloudflare(url, &scheme),
        _ => Err(OpenError::UnknownScheme { scheme }),
    }
}

#[cfg(feature = "memory")]
fn memory(_scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Ok(Arc::new(kvkit_memory::MemoryStore::new()))
}

#[cfg(not(feature = "memory"))]
fn memory(scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature: "memory",
    })
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str, _scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Ok(Arc::new(kvkit_sqlite::SqliteStore::open(url).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str, scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature: "sqlite",
    })
}

#[cfg(feature = "redis")]
async fn redis(url: &str, _scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Ok(Arc::new(kvkit_redis::RedisStore::connect(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis(_url: &str, scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature: "redis",
    })
}

#[cfg(feature = "redis")]
async fn redis_cluster(url: &str, scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    let node_scheme = scheme.trim_end_matches("+cluster");
    let nodes = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let (auth, hosts) = match nodes.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), nodes),
    };
    let hosts = hosts.trim_end_matches('/');
    if hosts.is_empty() {
        return Err(OpenError::Invalid {
            message: format!("{scheme}:// needs at least one host:port"),
        });
    }
    let urls: Vec<String> = hosts
        .split(',')
        .map(|host| format!("{node_scheme}://{auth}{host}"))
        .collect();
    Ok(Arc::new(
        kvkit_redis::RedisStore::cluster(urls).connect().await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis_cluster(_url: &str, scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature: "redis",
    })
}

#[cfg(feature = "cloudflare")]
fn cloudflare(url: &str, _scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    let rest = url
        .split_once(':')
        .map(|(_, rest)| rest.trim_start_matches("//"))
        .unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut builder = kvkit_cloudflare::CloudflareBuilder::from_env();
    let ids: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match ids.as_slice() {
        [] => {}
        [account, namespace] => builder = builder.account_id(*account).namespace_id(*namespace),
        _ => {
            return Err(OpenError::Invalid {
                message: "a Cloudflare URL is cloudflare://ACCOUNT_ID/NAMESPACE_ID".to_owned(),
            });
        }
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("base_url", value)) => builder = builder.base_url(value),
            _ => {
                return Err(OpenError::Invalid {
                    message: format!(
                        "unknown Cloudflare URL parameter {:?} (only base_url; the token comes \
                         from CLOUDFLARE_API_TOKEN)",
                        pair.split('=').next().unwrap_or_default()
                    ),
                });
            }
        }
    }
    Ok(Arc::new(builder.build()?))
}

#[cfg(not(feature = "cloudflare"))]
fn cloudflare(_url: &str, scheme: &str) -> Result<Arc<dyn KvStore>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature: "cloudflare",
    })
}
