//! Cloudflare Workers KV through a Worker's binding: the [`KvStore`](kvkit_core::KvStore) contract
//! for Rust Workers (the `worker` crate, compiled to `wasm32-unknown-unknown`), with no REST
//! round trip and no API token.
//!
//! Everything in this crate exists on `wasm32` only; on other targets it is empty, so a workspace
//! that builds both a service and a Worker can depend on it unconditionally. For the same reason
//! its examples are marked `ignore`: a doc test cannot run inside a Worker. The store, the
//! spawner and the patterns they show run inside workerd instead, in the test Worker
//! (`kv-worker/test-worker`) and the example Worker (`examples/worker`) that `cargo xtask test`
//! builds and drives.
//!
//! ```ignore
//! use std::time::Duration;
//! use kvkit_patterns::{Cache, CacheOptions, RateLimiter};
//! use kvkit_worker::{WaitUntil, WorkerKvStore};
//! use worker::{event, Context, Env, Request, Response, Result};
//!
//! #[event(fetch)]
//! async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
//!     let store = WorkerKvStore::from_env(&env, "KV").map_err(|e| e.to_string())?;
//!     let limiter = RateLimiter::fixed_window(store.clone(), 100, Duration::from_secs(60));
//!     let client = req.headers().get("CF-Connecting-IP")?.unwrap_or_default();
//!     if !limiter.check(&client).await.map_err(|e| e.to_string())?.allowed {
//!         return Response::error("Too Many Requests", 429);
//!     }
//!     // A stale page is served at once and refreshed after the response, kept alive by
//!     // `waitUntil`.
//!     let cache = Cache::builder(store).spawner(WaitUntil::new(ctx)).build();
//!     let options = CacheOptions::new(Duration::from_secs(300));
//!     let page: String = cache
//!         .cached("page:home", &options, || async { Ok::<_, String>("hello".to_owned()) })
//!         .await
//!         .map_err(|e| e.to_string())?;
//!     assert_eq!(page, "hello");
//!     Response::ok(page)
//! }
//! ```
//!
//! # The same contract as the REST backend
//!
//! `WorkerKvStore` checks every Cloudflare limit before calling the binding (keys of at most
//! 512 bytes and not `.` or `..`, values up to 25 MiB, metadata up to 1,024 bytes of JSON, TTLs
//! of at least 60 s, list pages of at most 1,000 keys, bulk reads of at most 100 keys) with the
//! same typed errors as every other backend, and says what Cloudflare guarantees through
//! [`Capabilities`](kvkit_core::Capabilities): eventual consistency (a write is visible at once in
//! the location that made it and within about 60 s elsewhere; listings lag the same way), a
//! best-effort counter and put-if-absent (a read, then a write: two Workers can both win), and
//! metadata carried through JavaScript's JSON (integers beyond 2^53 lose precision).
//!
//! How each operation maps onto the binding:
//!
//! - `get` is `get(key, "arrayBuffer")`: the exact bytes.
//! - `get_with_metadata` is `getWithMetadata(key, "arrayBuffer")` and, at the same time, a
//!   one-key `list` for the expiration, which the binding reports nowhere else. On Cloudflare a
//!   key written in the last minute may not be listed yet: its expiration then reads as `None`.
//! - `get_many` is one bulk `get(keys, "text")` (the binding's bulk read takes text or JSON
//!   only); values that are not UTF-8 are read again one by one, exactly.
//! - `put_many` and `delete_many` validate every item before the first write, then call `put`
//!   and `delete` per key, a few at a time: the binding has no bulk writes. A Worker invocation
//!   may make 1,000 KV operations; a bulk read counts as one.
//! - `increment` reads the counter and writes it back with its metadata and expiration, as the
//!   REST backend does; route a hot counter through one Durable Object when it must be exact.
//!
//! Errors thrown by the binding become [`Error::RateLimited`](kvkit_core::Error::RateLimited) for
//! Cloudflare's one-write-per-second-per-key limit (HTTP 429), a retryable
//! [`Error::Backend`](kvkit_core::Error::Backend) for 5xx, and a non-retryable one otherwise.

#[cfg(target_arch = "wasm32")]
mod binding;
#[cfg(target_arch = "wasm32")]
mod spawn;
// Used by the binding on wasm32 only; compiled everywhere so its tests run natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod wire;

#[cfg(target_arch = "wasm32")]
pub use binding::WorkerKvStore;
#[cfg(target_arch = "wasm32")]
pub use spawn::WaitUntil;
pub use wire::BACKEND;
