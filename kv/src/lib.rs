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
