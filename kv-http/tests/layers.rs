//! The rate-limit and session layers on real axum routers, requests sent through `oneshot`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use kvkit_core::{
    Bytes, Capabilities, CounterOptions, Entry, Error, ErrorKind, KvStore, ListOptions, ListPage,
    PutItem, PutOptions,
};
use kvkit_http::{
    ClientKey, CurrentSession, OnStoreError, OnUnidentified, RateLimitLayer, SessionCookie,
    SessionLayer, TrustedProxies,
};
use kvkit_memory::MemoryStore;
use kvkit_patterns::{RateLimiter, Session, SessionManager};
use tower::ServiceExt;

mod support;
use support::Failing;

fn request(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().uri("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).expect("request");
    let peer: SocketAddr = format!("{peer}:40000").parse().expect("peer");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn body(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .expect("ASCII header")
}

fn limited(limit: u64, key: ClientKey) -> Router {
    let limiter = RateLimiter::fixed_window(MemoryStore::new(), limit, Duration::from_secs(60));
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limiter).client_key(key))
}

#[tokio::test]
async fn headers_then_429_with_the_seed_body() {
    let app = limited(3, ClientKey::Peer);
    for remaining in ["2", "1", "0"] {
        let response = app
            .clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit"), "3");
        assert_eq!(header(&response, "x-ratelimit-remaining"), remaining);
        let reset: u64 = header(&response, "x-ratelimit-reset")
            .parse()
            .expect("epoch seconds");
        assert_eq!(reset % 60, 0, "the window's end");
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"default\";q=3;w=60"
        );
        let current = header(&response, "ratelimit");
        assert!(
            current.starts_with(&format!("\"default\";r={remaining};t=")),
            "{current}"
        );
    }
    let rejected = app
        .clone()
        .oneshot(request("192.0.2.1", &[]))
        .await
        .expect("infallible");
    assert_eq!(rejected.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&rejected, "retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert_eq!(header(&rejected, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&rejected, "content-type"), "application/json");
    assert_eq!(
        body(rejected).await,
        serde_json::json!({"error": "Too many requests"})
    );

    let other = app
        .oneshot(request("192.0.2.2", &[]))
        .await
        .expect("infallible");
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client has its own quota"
    );
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let proxies = TrustedProxies::parse("10.0.0.0/8").expect("proxies");
    let app = limited(1, ClientKey::Forwarded(proxies));

    // An untrusted peer cannot pick its key by sending headers.
    let first = app
        .clone()
        .oneshot(request("198.51.100.9", &[("x-forwarded-for", "1.1.1.1")]))
        .await
        .expect("infallible");
    assert_eq!(first.status(), StatusCode::OK);
    let spoofed = app
        .clone()
        .oneshot(request("198.51.100.9", &[("x-forwarded-for", "2.2.2.2")]))
        .await
        .expect("infallible");
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);

    // Through the proxies, the right-most untrusted hop is the client; a client-written
    // left-most entry changes nothing.
    let via = |xff: &'static str| request("10.0.0.1", &[("x-forwarded-for", xff)]);
    assert_eq!(
        app.clone()
            .oneshot(via("6.6.6.6, 203.0.113.7, 10.0.0.2"))
            .await
            .expect("ok")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(via("7.7.7.7, 203.0.113.7"))
            .await
            .expect("ok")
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.clone()
            .oneshot(via("203.0.113.8"))
            .await
            .expect("ok")
            .status(),
        StatusCode::OK
    );
}

#[test]
fn client_key_resolution() {
    let proxies = TrustedProxies::parse("10.0.0.0/8, 2001:db8::/32").expect("proxies");
    let key = ClientKey::Forwarded(proxies);
    let resolve = |peer: &str, headers: &[(&str, &str)]| {
        let (parts, _) = request(peer, headers).into_parts();
        key.resolve(&parts).expect("a peer")
    };
    assert_eq!(
        resolve(
            "10.1.1.1",
            &[(
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::17]:4711\""
            )]
        ),
        "192.0.2.60"
    );
    assert_eq!(
        resolve("10.1.1.1", &[("cf-connecting-ip", "203.0.113.50")]),
        "203.0.113.50"
    );
    assert_eq!(
        resolve("192.0.2.99", &[("cf-connecting-ip", "203.0.113.50")]),
        "192.0.2.99"
    );
    assert_eq!(
        resolve("10.1.1.1", &[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]),
        "10.2.2.2"
    );
    assert_eq!(resolve("10.1.1.1", &[]), "10.1.1.1");
    assert_eq!(
        resolve("10.1.1.1", &[("x-forwarded-for", "203.0.113.1:5555")]),
        "203.0.113.1"
    );
    let (parts, _) = Request::builder().body(()).expect("request").into_parts();
    assert_eq!(ClientKey::Peer.resolve(&parts), None, "no ConnectInfo");
    assert_eq!(key.resolve(&parts), None, "no ConnectInfo");
}

