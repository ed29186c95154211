//! axum and tower integration for `kvkit`: a [`RateLimitLayer`] that limits any route per client
//! with the TypeScript middleware's headers and body (plus the IETF `RateLimit` headers), and
//! cookie sessions ([`SessionLayer`], [`CurrentSession`], [`SessionCookie`]) over a
//! [`SessionManager`](kvkit_patterns::SessionManager), on any store. With feature `tower-sessions`,
//! `KvSessionStore` lets existing tower-sessions apps keep their sessions in any store.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use kvkit_http::{CurrentSession, RateLimitLayer, SessionCookie, SessionLayer};
//! use kvkit_patterns::{RateLimiter, Session, SessionManager};
//!
//! let store = std::sync::Arc::new(kvkit_memory::MemoryStore::new());
//! let app: Router = Router::new()
//!     .route("/me", get(|s: CurrentSession<Session>| async move { s.data.email.clone() }))
//!     .layer(SessionLayer::new(SessionManager::new(store.clone()), SessionCookie::new()))
//!     .layer(RateLimitLayer::new(RateLimiter::fixed_window(store, 100, Duration::from_secs(60))));
//! ```
//!
//! # Failure policy
//!
//! Each layer sorts what goes wrong by [`ErrorKind`](kvkit_core::ErrorKind), and no failure is
//! a way around a limit:
//!
//! | what fails | what the request gets |
//! |---|---|
//! | the rate limiter's store is unavailable (`Unavailable`, `Timeout`, `RateLimited`: [`is_retryable`](kvkit_core::ErrorKind::is_retryable)) | through, or `503` ([`OnStoreError`]) |
//! | any other error from the rate limiter (a refused key, permissions, configuration, a corrupt counter) | `500`, logged at `error` |
//! | a request [`ClientKey`] cannot attribute (no `ConnectInfo`, a custom key's `None`) | `500`, logged once with the fix, or one shared quota by choice ([`OnUnidentified`]) |
//! | a client identifier that would not make a valid key (too long for the store, control characters, spaces) | counted under its SHA-256 ([`RateLimitLayer::identifier`]) |
//! | reading the session fails | `503` when the store is unavailable, `500` otherwise |
//! | sliding the session's expiry fails | logged at `warn`; the request goes on with the session it read |
//!
//! The trade-offs:
//!
//! - Failing open on an unavailable store keeps the service up through an outage of its store,
//!   at the price of no limit meanwhile; [`OnStoreError::Reject`] chooses the other side.
//!   `RateLimited` counts as unavailable: the backend throttling us is the store not answering
//!   for now, and a throttled store must not turn into `500`s for everyone. A store that answers
//!   but refuses (anything not retryable) is a bug or a misconfiguration, so it fails closed
//!   whatever the policy: otherwise a client able to provoke such an error would never be
//!   limited.
//! - Identifiers are kept verbatim when they can be, so the counters stay the TypeScript
//!   pattern's `ratelimit:{identifier}:{windowStart}` and a Worker sharing the namespace counts
//!   the same clients. The others are hashed with SHA-256 rather than a faster hash: an unkeyed
//!   fast hash lets a client craft an identifier that collides with another client's and spend
//!   that client's quota, and a keyed one would need a secret shared by every instance of the
//!   service (and a Worker) to count a client in one place. A hashed identifier is 71 bytes, so
//!   the counter key fits any store with keys of 102 bytes or more.
//! - A missing peer address is a deployment mistake that, left quiet, puts every client in
//!   one bucket (one client then exhausts everyone's quota). It is a `500` so that the mistake
//!   shows at the first request; the error is logged once, so a client cannot flood the log.
//! - Forwarding headers are believed only from [`TrustedProxies`], right to left, and only as
//!   far as the proxies vouch for them: the proxies must append to (or overwrite)
//!   `X-Forwarded-For`. Headers are parsed as bytes, so nothing a client writes hides what a
//!   proxy appended.
//! - Sliding a session's expiry is best effort: a request is never refused because that write
//!   failed. The cost is that a session whose refreshes keep failing expires on time, as if
//!   the user had been idle.
//! - Every failure is logged with its kind and the error, which never prints a key: no session
//!   id, no API key from a custom client key, reaches a log line. tower-sessions' errors hold
//!   only text, so `KvSessionStore`'s (feature `tower-sessions`) carry the whole chain of
//!   sources and the kind.

mod client;
mod ratelimit;
mod session;
#[cfg(feature = "tower-sessions")]
mod tower_sessions;

pub use client::{Cidr, ClientKey, InvalidCidr, TrustedProxies};
pub use ratelimit::{OnStoreError, OnUnidentified, RateLimitLayer, RateLimitService};
pub use session::{CurrentSession, SameSite, SessionCookie, SessionLayer, SessionService};
#[cfg(feature = "tower-sessions")]
pub use tower_sessions::KvSessionStore;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `{"error": message}` with `status`, the shape of every error this crate answers with.
///
/// ```
/// let response = kvkit_http::json_error(axum::http::StatusCode::NOT_FOUND, "Unknown product");
/// assert_eq!(response.status(), 404);
/// ```
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
