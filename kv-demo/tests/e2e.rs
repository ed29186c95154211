//! The demo service end to end: started on an ephemeral port, driven over real HTTP, on the
//! memory store, on a SQLite file and on the test Redis (started on a free loopback port unless
//! `KV_TEST_REDIS_URL` says where one runs).

use std::sync::Arc;
use std::time::Duration;

use kvkit::backend::unix_ms;
use kvkit::layers::Layered;
use kvkit::{Clock, KvStore, ManualClock, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Demo {
    base: String,
    clock: ManualClock,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.database());
    }
}

impl Demo {
    fn database(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "kv-demo-test-{}-{}.sqlite3",
            std::process::id(),
            self.base.rsplit(':').next().unwrap_or_default()
        ))
    }

    /// The demo on `store`, admitting `rate_limit` requests a minute.
    async fn start(store: Arc<dyn KvStore>, rate_limit: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let clock = ManualClock::at(SystemClock.now());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let demo = Self {
            base,
            clock: clock.clone(),
            http: reqwest::Client::new(),
            _stop: stop,
        };
        let mut config = kv_demo::Config::new(store, demo.database());
        config.clock = Arc::new(clock);
        config.rate_limit = Some(rate_limit);
        let router = kv_demo::router(config).expect("router");
        tokio::spawn(kv_demo::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        demo
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("the demo answers")
    }

    async fn post(&self, path: &str, body: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("the demo answers")
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .expect("ASCII")
        .to_owned()
}

async fn json_body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn products_miss_hit_stale(store: Arc<dyn KvStore>) {
    // Room for the requests that wait for the background refresh.
    let demo = Demo::start(store, 10_000).await;
    let first = demo.get("/products/1", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(
        json_body(first).await,
        json!({"data": {"id": 1, "name": "Kettle", "price_cents": 2599}})
    );
    let second = demo.get("/products/1", None).await;
    assert_eq!(header(&second, "x-cache"), "HIT");

    demo.clock.advance(Duration::from_secs(301));
    let stale = demo.get("/products/1", None).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(header(&stale, "x-cache"), "STALE");
    assert_eq!(json_body(stale).await["data"]["name"], "Kettle");
    let mut refreshed = false;
    for _ in 0..500 {
        if header(&demo.get("/products/1", None).await, "x-cache") == "HIT" {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refreshed,
        "the background refresh made the entry fresh again"
    );

    demo.clock.advance(Duration::from_secs(361));
    assert_eq!(
        header(&demo.get("/products/1", None).await, "x-cache"),
        "MISS"
    );

    let unknown = demo.get("/products/999", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_body(unknown).await,
        json!({"error": "Unknown product"})
    );
    assert_eq!(
        header(&demo.get("/products/999", None).await, "x-cache"),
        "HIT",
        "a miss is remembered"
    );
    let bad = demo.get("/products/abc", None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(json_body(bad).await["error"].is_string());
    let nowhere = demo.get("/nowhere", None).await;
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(nowhere).await, json!({"error": "No such route"}));
}

async fn login_me_logout(store: Arc<dyn KvStore>) {
    let demo = Demo::start(store, 100).await;
    let anonymous = demo.get("/me", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_body(anonymous).await,
        json!({"error": "Not logged in"})
    );

    let bad_json = demo.post("/login", "{not json", None).await;
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_body(bad_json).await["error"]
            .as_str()
            .expect("message")
            .starts_with("Bad login request")
    );
    let missing_field = demo.post("/login", "{}", None).await;
    assert!(missing_field.status().is_client_error());
    assert!(json_body(missing_field).await["error"].is_string());
    let stranger = demo
        .post("/login", r#"{"email":"nobody@example.com"}"#, None)
        .await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(stranger).await, json!({"error": "Unknown user"}));

    let login = demo
        .post("/login", r#"{"email":"ada@example.com"}"#, None)
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookie = header(&login, "set-cookie");
    assert!(set_cookie.starts_with("session="), "{set_cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let me = demo.get("/me", Some(&cookie)).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me = json_body(me).await;
    assert_eq!(
        (
            me["userId"].as_str(),
            me["email"].as_str(),
            me["role"].as_str()
        ),
        (Some("u-ada"), Some("ada@example.com"), Some("admin"))
    );
    assert!(me["createdAt"].as_u64().is_some());

    // Logging in again issues a new id and ends the old session.
    let again = demo
        .post("/login", r#"{"email":"ada@example.com"}"#, Some(&cookie))
        .await;
    let new_cookie = header(&again, "set-cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    assert_ne!(new_cookie, cookie);
    assert_eq!(
        demo.get("/me", Some(&cookie)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let logout = demo.post("/logout", "", Some(&new_cookie)).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(header(&logout, "set-cookie").contains("Max-Age=0"));
    assert_eq!(
        demo.get("/me", Some(&new_cookie)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = demo.post("/logout", "", Some(&new_cookie)).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        demo.get("/me", Some("session=../../etc/passwd"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn the_101st_request_is_refused(store: Arc<dyn KvStore>) {
    let demo = Demo::start(store, 100).await;
    // Start at the beginning of a minute, so all 101 requests share one window.
    let now = unix_ms(demo.clock.now());
    demo.clock
        .advance(Duration::from_millis(60_000 - now % 60_000));
    for n in 1..=100u64 {
        let response = demo.get("/products/2", None).await;
        assert_eq!(response.status(), StatusCode::OK, "request {n}");
        assert_eq!(header(&response, "x-ratelimit-limit"), "100");
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            (100 - n).to_string()
        );
    }
    let refused = demo.get("/products/2", None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset: u64 = header(&refused, "x-ratelimit-reset")
        .parse()
        .expect("epoch seconds");
    assert_eq!(reset, (unix_ms(demo.clock.now()) / 1000) / 60 * 60 + 60);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "retry-after"), "60");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        "\"default\";q=100;w=60"
    );
    assert_eq!(header(&refused, "ratelimit"), "\"default\";r=0;t=60");
    assert_eq!(
        json_body(refused).await,
        json!({"error": "Too many requests"})
    );

    demo.clock.advance(Duration::from_secs(60));
    assert_eq!(
        demo.get("/products/2", None).await.status(),
        StatusCode::OK,
        "a new window"
    );
}

macro_rules! e2e {
    ($store:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn products_miss_hit_stale() {
            let Some(store) = $store.await else { return };
            super::products_miss_hit_stale(store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn login_me_logout() {
            let Some(store) = $store.await else { return };
            super::login_me_logout(store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_101st_request_is_refused() {
            let Some(store) = $store.await else { return };
            super::the_101st_request_is_refused(store).await;
        }
    };
}

mod on_memory {
    async fn store() -> Option<std::sync::Arc<dyn kvkit::KvStore>> {
        Some(kvkit::open("memory:").await.expect("memory store"))
    }
    e2e!(store());
}

mod on_sqlite {
    /// A SQLite file of this test's own, opened through a `KV_URL` as the demo's default is.
    async fn store() -> Option<std::sync::Arc<dyn kvkit::KvStore>> {
        let file = std::env::temp_dir().join(format!(
            "kv-demo-e2e-{}-{}.kv.sqlite3",
            std::process::id(),
            kvkit_testsuite::Namespace::new()
                .prefix()
                .trim_end_matches('/')
        ));
        let url = format!("sqlite:{}", file.display());
        Some(kvkit::open(&url).await.expect("sqlite store"))
    }
    e2e!(store());
}

mod on_redis {
    use super::*;

    /// The test Redis, reached through `KV_URL` as the demo's users would, in a namespace of
    /// this test's own.
    pub(super) async fn store() -> Option<Arc<dyn KvStore>> {
        let Some(url) = kvkit_test_servers::shared_redis_url() else {
            kvkit_testsuite::skip("kv-demo e2e on Redis", "KV_TEST_SKIP_REDIS=1");
            return None;
        };
        let store = kvkit::open(&url).await.expect("redis store");
        let namespaced = store.namespaced(kvkit_testsuite::Namespace::new().prefix());
        Some(Arc::new(namespaced))
    }
    e2e!(store());
}
