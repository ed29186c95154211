#![doc = include_str!("../../README.md")]
//!
//! # Crate layout
//!
//! This facade re-exports the contract from `kv-core` ([`KvStore`], [`KvStoreExt`], the option
//! types, [`Capabilities`] and [`Error`]) and each backend behind its feature:
//!
//! | feature | module | backend |
//! |---|---|---|
//! | `memory` (default) | [`memory`] | the embedded in-memory store |
//! | `redis` | `redis` | Redis and Redis Cluster |
//! | `cloudflare` | `cloudflare` | Cloudflare Workers KV, over Cloudflare's REST API |
//! | `layers` (default) | [`layers`] | namespaces, tracing, metrics, timeouts and retries, a two-tier store |

pub use kv_core::*;

/// The embedded in-memory backend (feature `memory`, on by default).
///
/// ```
/// use kv::{KvStore, PutOptions};
/// use kv::memory::MemoryStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv::Result<()> {
/// let store = MemoryStore::new();
/// store.put("k", "v".into(), PutOptions::new()).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "memory")]
pub mod memory {
    pub use kv_memory::{MemoryBuilder, MemoryStore};
}

/// Redis and Redis Cluster (feature `redis`).
///
/// ```no_run
/// use kv::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv::Result<()> {
/// let store = kv::redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let _ = store.get("k").await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub mod redis {
    pub use kv_redis::{RedisBuilder, RedisStore, redact_url};
}

/// Cloudflare Workers KV over Cloudflare's REST API (feature `cloudflare`): the same namespace
/// as your Workers, with Cloudflare's limits checked before any request.
///
/// ```
/// use kv::KvStore;
/// let store = kv::cloudflare::CloudflareStore::builder()
///     .account_id("023e105f4ecef8ad9ca31a8372d0c353")
///     .namespace_id("0f2ac74b498b48028cb68387c421e279")
///     .api_token("token")
///     .build()?;
/// assert_eq!(store.capabilities().min_ttl, std::time::Duration::from_secs(60));
/// assert!(!store.capabilities().atomic_counter);
/// # Ok::<(), kv::Error>(())
/// ```
#[cfg(feature = "cloudflare")]
pub mod cloudflare {
    pub use kv_cloudflare::{
        ApiError, CloudflareBuilder, CloudflareStore, DEFAULT_BASE_URL, MAX_BULK_ITEMS,
        MAX_EXPIRATION_SECS, RetryPolicy,
    };
}

/// Wrappers over any store (feature `layers`, on by default): import [`layers::Layered`] and
/// stack them with one method call each.
///
/// ```
/// use kv::layers::Layered;
/// use kv::KvStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv::Result<()> {
/// let store = kv::memory::MemoryStore::new().namespaced("app/").traced().two_tier();
/// assert_eq!(store.get("k").await?, None);
/// # Ok(()) }
/// ```
#[cfg(feature = "layers")]
pub mod layers {
    pub use kv_layers::*;
}
