//! Sessions over HTTP: a cookie, and a layer that loads the session it names.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use futures_util::future::BoxFuture;
use kvkit_core::KvStore;
use kvkit_patterns::{SessionData, SessionId, SessionManager};
use tower::{Layer, Service};

/// The cookie's `SameSite` attribute.
///
/// ```
/// assert_eq!(kvkit_http::SameSite::default(), kvkit_http::SameSite::Lax);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only with same-site requests.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    #[default]
    Lax,
    /// Sent with every request (needs `Secure`).
    None,
}

/// The session cookie: `session` by default, `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`,
/// lasting for the browser session (the store's TTL decides how long the session is valid).
///
/// ```
/// let cookie = kvkit_http::SessionCookie::new().name("sid").domain("example.com");
/// let id = kvkit_patterns::SessionId::generate().unwrap();
/// let set = cookie.set(&id);
/// assert_eq!(set.to_str().unwrap(),
///     format!("sid={id}; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    name: String,
    domain: Option<String>,
    path: String,
    secure: bool,
    same_site: SameSite,
    max_age: Option<Duration>,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionCookie {
    /// The defaults: `session`, `HttpOnly; Secure; SameSite=Lax; Path=/`.
    ///
    /// ```
    /// assert_eq!(kvkit_http::SessionCookie::new().cookie_name(), "session");
    /// ```
    pub fn new() -> Self {
        Self {
            name: "session".to_owned(),
            domain: None,
            path: "/".to_owned(),
            secure: true,
            same_site: SameSite::Lax,
            max_age: None,
        }
    }

    /// The cookie's name (letters, digits and `-`/`_`; others are replaced by `_`).
    ///
    /// ```
    /// assert_eq!(kvkit_http::SessionCookie::new().name("a b").cookie_name(), "a_b");
    /// ```
    pub fn name(mut self, name: &str) -> Self {
        self.name = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self
    }

    /// The cookie's `Domain`.
    ///
    /// ```
    /// let c = kvkit_http::SessionCookie::new().domain("example.com");
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let header = c.set(&id);
    /// let header = header.to_str().unwrap();
    /// assert!(header.contains("; Domain=example.com"), "{header}");
    /// ```
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// The cookie's `Path` (default `/`).
    ///
    /// ```
    /// let c = kvkit_http::SessionCookie::new().path("/app");
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let header = c.set(&id);
    /// let header = header.to_str().unwrap();
    /// assert!(header.contains("; Path=/app"), "{header}");
    /// ```
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Whether the cookie is `Secure` (default yes; turn it off only for plain-HTTP development).
    ///
    /// ```
    /// let c = kvkit_http::SessionCookie::new().secure(false);
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let header = c.set(&id);
    /// let header = header.to_str().unwrap();
    /// assert!(!header.contains("Secure"), "{header}");
    /// assert!(kvkit_http::SessionCookie::new().set(&id).to_str().unwrap().contains("; Secure"));
    /// ```
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The cookie's `SameSite`.
    ///
    /// ```
    /// let c = kvkit_http::SessionCookie::new().same_site(kvkit_http::SameSite::Strict);
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let header = c.set(&id);
    /// let header = header.to_str().unwrap();
    /// assert!(header.contains("; SameSite=Strict"), "{header}");
    /// ```
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// A `Max-Age` for the cookie (default none: it lasts for the browser session).
    ///
    /// ```
    /// let c = kvkit_http::SessionCookie::new().max_age(std::time::Duration::from_secs(86_400));
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let header = c.set(&id);
    /// let header = header.to_str().unwrap();
    /// assert!(header.contains("; Max-Age=86400"), "{header}");
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The cookie's name.
    ///
    /// ```
    /// assert_eq!(kvkit_http::SessionCookie::new().cookie_name(), "session");
    /// ```
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// A `Set-Cookie` value that stores `id`.
    ///
    /// ```
    /// let id = kvkit_patterns::SessionId::generate().unwrap();
    /// let v = kvkit_http::SessionCookie::new().set(&id);
    /// assert!(v.to_str().unwrap().starts_with(&format!("session={id}; ")));
    /// ```
    pub fn set(&self, id: &SessionId) -> HeaderValue {
        self.header(id.as_str(), self.max_age)
    }

    /// A `Set-Cookie` value that removes the cookie.
    ///
    /// ```
    /// let v = kvkit_http::SessionCookie::new().clear();
    /// assert!(v.to_str().unwrap().contains("Max-Age=0"));
    /// ```
    pub fn clear(&self) -> HeaderValue {
        self.header("", Some(Duration::ZERO))
    }

    /// The session id the request's `Cookie` headers carry, if any.
    ///
    /// ```
    /// let mut headers = axum::http::HeaderMap::new();
    /// headers.insert("cookie", "theme=dark; session=abc".parse().unwrap());
    /// assert_eq!(kvkit_http::SessionCookie::new().read(&headers), Some("abc"));
    /// ```
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim_matches('"'))
    }

    fn header(&self, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = format!("{}={value}; Path={}", self.name, self.path);
        if let Some(domain) = &self.domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        if let Some(max_age) = max_age {
            cookie.push_str(&format!("; Max-Age={}", max_age.as_secs()));
        }
        cookie.push_str("; HttpOnly");
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        // Every part is ASCII without control characters: the id is hex, the name is
        // sanitized, and domain and path come from the application's configuration.
        HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The session a request carries, put there by [`SessionLayer`]. As an extractor it rejects
/// requests without a live session with `401` and `{"error":"Not logged in"}`; extract
/// `Option<CurrentSession<D>>` to serve both.
///
/// ```
/// use kvkit_http::CurrentSession;
/// use kvkit_patterns::Session;
/// async fn me(session: CurrentSession<Session>) -> String {
///     session.data.email.clone()
/// }
/// ```
#[derive(Debug)]
pub struct CurrentSession<D> {
    /// The session's id.
    pub id: SessionId,
    /// The session's data.
    pub data: Arc<D>,
}

impl<D> Clone for CurrentSession<D> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            data: Arc::clone(&self.data),
        }
    }
}

