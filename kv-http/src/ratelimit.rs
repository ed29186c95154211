//! A tower layer that rate-limits requests with a [`RateLimiter`] over any store.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use kvkit_core::KvStore;
use kvkit_core::backend::unix_secs_ceil;
use kvkit_patterns::{RateLimit, RateLimiter};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::ClientKey;

/// What happens to a request when the store is unavailable: the limiter's error is one that
/// may go away by itself ([`ErrorKind::is_retryable`](kvkit_core::ErrorKind::is_retryable):
/// `Unavailable`, `Timeout`, or `RateLimited`, the backend throttling us, which is the store not
/// answering for now as much as an outage is).
///
/// Any other error (a key the store refuses, a permission or configuration problem, a counter
/// that is not a number) is not an outage but a bug or a misconfiguration: it is answered
/// `500 Internal Server Error` and logged, whatever this says, so no error is a free pass.
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

/// What happens to a request whose [`ClientKey`] names no client: no `ConnectInfo` (a router
/// served without `into_make_service_with_connect_info::<SocketAddr>()`), or a custom key that
/// said `None`.
///
/// ```
/// use kvkit_http::OnUnidentified;
/// assert_eq!(OnUnidentified::default(), OnUnidentified::Fail);
/// let shared = OnUnidentified::Share("unknown".to_owned());
/// assert_ne!(shared, OnUnidentified::Fail);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnUnidentified {
    /// Answer `500 Internal Server Error`, and log (once, at `error`) what is missing and how to
    /// fix it (the default): such requests are neither let through unlimited nor counted in a
    /// bucket shared by accident.
    #[default]
    Fail,
    /// Count every such request under this one identifier, so they share one quota (the
    /// TypeScript middleware's `unknown`), as a deliberate choice.
    Share(String),
}

/// Rate-limits every request through it, per client, as the TypeScript middleware does, with
/// its headers and body.
///
/// Every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
/// (unix seconds, as the TypeScript middleware) and the IETF `RateLimit-Policy`
/// (`"default";q=100;w=60`) and `RateLimit` (`"default";r=99;t=30`) headers. A rejected request
/// gets `429 Too Many Requests`, `Retry-After` and `{"error":"Too many requests"}`.
///
/// Clients are told apart by [`ClientKey`] (the peer address by default); a request it cannot
/// attribute is [`OnUnidentified`]'s to decide. Every client is counted, whatever its
/// identifier: one that would not make a valid key is counted under its hash
/// ([`identifier`](Self::identifier)). When the store is unavailable, [`OnStoreError`] decides;
/// any other error from the limiter is a `500`.
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
    on_unidentified: OnUnidentified,
    /// Shared by every service this layer (or a clone) makes: axum may make one per request.
    reported_unidentified: Arc<AtomicBool>,
}

struct Shared<S> {
    limiter: Arc<RateLimiter<S>>,
    key: ClientKey,
    on_error: OnStoreError,
    on_unidentified: OnUnidentified,
    max_key_bytes: usize,
    policy: HeaderValue,
    /// Whether an unidentified request was logged at `error` already (later ones are `debug`,
    /// so a client that can make its request unidentified cannot flood the log).
    reported_unidentified: Arc<AtomicBool>,
}

impl<S> Clone for RateLimitLayer<S> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            on_error: self.on_error,
            on_unidentified: self.on_unidentified.clone(),
            reported_unidentified: Arc::clone(&self.reported_unidentified),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimitLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("key", &self.key)
            .field("on_error", &self.on_error)
            .field("on_unidentified", &self.on_unidentified)
            .finish()
    }
}

