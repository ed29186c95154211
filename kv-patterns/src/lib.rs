//! The patterns people build on a key-value store, over any [`KvStore`](kvkit_core::KvStore): a read-through
//! [`Cache`] with stale-while-revalidate, a [`SessionManager`], and a [`RateLimiter`].
//!
//! They start from the TypeScript patterns for Cloudflare Workers KV that this project grew
//! from, keep their stored formats byte for byte (so a Rust service and a TypeScript Worker can
//! share one namespace), and fix their weaknesses:
//!
//! | | the TypeScript pattern | here |
//! |---|---|---|
//! | cache | every concurrent miss calls the fetcher; every stale hit starts a refresh | one fetch per key per process (single flight); one refresh per key at a time, across processes too (a lease key) |
//! | sessions | ids from `crypto.randomUUID()`; `refresh` rewrites on every call | ids from the OS CSPRNG; create never overwrites; refresh writes at most once per interval; rotation; "log out everywhere" |
//! | rate limit | read, then write: concurrent requests over-admit | one atomic increment: exactly `limit` admitted on stores with an atomic counter |
//!
//! | key | value | written by |
//! |---|---|---|
//! | `cache:{key}` | `{"data": <json>, "timestamp": <ms since epoch>}` | [`Cache`] |
//! | `session:{id}` | the session as JSON (`{"userId", "email", "role", "createdAt"}` for [`Session`]) | [`SessionManager`] |
//! | `ratelimit:{identifier}:{windowStart}` | the count as a decimal string | [`RateLimiter`] |
//!
//! Time comes from an injectable [`Clock`](kvkit_core::Clock), so tests move a
//! [`ManualClock`](kvkit_core::ManualClock) instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use kvkit_patterns::{Cache, CacheOptions, RateLimiter, SessionManager};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = std::sync::Arc::new(kvkit_memory::MemoryStore::new());
//!
//! let cache = Cache::new(store.clone());
//! let options = CacheOptions::new(Duration::from_secs(300)).stale_while_revalidate(Duration::from_secs(60));
//! let price: u32 = cache.cached("price:42", &options, || async { Ok::<_, std::io::Error>(1999) }).await?;
//! assert_eq!(price, 1999);
//!
//! let sessions = SessionManager::new(store.clone());
//! let id = sessions.create_for("u1", "ada@example.com", "admin").await?;
//! assert_eq!(sessions.get(&id).await?.unwrap().email, "ada@example.com");
//!
//! let limiter = RateLimiter::fixed_window(store, 100, Duration::from_secs(60));
//! assert!(limiter.check("203.0.113.7").await?.allowed);
//! # Ok(()) }
//! ```

mod cache;
mod ratelimit;
mod session;
mod spawn;

pub use cache::{Cache, CacheBuilder, CacheError, CacheOptions, CacheStatus, Cached};
pub use ratelimit::{RateLimit, RateLimiter, RateLimiterBuilder, Window};
pub use session::{Session, SessionData, SessionId, SessionManager, SessionManagerBuilder};
#[cfg(target_arch = "wasm32")]
pub use spawn::LocalSpawner;
#[cfg(not(target_arch = "wasm32"))]
pub use spawn::TokioSpawner;
pub use spawn::{MaybeSend, Spawn, Task};