impl<D: Send + Sync + 'static, St: Send + Sync> FromRequestParts<St> for CurrentSession<D> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| crate::json_error(StatusCode::UNAUTHORIZED, "Not logged in"))
    }
}

impl<D: Send + Sync + 'static, St: Send + Sync> OptionalFromRequestParts<St> for CurrentSession<D> {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &St,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// Loads the session named by the request's cookie (sliding its expiry at most once per the
/// manager's refresh interval) and hands it to handlers as a [`CurrentSession`].
///
/// A missing, malformed, unknown or expired id means no session (the handler decides). A read
/// that fails is answered rather than logging the user out: `503 Service Unavailable` when the
/// store is unavailable (a retryable error), `500 Internal Server Error` otherwise. Sliding the
/// expiry is best effort: when that write fails, the failure is logged and the request goes on
/// with the session it read ([`SessionManager::get_and_refresh`]). No log line or error names
/// the session id.
///
/// ```
/// use axum::{Router, routing::get};
/// use kvkit_http::{CurrentSession, SessionCookie, SessionLayer};
/// use kvkit_patterns::{Session, SessionManager};
///
/// let sessions = SessionManager::new(kvkit_memory::MemoryStore::new());
/// let app: Router = Router::new()
///     .route("/me", get(|s: CurrentSession<Session>| async move { s.data.email.clone() }))
///     .layer(SessionLayer::new(sessions, SessionCookie::new()));
/// ```
pub struct SessionLayer<S, D> {
    manager: Arc<SessionManager<S, D>>,
    cookie: SessionCookie,
}

impl<S, D> Clone for SessionLayer<S, D> {
    fn clone(&self) -> Self {
        Self {
            manager: Arc::clone(&self.manager),
            cookie: self.cookie.clone(),
        }
    }
}

impl<S: fmt::Debug, D> fmt::Debug for SessionLayer<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("manager", &self.manager)
            .field("cookie", &self.cookie)
            .finish()
    }
}

impl<S: KvStore, D: SessionData> SessionLayer<S, D> {
    /// Sessions from `manager`, named by `cookie`.
    ///
    /// ```
    /// let layer = kvkit_http::SessionLayer::new(
    ///     kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new()),
    ///     kvkit_http::SessionCookie::new().name("sid"),
    /// );
    /// assert!(format!("{layer:?}").contains(r#"name: "sid""#));
    /// ```
    pub fn new(manager: SessionManager<S, D>, cookie: SessionCookie) -> Self {
        Self::shared(Arc::new(manager), cookie)
    }

    /// Like [`new`](Self::new), with a manager the application also uses (to create and
    /// destroy sessions at login and logout).
    ///
    /// ```
    /// let manager = std::sync::Arc::new(kvkit_patterns::SessionManager::new(kvkit_memory::MemoryStore::new()));
    /// let layer = kvkit_http::SessionLayer::shared(manager.clone(), kvkit_http::SessionCookie::new());
    /// assert_eq!(std::sync::Arc::strong_count(&manager), 2, "the layer shares the manager");
    /// # drop(layer);
    /// ```
    pub fn shared(manager: Arc<SessionManager<S, D>>, cookie: SessionCookie) -> Self {
        Self { manager, cookie }
    }
}

impl<S, D, I> Layer<I> for SessionLayer<S, D> {
    type Service = SessionService<S, D, I>;

    fn layer(&self, inner: I) -> Self::Service {
        SessionService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service [`SessionLayer`] wraps around another.
pub struct SessionService<S, D, I> {
    layer: SessionLayer<S, D>,
    inner: I,
}

impl<S, D, I: Clone> Clone for SessionService<S, D, I> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, D, I: fmt::Debug> fmt::Debug for SessionService<S, D, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, D, I, B> Service<Request<B>> for SessionService<S, D, I>
where
    S: KvStore,
    D: SessionData + Send + Sync,
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let id = layer
                .cookie
                .read(request.headers())
                .and_then(SessionId::parse);
            if let Some(id) = id {
                match layer.manager.get_and_refresh(&id).await {
                    Ok(Some(data)) => {
                        request.extensions_mut().insert(CurrentSession {
                            id,
                            data: Arc::new(data),
                        });
                    }
                    Ok(None) => {}
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(target: "kvkit::http", kind = %error.kind(), %error, "session store unavailable; answering 503");
                        return Ok(crate::json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Session store unavailable",
                        ));
                    }
                    Err(error) => {
                        tracing::error!(target: "kvkit::http", kind = %error.kind(), %error, "reading the session failed; answering 500");
                        return Ok(crate::json_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal server error",
                        ));
                    }
                }
            }
            inner.call(request).await
        })
    }
}