impl<S: KvStore> RateLimitLayer<S> {
    /// Limits with `limiter`, per peer address, letting requests through when the store is
    /// unavailable.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let layer = kvkit_http::RateLimitLayer::new(limiter);
    /// assert!(format!("{layer:?}").contains("key: Peer, on_error: Allow, on_unidentified: Fail"));
    /// ```
    pub fn new(limiter: RateLimiter<S>) -> Self {
        Self {
            limiter: Arc::new(limiter),
            key: ClientKey::Peer,
            on_error: OnStoreError::Allow,
            on_unidentified: OnUnidentified::Fail,
            reported_unidentified: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tells clients apart with `key`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let proxies = kvkit_http::TrustedProxies::parse("10.0.0.0/8").unwrap();
    /// let layer = kvkit_http::RateLimitLayer::new(limiter).client_key(kvkit_http::ClientKey::Forwarded(proxies));
    /// assert!(format!("{layer:?}").contains("key: Forwarded("));
    /// ```
    pub fn client_key(mut self, key: ClientKey) -> Self {
        self.key = key;
        self
    }

    /// What to do when the store is unavailable (other errors are always a `500`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// let layer = kvkit_http::RateLimitLayer::new(limiter).on_store_error(kvkit_http::OnStoreError::Reject);
    /// assert!(format!("{layer:?}").contains("on_error: Reject"));
    /// ```
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.on_error = on_error;
        self
    }

    /// What to do with a request the [`ClientKey`] cannot attribute to a client (by default,
    /// answer `500` and log the fix).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvkit_http::OnUnidentified;
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(kvkit_memory::MemoryStore::new(), 10, Duration::from_secs(1));
    /// // A service behind a transport with no peer address: every request shares one quota.
    /// let layer = kvkit_http::RateLimitLayer::new(limiter)
    ///     .on_unidentified(OnUnidentified::Share("unknown".to_owned()));
    /// assert!(format!("{layer:?}").contains(r#"on_unidentified: Share("unknown")"#));
    /// ```
    pub fn on_unidentified(mut self, on_unidentified: OnUnidentified) -> Self {
        self.on_unidentified = on_unidentified;
        self
    }

    /// The identifier `client` is counted under, in the counter key
    /// `ratelimit:{identifier}:{windowStart}`.
    ///
    /// A client made of printable ASCII (no spaces or control characters) whose key fits the
    /// store's [`max_key_bytes`](kvkit_core::Capabilities::max_key_bytes) is its own
    /// identifier, so the keys stay the TypeScript pattern's. Any other client (too long, empty,
    /// other characters, or itself starting with `sha256:`) is `sha256:` and the lowercase hex
    /// SHA-256 of its UTF-8 bytes: every client gets a valid key, distinct clients get distinct
    /// keys, and every instance of the service (or a TypeScript Worker, with
    /// `crypto.subtle.digest`) computes the same one. (A store whose keys are shorter than 102
    /// bytes cannot hold a hashed identifier: its checks fail, and are answered `500`.)
    ///
    /// ```
    /// use std::time::Duration;
    /// let store = kvkit_memory::MemoryStore::builder().cloudflare_limits().build();
    /// let limiter = kvkit_patterns::RateLimiter::fixed_window(store, 10, Duration::from_secs(60));
    /// let layer = kvkit_http::RateLimitLayer::new(limiter);
    /// assert_eq!(layer.identifier("203.0.113.7"), "203.0.113.7");
    /// assert_eq!(layer.identifier("2001:db8::1"), "2001:db8::1");
    /// assert_eq!(
    ///     layer.identifier(""),
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    /// );
    /// let long = "k".repeat(600);
    /// assert!(layer.identifier(&long).starts_with("sha256:"));
    /// assert_eq!(layer.identifier(&long).len(), 71);
    /// assert_ne!(layer.identifier("a b"), "a b");
    /// let forged = layer.identifier("");
    /// assert_ne!(layer.identifier(&forged), forged, "a hash cannot be claimed verbatim");
    /// ```
    pub fn identifier<'a>(&self, client: &'a str) -> Cow<'a, str> {
        identifier(client, self.limiter.store().capabilities().max_key_bytes)
    }
}

