//! Exact key-value storage inside Cloudflare Workers: a Durable Object class that holds a shard
//! of a namespace in its SQLite-backed storage, and [`DurableKvStore`], the
//! [`KvStore`](kvkit_core::KvStore) contract over it, strongly consistent, with atomic counters,
//! exact put-if-absent and conditional writes. Rate limits, sessions and compare-and-set built
//! on it are exact, which Workers KV (eventually consistent, no atomic operation) cannot be.
//!
//! # Wiring it into a Worker
//!
//! One line in the Worker's crate declares and exports the class (any name will do):
//!
//! ```ignore
//! kvkit_durable::durable_object!(KvShard);
//! ```
//!
//! and one binding in `wrangler.toml` gives the Worker its namespace, SQLite-backed (a
//! migration with `new_sqlite_classes`, as Cloudflare recommends for new classes):
//!
//! ```toml
//! [[durable_objects.bindings]]
//! name = "KVKIT"
//! class_name = "KvShard"
//!
//! [[migrations]]
//! tag = "v1"
//! new_sqlite_classes = ["KvShard"]
//! ```
//!
//! Then, in a handler:
//!
//! ```ignore
//! use std::time::Duration;
//! use kvkit_patterns::RateLimiter;
//! use worker::{event, Context, Env, Request, Response, Result};
//!
//! kvkit_durable::durable_object!(KvShard);
//!
//! #[event(fetch)]
//! async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
//!     let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")
//!         .and_then(|b| b.shards(16).build())
//!         .map_err(|e| e.to_string())?;
//!     let limiter = RateLimiter::fixed_window(store, 100, Duration::from_secs(60));
//!     assert!(limiter.is_exact());
//!     let client = req.headers().get("CF-Connecting-IP")?.unwrap_or_default();
//!     if !limiter.check(&client).await.map_err(|e| e.to_string())?.allowed {
//!         return Response::error("Too Many Requests", 429);
//!     }
//!     Response::ok("hello")
//! }
//! ```
//!
//! Everything but the [limits](capabilities) exists on `wasm32` only, so a workspace that builds
//! a service and a Worker can depend on this crate unconditionally; for the same reason the
//! examples that need a Worker are marked `ignore` (a doc test cannot run inside workerd). They
//! run inside workerd instead: the test Worker `kv-worker/test-worker` exports the class and
//! runs the conformance and pattern suites on it, and `cargo xtask test` drives it through
//! Miniflare with SQLite-backed objects.
//!
//! # How it works
//!
//! - **One request per operation.** The store sends each operation to the object that holds
//!   its key, through the object's stub, as one `POST /kvkit/v1` whose body is a compact binary
//!   encoding behind a version byte; the reply is one body too. A batch sends one request to
//!   each object it touches, at once; a listing asks every object for a page after the same
//!   point and merges the pages in key order.
//! - **Exact, because each request runs alone.** The object serves a request with synchronous
//!   SQL calls and no `await` between its reads and its writes: the runtime delivers no other
//!   event meanwhile, and writes made without an `await` between them commit together. An
//!   increment, a put-if-absent and a compare-and-set are each one such run.
//! - **The table** is keyed by the key as a BLOB (SQLite compares BLOBs with `memcmp`: the
//!   byte order of UTF-8 that listings promise), `WITHOUT ROWID`, with the value, the metadata
//!   as JSON text, the expiry in unix milliseconds and a version from a counter the object
//!   keeps in the same storage (an epoch raised at every start, and the number of the write in
//!   it: every write gives its entry a version no entry of the object had before).
//!   Listings are ranges of the primary key.
//! - **Expiry.** Reads filter on the object's clock, so an expired entry is invisible at once.
//!   A write that expires sets the object's alarm for its expiry when it is earlier than the
//!   alarm already set; the alarm deletes up to 256 expired rows, then sets itself for the next
//!   expiry (at once, when more are due). Alarms run at least once and may run late; each run
//!   deletes only what has expired.
//! - **Sharding.** Keys are spread over [`shards`](DurableBuilder::shards) objects (default
//!   one) by a stable hash of the key, or of the part of it a
//!   [`shard_key`](DurableBuilder::shard_key) picks (one rate-limit identifier's counters in
//!   one object, say). An object handles about a thousand requests a second: spread hot
//!   traffic over many, and remember that each listing page costs one request per object.
//!   Keep the count fixed once data is written.
//!
//! # Which store for what
//!
//! Workers KV ([`kvkit-worker`](https://docs.rs/kvkit-worker)) is read-optimized and cached at
//! the edge, but a write takes up to a minute to be seen elsewhere, and it has no atomic
//! operation: use it for caches and read-mostly configuration. This store is strongly
//! consistent and exact, at the cost of a request to one object (in one location) per
//! operation: use it for counters, rate limits, sessions, locks and anything written
//! concurrently.
//!
//! # Why a crate of its own
//!
//! The class, its SQL and the store are here rather than in `kvkit-worker` behind a feature:
//! a Worker that only uses KV then compiles none of it, and a Worker that exports the class
//! says so with a dependency and one macro line. The price is one more crate to depend on
//! beside `kvkit-worker` when a Worker uses both stores (the example Worker does).

// The store and the class exist on wasm32 only: the docs link them there (docs.rs builds for
// wasm32), and natively the links have nothing to point at.
#![cfg_attr(not(target_arch = "wasm32"), allow(rustdoc::broken_intra_doc_links))]

mod limits;
#[cfg(target_arch = "wasm32")]
mod object;
// Used by the store and the object on wasm32 only; compiled everywhere so its tests run natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod plan;
#[cfg(target_arch = "wasm32")]
mod store;
// Used by the store and the object on wasm32 only; compiled everywhere so its tests run natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod wire;

pub use limits::{BACKEND, capabilities};
#[cfg(target_arch = "wasm32")]
pub use object::Shard;
#[cfg(target_arch = "wasm32")]
pub use store::{DurableBuilder, DurableKvStore, ShardKey};

/// Declares the Durable Object class `$name` and exports it from the Worker: a struct holding a
/// [`Shard`] whose `fetch` and `alarm` it serves. Invoke it once in the Worker's crate (which
/// depends on `worker`), and bind the class in `wrangler.toml` (see the crate docs).
///
/// ```ignore
/// kvkit_durable::durable_object!(KvShard);
/// # async fn check(state: worker::State, env: worker::Env) -> worker::Result<()> {
/// let shard = <KvShard as worker::DurableObject>::new(state, env);
/// // With no expired entry, the alarm deletes nothing and sets no new alarm.
/// let done = worker::DurableObject::alarm(&shard).await?;
/// assert_eq!(done.status_code(), 200);
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! durable_object {
    ($name:ident) => {
        // A module of its own, so that the code `#[durable_object]` generates finds
        // `wasm_bindgen` without the Worker depending on it.
        #[doc(hidden)]
        mod __kvkit_durable_object {
            use ::worker::wasm_bindgen;

            /// The Durable Object class of `kvkit_durable::DurableKvStore`.
            #[::worker::durable_object(alarm)]
            pub struct $name($crate::Shard);

            impl ::worker::DurableObject for $name {
                fn new(state: ::worker::State, env: ::worker::Env) -> Self {
                    Self($crate::Shard::new(state, env))
                }

                async fn fetch(
                    &self,
                    req: ::worker::Request,
                ) -> ::worker::Result<::worker::Response> {
                    self.0.fetch(req).await
                }

                async fn alarm(&self) -> ::worker::Result<::worker::Response> {
                    self.0.alarm().await
                }
            }
        }
        pub use __kvkit_durable_object::$name;
    };
}
