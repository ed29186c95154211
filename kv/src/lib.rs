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