/// The prefix of a hashed identifier.
const HASHED: &str = "sha256:";
/// What a counter key adds to its identifier: `ratelimit:` before it and `:{windowStart}` (at
/// most 20 digits) after it.
const KEY_OVERHEAD: usize = "ratelimit:".len() + 1 + 20;
const HEX: &[u8; 16] = b"0123456789abcdef";

fn identifier(client: &str, max_key_bytes: usize) -> Cow<'_, str> {
    let verbatim = !client.is_empty()
        && client.len().saturating_add(KEY_OVERHEAD) <= max_key_bytes
        && client.bytes().all(|b| b.is_ascii_graphic())
        && !client.starts_with(HASHED);
    if verbatim {
        return Cow::Borrowed(client);
    }
    let digest = Sha256::digest(client.as_bytes());
    let mut hashed = String::with_capacity(HASHED.len() + 2 * digest.len());
    hashed.push_str(HASHED);
    for byte in digest.iter() {
        hashed.push(char::from(HEX[usize::from(byte >> 4)]));
        hashed.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Cow::Owned(hashed)
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
                on_unidentified: self.on_unidentified.clone(),
                max_key_bytes: self.limiter.store().capabilities().max_key_bytes,
                policy: HeaderValue::from_str(&policy)
                    .unwrap_or(HeaderValue::from_static("\"default\"")),
                reported_unidentified: Arc::clone(&self.reported_unidentified),
            }),
            inner,
        }
    }
}

impl<S> Shared<S> {
    /// Logs a request the key could not attribute: the first at `error`, naming the fix.
    fn report_unidentified(&self) {
        let missing = match self.key {
            ClientKey::Custom(_) => "the custom ClientKey returned None for this request",
            ClientKey::Peer | ClientKey::Forwarded(_) => {
                "the request has no ConnectInfo<SocketAddr>; serve the router with \
                 `into_make_service_with_connect_info::<SocketAddr>()`"
            }
        };
        if self.reported_unidentified.swap(true, Ordering::Relaxed) {
            tracing::debug!(target: "kvkit::http", "rate limiter cannot tell the client; answering 500: {missing}");
        } else {
            tracing::error!(
                target: "kvkit::http",
                "rate limiter cannot tell which client sent a request, so it answers 500 rather \
                 than let it through unlimited: {missing}, or count such requests in one shared \
                 quota with `RateLimitLayer::on_unidentified(OnUnidentified::Share(..))` \
                 (logged once; later ones at debug)"
            );
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
            let client = match (client, &shared.on_unidentified) {
                (Some(client), _) => Cow::Owned(client),
                (None, OnUnidentified::Share(bucket)) => Cow::Borrowed(bucket.as_str()),
                (None, OnUnidentified::Fail) => {
                    shared.report_unidentified();
                    return Ok(internal_error());
                }
            };
            let identifier = identifier(&client, shared.max_key_bytes);
            match shared.limiter.check(&identifier).await {
                Ok(outcome) if outcome.allowed => {
                    let mut response = inner.call(request).await?;
                    add_headers(response.headers_mut(), &outcome, &shared.policy);
                    Ok(response)
                }
                Ok(outcome) => Ok(too_many_requests(&outcome, &shared.policy)),
                Err(error) if error.is_retryable() => match shared.on_error {
                    OnStoreError::Allow => {
                        tracing::warn!(target: "kvkit::http", kind = %error.kind(), %error, "rate limiter unavailable; letting the request through");
                        inner.call(request).await
                    }
                    OnStoreError::Reject => {
                        tracing::warn!(target: "kvkit::http", kind = %error.kind(), %error, "rate limiter unavailable; rejecting the request");
                        Ok(crate::json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Rate limiter unavailable",
                        ))
                    }
                },
                Err(error) => {
                    tracing::error!(target: "kvkit::http", kind = %error.kind(), %error, "rate limiter failed; answering 500");
                    Ok(internal_error())
                }
            }
        })
    }
}

/// `500` with `{"error":"Internal server error"}`: what went wrong is in the log, not the body.
fn internal_error() -> Response {
    crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
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
