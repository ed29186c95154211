//! The conformance and pattern cases inside a Rust Worker: `kv-worker/test-worker`, built for
//! wasm32 by `cargo xtask worker` (which `cargo xtask test` runs first), served by workerd through
//! the Cloudflare emulator, runs each case against its KV binding through
//! [`WorkerKvStore`](https://docs.rs/kv-worker) and reports the outcome; this test asks for every
//! case and asserts that each passed (or skipped itself for a capability Cloudflare lacks).
//!
//! Two more drive the example Worker (`examples/worker`, the seed's product endpoint, cached on
//! KV, and rate-limit middleware, exact on Durable Objects) over HTTP, with SQLite-backed
//! objects: one request after another, then 300 at once from one client, of which exactly the
//! limit are admitted.
//!
//! `KV_TEST_SKIP_WORKER=1` skips them, visibly, when the Workers are not built.

use std::path::PathBuf;
use std::time::Duration;

use kvkit_test_servers::{self as servers, CfEmulator, WorkerdEmulator};
use serde_json::Value;

/// The script of the Worker built in `dir` (relative to this crate), or `None` when the user
/// opted out of building it.
fn built_worker(dir: &str) -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("build")
        .join("index.js");
    if script.is_file() {
        return Some(script);
    }
    if std::env::var("KV_TEST_SKIP_WORKER").is_ok_and(|v| v == "1" || v == "true") {
        eprintln!("kvkit-worker: SKIPPED a test inside workerd: KV_TEST_SKIP_WORKER is set");
        return None;
    }
    panic!(
        "the Worker is not built ({} is missing): run `cargo xtask worker` (or `cargo xtask \
         test`), or set KV_TEST_SKIP_WORKER=1 to skip these tests",
        script.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_inside_workerd() {
    let Some(script) = built_worker("test-worker") else {
        return;
    };
    if servers::skip_cf() {
        eprintln!("kvkit-worker: SKIPPED the cases inside workerd: KV_TEST_SKIP_CF is set");
        return;
    }
    let emulator = CfEmulator::builder()
        .worker("rust-suite", &script)
        .start()
        .expect("the emulator (not opted out)");
    let base = emulator.worker_url("rust-suite");
    // Every case on the KV binding, and on a memory store with wrappers inside the same Worker,
    // each allowed ten minutes: some wait a minute of real time.
    //
    // Cloudflare's counter and put-if-absent are best-effort and it has no conditional writes:
    // exactly the cases that need them skip themselves, and no other; the memory store skips
    // only the refused session write, whose 512 MiB value limit is too large to reach here.
    servers::assert_worker_cases_pass(
        &servers::worker_client(Duration::from_secs(600)),
        &base,
        &["kv", "memory"],
        &[
            "kv/conformance/conditional_put_one_winner",
            "kv/conformance/counter_exact_under_concurrency",
            "kv/conformance/put_if_absent_one_winner",
            "kv/patterns/ratelimit_exact_under_concurrency",
            "memory/patterns/session_write_failure_hides_id",
        ],
    )
    .await;
}

/// One request to the example Worker from the client address `ip`.
async fn get(
    client: &reqwest::Client,
    url: &str,
    ip: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client
        .get(url)
        .header("CF-Connecting-IP", ip)
        .send()
        .await
        .expect("a response from the example Worker");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON body");
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// The example Worker in the emulator with its bindings (KV and D1 of its own, and the rate
/// limiter's objects), its URL, and a client allowing `timeout` a request; `None` when opted out.
fn example_worker(timeout: Duration) -> Option<(WorkerdEmulator, String, reqwest::Client)> {
    let script = built_worker("../examples/worker")?;
    if servers::skip_cf() {
        eprintln!("kvkit-worker: SKIPPED the example Worker: KV_TEST_SKIP_CF is set");
        return None;
    }
    let emulator = WorkerdEmulator::builder()
        .worker("example", script)
        .durable_object("example", "KVKIT", "KvShard")
        .start()
        .expect("the emulator (not opted out)");
    let base = emulator.worker_url("example");
    Some((emulator, base, servers::worker_client(timeout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_serves_products_through_the_cache_and_rate_limits() {
    let Some((_emulator, base, client)) = example_worker(Duration::from_secs(60)) else {
        return;
    };
    // Unique per run: the namespace is the emulator's own, but keep runs apart anyway.
    let ip = format!("192.0.2.{}", std::process::id() % 250);

    let (status, headers, body) = get(&client, &format!("{base}/products/1"), &ip).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "X-Cache"), "MISS");
    assert_eq!(body["data"]["name"], "Widget");
    assert_eq!(body["data"]["price_cents"], 1999);
    assert_eq!(header(&headers, "X-RateLimit-Remaining"), "99");
    let reset: u64 = header(&headers, "X-RateLimit-Reset")
        .parse()
        .expect("a unix time");
    assert_eq!(reset % 60, 0, "the seed's fixed window ends on a minute");

    let (status, headers, body) = get(&client, &format!("{base}/products/1"), &ip).await;
    assert_eq!((status, header(&headers, "X-Cache")), (200, "HIT"));
    assert_eq!(body["data"]["name"], "Widget");
    assert_eq!(header(&headers, "X-RateLimit-Remaining"), "98");

    let (status, headers, body) = get(&client, &format!("{base}/products/404"), &ip).await;
    assert_eq!(
        (status, header(&headers, "X-Cache")),
        (404, "MISS"),
        "{body}"
    );
    let (status, headers, _) = get(&client, &format!("{base}/products/404"), &ip).await;
    assert_eq!(
        (status, header(&headers, "X-Cache")),
        (404, "HIT"),
        "a miss is cached too"
    );
    let (status, _, _) = get(&client, &format!("{base}/products/abc"), &ip).await;
    assert_eq!(status, 400);

    // 95 requests of the 100 a minute are left (unless the minute turned, which restarts the
    // count): use them up, then the next is refused with the seed's body.
    let mut refused = None;
    for _ in 0..200 {
        let (status, headers, body) = get(&client, &format!("{base}/products/2"), &ip).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (headers, body) = refused.expect("refused within two windows' worth of requests");
    assert_eq!(body, serde_json::json!({"error": "Too many requests"}));
    assert_eq!(header(&headers, "X-RateLimit-Remaining"), "0");
    let (status, _, _) = get(&client, &format!("{base}/products/2"), "198.51.100.7").await;
    assert_eq!(status, 200, "another client has its own quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_admits_exactly_its_limit_of_300_concurrent_requests() {
    let Some((_emulator, base, client)) = example_worker(Duration::from_secs(120)) else {
        return;
    };
    // The seed's window is a fixed minute: the burst starts well inside one.
    let ip = format!("198.51.100.{}", 1 + std::process::id() % 250);
    let statuses =
        servers::burst_within_one_minute(&client, &format!("{base}/products/3"), &ip, 300).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    eprintln!(
        "example Worker: 300 concurrent requests, limit 100: admitted {admitted}, refused \
         {refused} (admitted / limit = {:.2})",
        admitted as f64 / 100.0
    );
    assert_eq!((admitted, refused), (100, 200), "{statuses:?}");
}
