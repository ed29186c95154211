//! Interop with the TypeScript patterns this project started from: `tests/seed/worker.js` runs
//! them (transcribed to JavaScript) inside workerd, against the same KV namespace that the Rust
//! patterns reach through the Cloudflare REST emulator, and each side reads what the other wrote.

use std::path::Path;
use std::time::Duration;

use kvkit::cloudflare::CloudflareStore;
use kvkit::patterns::{Cache, CacheOptions, CacheStatus, RateLimiter, Session, SessionManager};
use kvkit::{KvStoreExt, PutOptions};
use kvkit_test_servers::{self as servers, CfEmulator};
use serde_json::{Value, json};

struct Seed {
    http: reqwest::Client,
    base: String,
}

impl Seed {
    async fn call(&self, operation: &str, query: &[(&str, &str)], body: Option<Value>) -> Value {
        let url = format!("{}/{operation}", self.base);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let response = request
            .query(query)
            .send()
            .await
            .expect("the seed Worker answers");
        assert!(
            response.status().is_success(),
            "{operation}: {}",
            response.status()
        );
        response.json().await.expect("JSON from the seed Worker")
    }
}

fn unique(name: &str) -> String {
    format!("{}{name}", kvkit_testsuite::Namespace::new().prefix())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_the_typescript_patterns_share_one_namespace() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seed/worker.js");
    let Some(emulator) = CfEmulator::builder().worker("seed", script).start() else {
        kvkit_testsuite::skip(
            "rust_and_the_typescript_patterns_share_one_namespace",
            "KV_TEST_SKIP_CF=1",
        );
        return;
    };
    let store = std::sync::Arc::new(
        CloudflareStore::builder()
            .base_url(emulator.api_url())
            .account_id(servers::CF_EMULATOR_ACCOUNT_ID)
            .namespace_id(servers::CF_EMULATOR_NAMESPACE_ID)
            .api_token(emulator.token())
            .build()
            .expect("store"),
    );
    let seed = Seed {
        http: reqwest::Client::new(),
        base: emulator.worker_url("seed"),
    };

    // setJSON / getJSON, both ways.
    let key = unique("doc");
    seed.call(
        "setJSON",
        &[("key", &key), ("ttl", "3600")],
        Some(json!({"a": [1, 2]})),
    )
    .await;
    assert_eq!(
        store.get_json::<Value>(&key).await.expect("get"),
        Some(json!({"a": [1, 2]}))
    );
    store
        .put_json(&key, &json!({"b": "é"}), PutOptions::new())
        .await
        .expect("put");
    assert_eq!(
        seed.call("getJSON", &[("key", &key)], None).await,
        json!({"b": "é"})
    );

    // Sessions: created by TypeScript, read, refreshed and destroyed by Rust, and the reverse.
    let sessions = SessionManager::new(store.clone());
    let user = unique("ts-user");
    let created = seed
        .call(
            "session/create",
            &[],
            Some(json!({"userId": user, "email": "ts@example.com", "role": "viewer"})),
        )
        .await;
    let ts_id = created["id"].as_str().expect("an id").to_owned();
    let session = sessions
        .get(&ts_id)
        .await
        .expect("get")
        .expect("the TypeScript session");
    assert_eq!(
        (
            session.user_id.as_str(),
            session.email.as_str(),
            session.role.as_str()
        ),
        (user.as_str(), "ts@example.com", "viewer")
    );
    assert!(sessions.refresh(&ts_id).await.expect("refresh"));
    assert_eq!(
        seed.call("session/get", &[("id", &ts_id)], None).await["email"],
        "ts@example.com"
    );
    sessions.destroy(&ts_id).await.expect("destroy");
    assert_eq!(
        seed.call("session/get", &[("id", &ts_id)], None).await,
        Value::Null
    );

    let rust_user = unique("rust-user");
    let rust_id = sessions
        .create_for(&rust_user, "rs@example.com", "admin")
        .await
        .expect("create");
    let seen = seed
        .call("session/get", &[("id", rust_id.as_str())], None)
        .await;
    let expected = sessions.get(&rust_id).await.expect("get").expect("live");
    assert_eq!(
        serde_json::from_value::<Session>(seen.clone()).expect("the seed's fields"),
        expected
    );
    assert_eq!(
        seen.as_object().expect("object").len(),
        4,
        "exactly the seed's four fields: {seen}"
    );
    seed.call(
        "session/refresh",
        &[("id", rust_id.as_str())],
        Some(Value::Null),
    )
    .await;
    assert_eq!(sessions.get(&rust_id).await.expect("get"), Some(expected));
    seed.call(
        "session/destroy",
        &[("id", rust_id.as_str())],
        Some(Value::Null),
    )
    .await;
    assert_eq!(sessions.get(&rust_id).await.expect("get"), None);

    // Cache: an entry written by one side is a fresh hit for the other.
    let cache = Cache::new(store.clone());
    let options =
        CacheOptions::new(Duration::from_secs(300)).stale_while_revalidate(Duration::from_secs(60));
    let ts_key = unique("product:1");
    let ts_fill = seed
        .call(
            "cached",
            &[("key", &ts_key), ("ttl", "300"), ("swr", "60")],
            Some(json!({"id": 1, "name": "Widget"})),
        )
        .await;
    assert_eq!(ts_fill["fetched"], true);
    let hit = cache
        .get_or_fetch(&ts_key, &options, || async {
            Ok::<Value, std::io::Error>(json!("not fetched"))
        })
        .await
        .expect("cached");
    assert_eq!(
        (hit.status, hit.value),
        (CacheStatus::Hit, json!({"id": 1, "name": "Widget"}))
    );

    let rust_key = unique("product:2");
    let miss = cache
        .get_or_fetch(&rust_key, &options, || async {
            Ok::<Value, std::io::Error>(json!({"id": 2}))
        })
        .await
        .expect("cached");
    assert_eq!(miss.status, CacheStatus::Miss);
    let ts_hit = seed
        .call(
            "cached",
            &[("key", &rust_key), ("ttl", "300"), ("swr", "60")],
            Some(json!("not fetched")),
        )
        .await;
    assert_eq!(ts_hit, json!({"data": {"id": 2}, "fetched": false}));

    // Rate limiting: both sides count into one window.
    let window = 3600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if window - now % window < 30 {
        // Too close to the window's end for the two sides to share it: wait for the next one.
        tokio::time::sleep(Duration::from_secs(window - now % window + 1)).await;
    }
    let limiter = RateLimiter::fixed_window(store.clone(), 10, Duration::from_secs(window));
    let client = unique("client");
    let limit = "10";
    let window_arg = window.to_string();
    for expected in [9, 8, 7] {
        let r = seed
            .call(
                "rateLimit",
                &[("id", &client), ("limit", limit), ("window", &window_arg)],
                Some(Value::Null),
            )
            .await;
        assert_eq!(r["remaining"], expected);
    }
    let ours = limiter.check(&client).await.expect("check");
    assert!(ours.allowed);
    assert_eq!(ours.remaining, 6, "three TypeScript checks and this one");
    let r = seed
        .call(
            "rateLimit",
            &[("id", &client), ("limit", limit), ("window", &window_arg)],
            Some(Value::Null),
        )
        .await;
    assert_eq!(r["remaining"], 5);
    let reset_at = kvkit::backend::unix_secs_ceil(ours.reset_at);
    assert_eq!(r["resetAt"], reset_at);
    assert_eq!(limiter.peek(&client).await.expect("peek").remaining, 5);
    let stored = store
        .get_text(&format!("ratelimit:{client}:{}", reset_at - window))
        .await
        .expect("get");
    assert_eq!(stored.as_deref(), Some("5"), "the counts add up");
}
