#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! This facade re-exports the contract from `kvkit-core` ([`KvStore`], [`KvStoreExt`], the option
//! types, [`Capabilities`] and [`Error`]) and each backend behind its feature:
//!
//! | feature | module | backend |
//! |---|---|---|
//! | `memory` (default) | [`memory`] | the embedded in-memory store |
//! | `redis` | `redis` | Redis and Redis Cluster |
//! | `sqlite` | `sqlite` | a durable embedded store in one SQLite file, exact across processes |
//! | `cloudflare` | `cloudflare` | Cloudflare Workers KV, over Cloudflare's REST API |
//! | `durable` | `durable` | exact storage inside Rust Workers, on Durable Objects |
//! | `layers` (default) | [`layers`] | namespaces, tracing, metrics, timeouts and retries, a two-tier store |
//! | `patterns` (default) | [`patterns`] | a read-through cache, sessions and rate limiting over any store |
//! | `axum` | `http` | a tower rate-limit layer and cookie sessions for axum services |

pub use kvkit_core::*;

mod open;
pub use open::{OpenError, open};

/// The embedded in-memory backend (feature `memory`, on by default).
///
/// ```
/// use kvkit::{KvStore, PutOptions};
/// use kvkit::memory::MemoryStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit::Result<()> {
/// let store = MemoryStore::new();
/// store.put("k", "v".into(), PutOptions::new()).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "memory")]
pub mod memory {
    pub use kvkit_memory::{MemoryBuilder, MemoryStore};
}

/// Redis and Redis Cluster (feature `redis`).
///
/// ```no_run
/// use kvkit::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit::Result<()> {
/// let store = kvkit::redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
/// assert_eq!(store.capabilities().backend, "redis");
/// assert!(store.capabilities().conditional_writes);
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub mod redis {
    #[cfg(feature = "layers")]
    pub use kvkit_redis::RedisInvalidator;
    pub use kvkit_redis::{RedisBuilder, RedisStore, redact_url};
}

/// A durable embedded store in one SQLite file (feature `sqlite`): every acknowledged write
/// survives a crash (and, by default, a power loss), and processes sharing the file see one
/// exact store.
///
/// ```
/// use kvkit::KvStore;
/// use kvkit::sqlite::{Durability, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit::Result<()> {
/// let store = SqliteStore::builder().in_memory().durability(Durability::Normal).open().await?;
/// assert_eq!(store.increment("visits", 1, kvkit::CounterOptions::new()).await?, 1);
/// assert!(store.capabilities().atomic_counter && store.capabilities().conditional_writes);
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use kvkit_sqlite::{Durability, SqliteBuilder, SqliteStore};
}

/// Cloudflare Workers KV over Cloudflare's REST API (feature `cloudflare`): the same namespace
/// as your Workers, with Cloudflare's limits checked before any request.
///
/// ```
/// use kvkit::KvStore;
/// let store = kvkit::cloudflare::CloudflareStore::builder()
///     .account_id("023e105f4ecef8ad9ca31a8372d0c353")
///     .namespace_id("0f2ac74b498b48028cb68387c421e279")
///     .api_token("token")
///     .build()?;
/// assert_eq!(store.capabilities().min_ttl, std::time::Duration::from_secs(60));
/// assert!(!store.capabilities().atomic_counter);
/// # Ok::<(), kvkit::Error>(())
/// ```
#[cfg(feature = "cloudflare")]
pub mod cloudflare {
    pub use kvkit_cloudflare::{
        ApiError, CloudflareBuilder, CloudflareStore, DEFAULT_BASE_URL, MAX_BULK_ITEMS,
        RetryPolicy, UnappliedKeys,
    };
}

/// Cloudflare Workers KV through a Worker's binding (feature `worker`), for Rust Workers: this
/// module exists on `wasm32-unknown-unknown` only. See the `kvkit-worker` crate.
#[cfg(all(feature = "worker", target_arch = "wasm32"))]
pub mod worker {
    pub use kvkit_worker::{BACKEND, WaitUntil, WorkerKvStore};
}

/// Exact storage inside Rust Workers (feature `durable`): a Durable Object class holding shards
/// of a namespace in SQLite-backed storage, and the store over it, on `wasm32-unknown-unknown`;
/// elsewhere only its limits, so a service can check what its Worker will accept. See the
/// `kvkit-durable` crate.
///
/// ```
/// let caps = kvkit::durable::capabilities();
/// assert!(caps.atomic_counter && caps.conditional_writes);
/// assert_eq!(caps.backend, kvkit::durable::BACKEND);
/// ```
#[cfg(feature = "durable")]
pub mod durable {
    pub use kvkit_durable::{BACKEND, capabilities};
    #[cfg(target_arch = "wasm32")]
    pub use kvkit_durable::{DurableBuilder, DurableKvStore, Shard, ShardKey, durable_object};
}

/// Wrappers over any store (feature `layers`, on by default): import [`layers::Layered`] and
/// stack them with one method call each.
///
/// ```
/// use kvkit::layers::Layered;
/// use kvkit::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit::Result<()> {
/// let store = kvkit::memory::MemoryStore::new().namespaced("app/").traced().two_tier();
/// assert_eq!(store.get("k").await?, None);
/// # Ok(()) }
/// ```
#[cfg(feature = "layers")]
pub mod layers {
    pub use kvkit_layers::*;
}

/// The patterns (feature `patterns`, on by default): a read-through [`patterns::Cache`] with
/// stale-while-revalidate, a [`patterns::SessionManager`] and a [`patterns::RateLimiter`], over
/// any store and wire-compatible with the TypeScript patterns for Workers KV.
///
/// ```
/// use std::time::Duration;
/// use kvkit::patterns::RateLimiter;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit::Result<()> {
/// let limiter = RateLimiter::fixed_window(kvkit::memory::MemoryStore::new(), 100, Duration::from_secs(60));
/// let outcome = limiter.check("203.0.113.7").await?;
/// assert!(outcome.allowed);
/// assert_eq!(outcome.remaining, 99);
/// # Ok(()) }
/// ```
#[cfg(feature = "patterns")]
pub mod patterns {
    pub use kvkit_patterns::*;
}

/// axum and tower integration (feature `axum`): [`http::RateLimitLayer`] and cookie sessions
/// ([`http::SessionLayer`], [`http::CurrentSession`]) over any store.
///
/// ```
/// use std::time::Duration;
/// use kvkit::http::RateLimitLayer;
/// use kvkit::patterns::RateLimiter;
/// let limiter = RateLimiter::fixed_window(kvkit::memory::MemoryStore::new(), 100, Duration::from_secs(60));
/// let app: axum::Router = axum::Router::new().layer(RateLimitLayer::new(limiter));
/// ```
#[cfg(feature = "axum")]
pub mod http {
    pub use kvkit_http::*;
}
