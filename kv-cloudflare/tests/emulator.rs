//! What the emulator adds beyond the conformance suite: Cloudflare's authentication answers,
//! and Workers that share the namespace with the REST API (as a Rust service shares a namespace
//! with its Workers in production).

use std::path::Path;

use kvkit_cloudflare::{CloudflareStore, RetryPolicy};
use kvkit_core::{Error, KvStore, PutOptions};
use kvkit_test_servers::{self as servers, CfEmulator};
use serde_json::{Value, json};

fn store(emulator: &CfEmulator, token: &str) -> CloudflareStore {
    CloudflareStore::builder()
        .base_url(emulator.api_url())
        .account_id(servers::CF_EMULATOR_ACCOUNT_ID)
        .namespace_id(servers::CF_EMULATOR_NAMESPACE_ID)
        .api_token(token)
        .retry(RetryPolicy::none())
        .build()
        .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_like_cloudflare_does() {
    let Some(emulator) = CfEmulator::builder().read_only_token("reader").start() else {
        kvkit_testsuite::skip(
            "tokens_are_checked_like_cloudflare_does",
            "KV_TEST_SKIP_CF=1",
        );
        return;
    };
    let writer = store(&emulator, emulator.token());
    writer
        .put("k", "v".into(), PutOptions::new())
        .await
        .expect("write with the full token");

    let reader = store(&emulator, "reader");
    assert_eq!(
        reader.get("k").await.expect("read").as_deref(),
        Some(&b"v"[..])
    );
    match reader.put("k", "w".into(), PutOptions::new()).await {
        Err(Error::PermissionDenied { message, .. }) => {
            assert!(
                message.contains("HTTP 403") && message.contains("10000"),
                "{message}"
            );
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }

    let stranger = store(&emulator, "wrong-token");
    match stranger.get("k").await {
        Err(Error::PermissionDenied { message, .. }) => {
            assert!(message.contains("HTTP 401"), "{message}");
            assert!(!message.contains("wrong-token"));
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }

    let elsewhere = CloudflareStore::builder()
        .base_url(emulator.api_url())
        .account_id(servers::CF_EMULATOR_ACCOUNT_ID)
        .namespace_id("no-such-namespace")
        .api_token(emulator.token())
        .build()
        .expect("store");
    let err = elsewhere.get("k").await.expect_err("namespace not found");
    let api = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<kvkit_cloudflare::ApiError>())
        .expect("an ApiError source");
    assert_eq!(
        (api.status(), api.codes().collect::<Vec<_>>()),
        (404, vec![10013])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_the_rest_api_share_the_namespace() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/reader.js");
    let Some(emulator) = CfEmulator::builder().worker("reader", script).start() else {
        kvkit_testsuite::skip(
            "a_worker_and_the_rest_api_share_the_namespace",
            "KV_TEST_SKIP_CF=1",
        );
        return;
    };
    let store = store(&emulator, emulator.token());
    store
        .put(
            "shared/é",
            "from rust".into(),
            PutOptions::new().metadata(json!({"from": "rust"})),
        )
        .await
        .expect("put");
    let http = store.http_client();
    let seen: Value = http
        .get(format!("{}/shared%2F%C3%A9", emulator.worker_url("reader")))
        .send()
        .await
        .expect("worker reachable")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        seen,
        json!({"value": "from rust", "metadata": {"from": "rust"}})
    );

    http.put(format!("{}/from-worker", emulator.worker_url("reader")))
        .body("hello")
        .send()
        .await
        .expect("worker write");
    let entry = store
        .get_with_metadata("from-worker")
        .await
        .expect("read")
        .expect("written by the worker");
    assert_eq!(entry.value, "hello");
    assert_eq!(entry.metadata, Some(json!({"from": "worker"})));
}