/// A memory store whose reads work and whose writes fail as a store that went away does.
#[derive(Debug)]
struct WritesFail(MemoryStore);

fn lost() -> Error {
    Error::backend("flaky", "connection lost", true, "reset by peer")
}

#[kvkit_core::backend::async_trait]
impl KvStore for WritesFail {
    fn capabilities(&self) -> &Capabilities {
        self.0.capabilities()
    }
    async fn get(&self, key: &str) -> kvkit_core::Result<Option<Bytes>> {
        self.0.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> kvkit_core::Result<Option<Entry>> {
        self.0.get_with_metadata(key).await
    }
    async fn put(&self, _: &str, _: Bytes, _: PutOptions) -> kvkit_core::Result<()> {
        Err(lost())
    }
    async fn put_if_absent(&self, _: &str, _: Bytes, _: PutOptions) -> kvkit_core::Result<bool> {
        Err(lost())
    }
    async fn delete(&self, _: &str) -> kvkit_core::Result<()> {
        Err(lost())
    }
    async fn delete_if_version(&self, _: &str, _: &kvkit_core::Version) -> kvkit_core::Result<()> {
        Err(lost())
    }
    async fn list(&self, options: ListOptions) -> kvkit_core::Result<ListPage> {
        self.0.list(options).await
    }
    async fn get_many(&self, keys: &[String]) -> kvkit_core::Result<Vec<Option<Bytes>>> {
        self.0.get_many(keys).await
    }
    async fn put_many(&self, _: Vec<PutItem>) -> kvkit_core::Result<()> {
        Err(lost())
    }
    async fn delete_many(&self, _: &[String]) -> kvkit_core::Result<()> {
        Err(lost())
    }
    async fn increment(&self, _: &str, _: i64, _: CounterOptions) -> kvkit_core::Result<i64> {
        Err(lost())
    }
}

/// Every event logged on this thread while it is installed, one line each:
/// `LEVEL target field=value …`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("logs").clone()
    }
}

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut line = format!("{} {}", meta.level(), meta.target());
        event.record(&mut Line(&mut line));
        self.0.lock().expect("logs").push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Whether `text` holds 8 consecutive characters of `id`.
fn leaks(text: &str, id: &str) -> bool {
    id.as_bytes()
        .windows(8)
        .any(|part| text.contains(std::str::from_utf8(part).expect("ASCII id")))
}

#[tokio::test]
async fn a_failing_store_fails_open_or_closed() {
    let limiter = || RateLimiter::fixed_window(Failing::down(), 10, Duration::from_secs(60));
    let open = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limiter()));
    let response = open
        .oneshot(request("192.0.2.1", &[]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-ratelimit-remaining").is_none());

    let closed = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limiter()).on_store_error(OnStoreError::Reject));
    let response = closed
        .oneshot(request("192.0.2.1", &[]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body(response).await,
        serde_json::json!({"error": "Rate limiter unavailable"})
    );
}

async fn me(session: CurrentSession<Session>) -> String {
    session.data.email.clone()
}

async fn maybe(session: Option<CurrentSession<Session>>) -> &'static str {
    if session.is_some() { "in" } else { "out" }
}

