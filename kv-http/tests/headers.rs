//! Property tests over what a client controls: arbitrary `X-Forwarded-For`, `Forwarded`,
//! `CF-Connecting-IP`, cookie and custom-key header bytes never make a layer panic, never buy a
//! client a fresh quota through a header its `ClientKey` does not trust, and always land in a
//! bucket that is limited (with the limit at 1, the second identical request is a 429).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::get;
use kvkit_http::TrustedProxies;
use kvkit_http::{ClientKey, CurrentSession, RateLimitLayer, SessionCookie, SessionLayer};
use kvkit_memory::MemoryStore;
use kvkit_patterns::{RateLimiter, Session, SessionManager};
use proptest::collection::vec;
use proptest::prelude::*;
use tower::ServiceExt;

/// The trusted proxy every request comes through, when one does.
const PROXY: &str = "10.0.0.1";
/// The client that proxy saw.
const CLIENT: &str = "203.0.113.7";

/// Any byte a header value may hold: tab, visible ASCII, space and obs-text (0x80..=0xFF).
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff]
}

/// One hop-shaped piece: an address (with or without a port), an RFC 7239 element, a word, or
/// junk; sometimes too long for a key (as bytes of any kind, or as visible ASCII).
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<IpAddr>().prop_map(|ip| ip.to_string().into_bytes()),
        any::<SocketAddr>().prop_map(|addr| addr.to_string().into_bytes()),
        any::<IpAddr>().prop_map(|ip| format!("for={ip}").into_bytes()),
        any::<SocketAddr>().prop_map(|addr| format!("for=\"{addr}\";proto=https").into_bytes()),
        Just(b"unknown".to_vec()),
        Just(b"10.0.0.2".to_vec()),
        vec(header_byte(), 0..24),
        vec(
            header_byte().prop_filter("no comma", |b| *b != b','),
            480..1200
        ),
        vec(0x21u8..0x7f, 480..1200).prop_map(|mut word| {
            word.retain(|b| *b != b',');
            word
        }),
    ]
}

/// A header value: a comma-separated list of pieces, or raw bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(piece(), 1..5).prop_map(|pieces| pieces.join(&b", "[..])),
        1 => vec(header_byte(), 0..200),
    ]
}

/// What a client may send: each of the forwarding headers, or not.
#[derive(Debug, Clone)]
struct Spoof {
    x_forwarded_for: Option<Vec<u8>>,
    forwarded: Option<Vec<u8>>,
    cf_connecting_ip: Option<Vec<u8>>,
}

fn spoof() -> impl Strategy<Value = Spoof> {
    (
        proptest::option::of(value()),
        proptest::option::of(value()),
        proptest::option::of(value()),
    )
        .prop_map(|(x_forwarded_for, forwarded, cf_connecting_ip)| Spoof {
            x_forwarded_for,
            forwarded,
            cf_connecting_ip,
        })
}

fn header(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("the strategies make valid header values")
}

/// A request from `peer` with the client's headers, as they arrive.
fn request(peer: &str, spoof: &Spoof) -> Request<Body> {
    let mut request = Request::builder()
        .uri("/")
        .body(Body::empty())
        .expect("request");
    let headers = request.headers_mut();
    for (name, value) in [
        ("x-forwarded-for", &spoof.x_forwarded_for),
        ("forwarded", &spoof.forwarded),
        ("cf-connecting-ip", &spoof.cf_connecting_ip),
    ] {
        if let Some(value) = value {
            headers.insert(name, header(value));
        }
    }
    let peer: SocketAddr = format!("{peer}:40000").parse().expect("peer");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// The request a trusted proxy that appends the client it saw (nginx's
/// `$proxy_add_x_forwarded_for`) forwards for `spoof` sent by `CLIENT`.
fn through_proxy(spoof: &Spoof) -> Request<Body> {
    let mut forwarded = spoof.clone();
    forwarded.x_forwarded_for = Some(match &spoof.x_forwarded_for {
        Some(sent) => [&sent[..], b", ", CLIENT.as_bytes()].concat(),
        None => CLIENT.as_bytes().to_vec(),
    });
    request(PROXY, &forwarded)
}

/// A limit of one request a minute per client, on a store with Cloudflare's 512-byte keys.
fn limited(key: ClientKey) -> Router {
    let store = MemoryStore::builder().cloudflare_limits().build();
    let limiter = RateLimiter::fixed_window(store, 1, Duration::from_secs(60));
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limiter).client_key(key))
}

