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
