//! The contract every `kvkit` backend keeps: the [`KvStore`] trait, its options and results,
//! [`Capabilities`], the shared input validation, the [`Error`] type, and the conveniences of
//! [`KvStoreExt`].
//!
//! Users normally depend on the `kvkit` facade crate, which re-exports all of this; backend authors
//! depend on `kvkit-core` directly and prove their backend with the `kvkit-testsuite` conformance suite.
//!
//! ```
//! use std::time::Duration;
//! use kvkit_core::{KvStore, KvStoreExt, ListOptions, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! let store = kvkit_memory::MemoryStore::new();
//! store.put_text("user:1", "Ada", PutOptions::new().ttl(Duration::from_secs(3600))).await?;
//! store.put_text("user:2", "Grace", PutOptions::new()).await?;
//! let page = store.list(ListOptions::new().prefix("user:")).await?;
//! assert_eq!(page.keys.len(), 2);
//! # Ok(()) }
//! ```

mod capabilities;
mod clock;
pub mod cursor;
mod error;
mod ext;
mod store;
mod types;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use capabilities::{
    CLOUDFLARE_MAX_EXPIRATION_SECS, CLOUDFLARE_MAX_KEY_BYTES, CLOUDFLARE_MAX_METADATA_BYTES,
    CLOUDFLARE_MAX_VALUE_BYTES, CLOUDFLARE_MIN_TTL, Capabilities, CheckedPut, Consistency,
    MAX_BATCH_GET, MAX_EXPIRATION_SECS, MAX_LIST_LIMIT, add_to_counter, expires_at_ms,
    parse_counter, stable_hash,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Error, ErrorKind, RedactedKey, Result};
pub use ext::{KeyStream, KvStoreExt};
pub use store::KvStore;
pub use types::{
    CounterOptions, Entry, Expiry, KeyInfo, ListOptions, ListPage, PutItem, PutOptions, Version,
    WriteCondition,
};