fn proxies() -> TrustedProxies {
    TrustedProxies::parse("10.0.0.0/8").expect("proxies")
}

/// The statuses of `requests`, sent one after the other.
fn statuses(app: &Router, requests: Vec<Request<Body>>) -> Vec<StatusCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut statuses = Vec::new();
        for request in requests {
            let response = app.clone().oneshot(request).await.expect("infallible");
            statuses.push(response.status());
        }
        statuses
    })
}

fn first_then_limited(statuses: &[StatusCode]) -> bool {
    matches!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// With the peer as the key, no header counts.
    #[test]
    fn headers_never_change_the_peer_key(first in spoof(), second in spoof()) {
        let app = limited(ClientKey::Peer);
        let got = statuses(&app, vec![request(CLIENT, &first), request(CLIENT, &second)]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }

    /// A peer that is not a trusted proxy is the client, whatever it sends.
    #[test]
    fn an_untrusted_peer_cannot_pick_its_key(first in spoof(), second in spoof()) {
        let app = limited(ClientKey::Forwarded(proxies()));
        let got = statuses(&app, vec![request(CLIENT, &first), request(CLIENT, &second)]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }

    /// Through a trusted proxy that appends the client it saw, whatever the client writes in any
    /// forwarding header (bytes that are not UTF-8 included) it stays that client.
    #[test]
    fn a_client_behind_a_trusted_proxy_cannot_pick_its_key(first in spoof(), second in spoof()) {
        let app = limited(ClientKey::Forwarded(proxies()));
        let got = statuses(&app, vec![through_proxy(&first), through_proxy(&second)]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }

    /// Headers believed as they are (a trusted peer's) map to a bucket that is limited, however
    /// long or odd the hop they name.
    #[test]
    fn trusted_headers_always_map_to_a_limited_bucket(spoof in spoof()) {
        let app = limited(ClientKey::Forwarded(proxies()));
        let got = statuses(&app, vec![request(PROXY, &spoof), request(PROXY, &spoof)]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }

    /// A custom key read from a header: any bytes are a limited bucket.
    #[test]
    fn a_custom_key_of_any_bytes_is_limited(bytes in value()) {
        let app = limited(ClientKey::custom(|parts| {
            parts
                .headers
                .get("x-api-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        }));
        let send = || {
            let mut request = request(CLIENT, &Spoof { x_forwarded_for: None, forwarded: None, cf_connecting_ip: None });
            request.headers_mut().insert("x-api-key", header(&bytes));
            request
        };
        let got = statuses(&app, vec![send(), send()]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }

    /// Any cookie, through the session layer under the rate limit: a session or none, never a
    /// panic, and never a fresh quota.
    #[test]
    fn cookies_never_panic_nor_buy_a_quota(
        first in cookie(),
        second in cookie(),
        with_session in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let store = MemoryStore::new();
        let manager = std::sync::Arc::new(SessionManager::new(store.clone()));
        let live = runtime
            .block_on(manager.create_for("u1", "ada@example.com", "admin"))
            .expect("create");
        let limiter = RateLimiter::fixed_window(store, 1, Duration::from_secs(60));
        let app = Router::new()
            .route("/", get(|session: Option<CurrentSession<Session>>| async move {
                if session.is_some() { "in" } else { "out" }
            }))
            .layer(SessionLayer::shared(manager, SessionCookie::new()))
            .layer(RateLimitLayer::new(limiter));
        let send = |cookie: &[u8]| {
            let cookie = if with_session { [cookie, b"; session=", live.as_str().as_bytes()].concat() } else { cookie.to_vec() };
            let mut request = request(CLIENT, &Spoof { x_forwarded_for: None, forwarded: None, cf_connecting_ip: None });
            request.headers_mut().insert("cookie", header(&cookie));
            request
        };
        let got = statuses(&app, vec![send(&first), send(&second)]);
        prop_assert!(first_then_limited(&got), "{got:?}");
    }
}

/// A `Cookie` header: raw bytes, or pairs with `session` among them.
fn cookie() -> impl Strategy<Value = Vec<u8>> {
    let pair = (vec(header_byte(), 0..12), vec(header_byte(), 0..40))
        .prop_map(|(name, value)| [&name[..], b"=", &value[..]].concat());
    let session = vec(header_byte(), 0..60).prop_map(|value| [&b"session="[..], &value].concat());
    prop_oneof![
        vec(header_byte(), 0..300),
        vec(prop_oneof![pair, session], 0..5).prop_map(|pairs| pairs.join(&b"; "[..])),
    ]
}
