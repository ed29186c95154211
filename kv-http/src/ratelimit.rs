//! A tower layer that rate-limits requests with a [`RateLimiter`] over any store.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use kvkit_core::KvStore;
use kvkit_core::backend::unix_secs_ceil;
use kvkit_patterns::{RateLimit, RateLimiter};
use tower::{Layer, Service};

use crate::ClientKey;

/// What happens to a request when the store cannot be asked.
///
/// ```
/// assert_eq!(kvkit_http::OnStoreError::default(), kvkit_http::OnStoreError::Allow);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Let it through, and log the error (the default: a store outage does not take the
    /// service down).
    #[default]
    Allow,
    /// Answer `503 Service Unavailable`.
    Reject,
}

/// Rate-limits every request through it, per client, as the TypeScript middleware does, with
/// its headers and body.
///
/// Every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
/// (unix seconds, as the TypeScript middleware) and the IETF `RateLimit-Policy`
/// (`"default";q=100;w=60`) and `RateLimit` (`"default";r=99;t=30`) headers. A rejected request
/// gets `429 Too Many Requests`, `Retry-After` and `{"error":"Too many requests"}`.
///
/// Clients are told apart by [`ClientKey`] (the peer address by default). When the store fails,
/// [`OnStoreError`] decides.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use kvkit_patterns::RateLimiter;
///
/// let limiter = RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 100, Duration::from_secs(60));
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(kvkit_http::RateLimitLayer::new(limiter));
/// ```
pub struct RateLimitLayer<S> {
    limiter: Arc<RateLimiter<S>>,
    key: ClientKey,
    on_error: OnStoreError,
}

struct Shared<S> {
    limiter: Arc<RateLimiter<S>>,
    key: ClientKey,
    on_error: OnStoreError,
    policy: HeaderValue,
}

impl<S> Clone for RateLimitLayer<S> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            on_error: self.on_error,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimitLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("key", &self.key)
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl<S: KvStore> RateLimitLayer<S> {
    /// Limits with `limiter`, per peer address, letting requests through when the store fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let layer = kvkit_http::RateLimitLayer::new(limiter);
    /// # let _ = layer;
    /// ```
    pub fn new(limiter: RateLimiter<S>) -> Self {
        Self {
            limiter: Arc::new(limiter),
            key: ClientKey::Peer,
            on_error: OnStoreError::Allow,
        }
    }

    /// Tells clients apart with `key`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let proxies = kvkit_http::TrustedProxies::parse("10.0.0.0/8").unwrap();
    /// let layer = kvkit_http::RateLimitLayer::new(limiter).client_key(kvkit_http::ClientKey::Forwarded(proxies));
    /// # let _ = layer;
    /// ```
    pub fn client_key(mut self, key: ClientKey) -> Self {
        self.key = key;
        self
    }

    /// What to do when the store fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let layer = kvkit_http::RateLimitLayer::new(limiter).on_store_error(kvkit_http::OnStoreError::Reject);
    /// # let _ = layer;
    /// ```
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.on_error = on_error;
        self
    }
}

impl<S: KvStore, I> Layer<I> for RateLimitLayer<S> {
    type Service = RateLimitService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        let policy = format!(
            "\"default\";q={};w={}",
            self.limiter.limit(),
            self.limiter.window_length().as_secs()
        );
        RateLimitService {
            shared: Arc::new(Shared {
                limiter: Arc::clone(&self.limiter),
                key: self.key.clone(),
                on_error: self.on_error,
                policy: HeaderValue::from_str(&policy)
                    .unwrap_or(HeaderValue::from_static("\"default\"")),
            }),
            inner,
        }
    }
}

/// The service [`RateLimitLayer`] wraps around another.
pub struct RateLimitService<S, I> {
    shared: Arc<Shared<S>>,
    inner: I,
}

impl<S, I: Clone> Clone for RateLimitService<S, I> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            inner: self.inner.clone(),
        }
    }
}

impl<S, I: fmt::Debug> fmt::Debug for RateLimitService<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, I, B> Service<Request<B>> for RateLimitService<S, I>
where
    S: KvStore,
    I: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    I::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let client = shared.key.resolve(&parts);
            let request = Request::from_parts(parts, body);
            match shared.limiter.check(&client).await {
                Ok(outcome) if outcome.allowed => {
                    let mut response = inner.call(request).await?;
                    add_headers(response.headers_mut(), &outcome, &shared.policy);
                    Ok(response)
                }
                Ok(outcome) => Ok(too_many_requests(&outcome, &shared.policy)),
                Err(error) => match shared.on_error {
                    OnStoreError::Allow => {
                        tracing::warn!(target: "kvkit::http", %error, "rate limiter unavailable; letting the request through");
                        inner.call(request).await
                    }
                    OnStoreError::Reject => {
                        tracing::warn!(target: "kvkit::http", %error, "rate limiter unavailable; rejecting the request");
                        Ok(crate::json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Rate limiter unavailable",
                        ))
                    }
                },
            }
        })
    }
}

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

fn add_headers(headers: &mut HeaderMap, outcome: &RateLimit, policy: &HeaderValue) {
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(outcome.limit));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(outcome.remaining));
    headers.insert(
        X_RATELIMIT_RESET,
        HeaderValue::from(unix_secs_ceil(outcome.reset_at)),
    );
    headers.insert(RATELIMIT_POLICY, policy.clone());
    let current = format!(
        "\"default\";r={};t={}",
        outcome.remaining,
        outcome.reset_after.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&current) {
        headers.insert(RATELIMIT, value);
    }
}

fn too_many_requests(outcome: &RateLimit, policy: &HeaderValue) -> Response {
    let mut response = crate::json_error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
    let headers = response.headers_mut();
    add_headers(headers, outcome, policy);
    headers.insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(outcome.reset_after.as_secs().max(1)),
    );
    response.into_response()
}