#[tokio::test]
async fn sessions_from_the_cookie() {
    let manager = Arc::new(SessionManager::new(MemoryStore::new()));
    let cookie = SessionCookie::new().name("sid");
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .layer(SessionLayer::shared(manager.clone(), cookie.clone()));
    let id = manager
        .create_for("u1", "ada@example.com", "admin")
        .await
        .expect("create");
    let call = |path: &str, cookie: Option<String>| {
        let mut builder = Request::builder().uri(path);
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        app.clone()
            .oneshot(builder.body(Body::empty()).expect("request"))
    };

    let response = call("/me", Some(format!("theme=dark; sid={id}")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"ada@example.com");

    for cookie in [
        None,
        Some("sid=forged".to_owned()),
        Some("other=x".to_owned()),
    ] {
        let response = call("/me", cookie).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            body(response).await,
            serde_json::json!({"error": "Not logged in"})
        );
    }
    let response = call("/maybe", None).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"out");

    manager.destroy(&id).await.expect("destroy");
    let response = call("/me", Some(format!("sid={id}")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let down = Router::new().route("/me", get(me)).layer(SessionLayer::new(
        SessionManager::new(Failing::down()),
        cookie,
    ));
    let response = down
        .oneshot(
            Request::builder()
                .uri("/me")
                .header("cookie", format!("sid={id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

fn ok() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

async fn status(app: &Router, request: Request<Body>) -> StatusCode {
    app.clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn only_an_unavailable_store_fails_open() {
    let unavailable: [(fn() -> Error, ErrorKind); 3] = [
        (
            || Error::backend("x", "connection refused", true, "refused"),
            ErrorKind::Unavailable,
        ),
        (
            || Error::Timeout {
                backend: "x",
                operation: "increment",
                after: Duration::from_secs(1),
            },
            ErrorKind::Timeout,
        ),
        (
            || Error::RateLimited {
                backend: "x",
                retry_after: None,
            },
            ErrorKind::RateLimited,
        ),
    ];
    for (error, kind) in unavailable {
        assert_eq!(error().kind(), kind);
        let limiter =
            || RateLimiter::fixed_window(Failing::with(error), 1, Duration::from_secs(60));
        let open = ok().layer(RateLimitLayer::new(limiter()));
        let closed =
            ok().layer(RateLimitLayer::new(limiter()).on_store_error(OnStoreError::Reject));
        assert_eq!(
            status(&open, request("192.0.2.1", &[])).await,
            StatusCode::OK,
            "{kind}"
        );
        assert_eq!(
            status(&closed, request("192.0.2.1", &[])).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{kind}"
        );
    }

    // Anything else is not an outage: no policy lets it through.
    let broken: [fn() -> Error; 6] = [
        || Error::PermissionDenied {
            backend: "x",
            message: "token revoked".to_owned(),
        },
        || Error::configuration("x", "no such namespace"),
        || Error::backend("x", "script failed", false, "ERR"),
        || Error::Unsupported {
            backend: "x",
            operation: "increment",
        },
        || Error::NotACounter {
            key: kvkit_core::RedactedKey::new("ratelimit:192.0.2.1:0"),
        },
        || Error::EmptyKey,
    ];
    let logs = Logs::default();
    let _guard = logs.install();
    for error in broken {
        let kind = error().kind();
        for policy in [OnStoreError::Allow, OnStoreError::Reject] {
            let limiter =
                RateLimiter::fixed_window(Failing::with(error), 1, Duration::from_secs(60));
            let app = ok().layer(RateLimitLayer::new(limiter).on_store_error(policy));
            let response = app
                .oneshot(request("192.0.2.1", &[]))
                .await
                .expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{kind} with {policy:?}"
            );
            assert_eq!(
                body(response).await,
                serde_json::json!({"error": "Internal server error"})
            );
        }
        assert!(
            logs.lines()
                .iter()
                .any(|line| line.starts_with("ERROR kvkit::http")
                    && line.contains(&format!("kind={kind}"))),
            "{kind}: {:?}",
            logs.lines()
        );
    }
    assert!(
        !logs.lines().iter().any(|line| line.contains("192.0.2.1")),
        "no key in a log line: {:?}",
        logs.lines()
    );
}

async fn keys(store: &MemoryStore) -> Vec<String> {
    let page = store
        .list(ListOptions::new().prefix("ratelimit:"))
        .await
        .expect("list");
    page.keys.into_iter().map(|key| key.name).collect()
}

#[tokio::test]
async fn every_identifier_is_limited_and_normal_ones_stay_verbatim() {
    let store = MemoryStore::builder().cloudflare_limits().build();
    let limiter = RateLimiter::fixed_window(store.clone(), 1, Duration::from_secs(60));
    let app = ok().layer(
        RateLimitLayer::new(limiter).client_key(ClientKey::custom(|parts| {
            parts
                .headers
                .get("x-client")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        })),
    );
    let long = "k".repeat(600);
    for client in ["k1", long.as_str(), "with space", "sha256:forged", "", "é"] {
        let send = || request("192.0.2.1", &[("x-client", client)]);
        assert_eq!(status(&app, send()).await, StatusCode::OK, "{client:?}");
        assert_eq!(
            status(&app, send()).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{client:?} gets no second request"
        );
    }
    let keys = keys(&store).await;
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("ratelimit:k1:")),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("ratelimit:sha256:"))
            .count(),
        5,
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.len() <= 512 && !k.contains(' ')),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_request_without_connect_info_is_an_error_not_a_shared_bucket() {
    let logs = Logs::default();
    let _guard = logs.install();
    let limiter = RateLimiter::fixed_window(MemoryStore::new(), 100, Duration::from_secs(60));
    let app = ok().layer(RateLimitLayer::new(limiter));
    let bare = || {
        Request::builder()
            .uri("/")
            .body(Body::empty())
            .expect("request")
    };
    for _ in 0..3 {
        let response = app.clone().oneshot(bare()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get("x-ratelimit-remaining").is_none());
    }
    let errors: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|line| line.starts_with("ERROR kvkit::http"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once: {:?}", logs.lines());
    assert!(
        errors[0].contains("into_make_service_with_connect_info::<SocketAddr>()")
            && errors[0].contains("OnUnidentified::Share"),
        "names the fix: {}",
        errors[0]
    );

    // The same for a custom key that names no client.
    let limiter = RateLimiter::fixed_window(MemoryStore::new(), 100, Duration::from_secs(60));
    let app = ok().layer(RateLimitLayer::new(limiter).client_key(ClientKey::custom(|_| None)));
    assert_eq!(
        status(&app, request("192.0.2.1", &[])).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        logs.lines()
            .iter()
            .any(|line| line.contains("the custom ClientKey returned None")),
        "{:?}",
        logs.lines()
    );

    // A shared bucket is there for who asks for it.
    let limiter = RateLimiter::fixed_window(MemoryStore::new(), 1, Duration::from_secs(60));
    let app = ok().layer(
        RateLimitLayer::new(limiter).on_unidentified(OnUnidentified::Share("unknown".to_owned())),
    );
    assert_eq!(status(&app, bare()).await, StatusCode::OK);
    assert_eq!(status(&app, bare()).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        status(&app, request("192.0.2.1", &[])).await,
        StatusCode::OK,
        "a known peer has its own quota"
    );
}

#[tokio::test]
async fn a_failed_refresh_write_keeps_the_session_and_the_id_out_of_the_log() {
    let logs = Logs::default();
    let _guard = logs.install();
    let memory = MemoryStore::new();
    let id = SessionManager::new(memory.clone())
        .create_for("u1", "ada@example.com", "admin")
        .await
        .expect("create");
    // Every request is due a refresh, and every write fails.
    let manager = SessionManager::<_>::builder(WritesFail(memory))
        .refresh_interval(Duration::ZERO)
        .build();
    let app = Router::new()
        .route("/me", get(me))
        .layer(SessionLayer::new(manager, SessionCookie::new()));
    let call = || {
        Request::builder()
            .uri("/me")
            .header("cookie", format!("session={id}"))
            .body(Body::empty())
            .expect("request")
    };
    let response = app.clone().oneshot(call()).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"ada@example.com");
    let lines = logs.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("WARN kvkit::session")
                && line.contains("kind=unavailable")
                && line.contains("connection lost")),
        "{lines:?}"
    );

    // A read that fails answers 503, and logs no id either.
    let down = Router::new().route("/me", get(me)).layer(SessionLayer::new(
        SessionManager::new(Failing::down()),
        SessionCookie::new(),
    ));
    let response = down.oneshot(call()).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = format!("{:?}{:?}", logs.lines(), body(response).await);
    assert!(
        logs.lines().len() > lines.len(),
        "the failed read is logged"
    );
    assert!(!leaks(&text, id.as_str()), "the id is in {text}");
}
