//! The contract every `kvkit` backend keeps: the [`KvStore`] trait, its options and results,
//! [`Capabilities`], the shared input validation, the [`Error`] type, and the conveniences of
//! [`KvStoreExt`].
//!
//! Users normally depend on the `kvkit` facade crate, which re-exports all of this; backend authors
//! depend on `kvkit-core` directly, find what implementing the trait takes in [`backend`], and
//! prove their backend with the `kvkit-testsuite` conformance suite.
//!
//! **Time** is [`SystemTime`](std::time::SystemTime) for instants and
//! [`Duration`](std::time::Duration) for durations throughout: expirations, clocks, rate-limit
//! resets and errors. Backends keep instants at their own precision
//! ([`Capabilities::ttl_precision`]: milliseconds on memory and Redis, seconds on Cloudflare) and
//! round up to it, so a key never expires before it was asked to. Inside a Worker, read the time
//! with [`SystemClock`]: `SystemTime::now()` panics on `wasm32-unknown-unknown`.
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

pub mod backend;
mod capabilities;
mod clock;
mod error;
mod ext;
mod store;
mod time;
mod types;

pub use bytes::Bytes;
pub use capabilities::{Capabilities, Consistency, MAX_BATCH_GET, MAX_LIST_LIMIT};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Error, ErrorKind, RedactedKey, Result};
pub use ext::{KeyStream, KvStoreExt};
pub use store::KvStore;
pub use types::{
    CounterOptions, Entry, Expiry, KeyInfo, ListOptions, ListPage, PutItem, PutOptions, Version,
    WriteCondition,
};
