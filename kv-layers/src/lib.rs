//! Wrappers that each implement [`KvStore`](kvkit_core::KvStore) over any store and compose in any
//! order, the way tower layers compose services:
//!
//! - [`Namespaced`]: every key under a prefix, for tenants or applications sharing a store;
//! - [`Traced`]: a `tracing` span per operation (keys left out, or hashed);
//! - [`Metered`]: operation counts and latency histograms through the `metrics` facade;
//! - [`Observed`]: both in one layer, measured once;
//! - [`Resilient`]: a timeout per call and retries of transient failures within a budget;
//! - [`TwoTier`]: a bounded local memory tier in front of a remote store, kept fresh across
//!   instances by an [`Invalidator`] (Redis pub/sub: `kvkit_redis::RedisInvalidator`) or a
//!   staleness bound.
//!
//! Every wrapper forwards every trait method explicitly (checked by
//! `#[deny(clippy::missing_trait_methods)]`), so a method added to the trait cannot be silently
//! skipped, and every wrapper passes the conformance suite.
//!
//! ```
//! use std::time::Duration;
//! use kvkit_core::{KvStore, PutOptions};
//! use kvkit_layers::{Metered, Namespaced, Resilient, Traced};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! let store = Traced::new(Metered::new(Resilient::new(Namespaced::new(
//!     kvkit_memory::MemoryStore::new(),
//!     "billing/",
//! ))
//! .timeout(Duration::from_millis(250))));
//! store.put("invoice:7", "paid".into(), PutOptions::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # Inside a Worker (`wasm32`)
//!
//! [`Namespaced`], [`Traced`], [`Metered`] and [`Observed`] work on `wasm32-unknown-unknown` too
//! (timed with `Date.now()`), over the Worker's KV binding or a memory store. `Resilient`
//! and `TwoTier` keep time with tokio's timers and the system clock, which a Worker has not, so
//! they exist on native targets only: inside a Worker, the runtime bounds every subrequest.

mod compose;
mod namespace;
mod observe;
// Both keep time with tokio's timers and the system clock, which a Worker on wasm32 has not.
#[cfg(not(target_arch = "wasm32"))]
mod resilient;
#[cfg(not(target_arch = "wasm32"))]
mod two_tier;

pub use compose::Layered;
pub use namespace::Namespaced;
pub use observe::{Metered, Observed, Traced};
#[cfg(not(target_arch = "wasm32"))]
pub use resilient::{Resilient, RetryPolicy};
#[cfg(not(target_arch = "wasm32"))]
pub use two_tier::{Invalidation, InvalidationSink, Invalidator, TwoTier};
