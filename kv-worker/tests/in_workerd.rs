//! The conformance and pattern cases inside a Rust Worker: `kv-worker/test-worker`, built for
//! wasm32 by `cargo xtask worker` (which `cargo xtask test` runs first), served by workerd through
//! the Cloudflare emulator, runs each case against its KV binding through
//! [`WorkerKvStore`](https://docs.rs/kv-worker) and reports the outcome; this test asks for every
//! case and asserts that each passed (or skipped itself for a capability Cloudflare lacks).
//!
//! `KV_TEST_SKIP_WORKER=1` skips it, visibly, when the Worker is not built.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use kv_testsuite::servers::{self, CfEmulator};
use serde_json::Value;

/// Cases run at once: enough for the ones that wait a minute of real time to overlap.
const IN_FLIGHT: usize = 8;

fn built_worker() -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test-worker")
        .join("build")
        .join("index.js");
    if script.is_file() {
        return Some(script);
    }
    if std::env::var("KV_TEST_SKIP_WORKER").is_ok_and(|v| v == "1" || v == "true") {
        eprintln!("kv-worker: SKIPPED the cases inside workerd: KV_TEST_SKIP_WORKER is set");
        return None;
    }
    panic!(
        "the test Worker is not built ({} is missing): run `cargo xtask worker` (or `cargo xtask \
         test`), or set KV_TEST_SKIP_WORKER=1 to skip these tests",
        script.display()
    );
}

/// What the Worker reported for one case: `Ok` with its JSON, or `Err` with why it failed.
async fn run_case(
    client: &reqwest::Client,
    base: &str,
    suite: &str,
    case: &str,
) -> Result<Value, String> {
    let response = client
        .get(format!("{base}/run/{suite}/{case}"))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if !status.is_success() {
        // A failing case panics inside the Worker: its message is on the emulator's console.
        let excerpt: String = body.chars().take(400).collect();
        return Err(format!("HTTP {status}: {excerpt}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_inside_workerd() {
    let Some(script) = built_worker() else { return };
    if servers::skip_cf() {
        eprintln!("kv-worker: SKIPPED the cases inside workerd: KV_TEST_SKIP_CF is set");
        return;
    }
    let emulator = CfEmulator::builder()
        .worker("rust-suite", &script)
        .start()
        .expect("the emulator (not opted out)");
    let base = emulator.worker_url("rust-suite");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        // A connection per case: Node closes idle connections after 5 s, and a case sent on one
        // it is closing would fail without reaching the Worker.
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");

    let listed: Value = client
        .get(format!("{base}/cases"))
        .send()
        .await
        .expect("listing the Worker's cases")
        .json()
        .await
        .expect("the case list is JSON");
    let names = |suite: &str| -> Vec<String> {
        listed[suite]
            .as_array()
            .expect("a list of cases")
            .iter()
            .map(|n| n.as_str().expect("a case name").to_owned())
            .collect()
    };
    let expected = |cases: Vec<kv_testsuite::Case>| -> Vec<String> {
        cases.into_iter().map(|c| c.name.to_owned()).collect()
    };
    let (conformance, patterns) = (names("conformance"), names("patterns"));
    assert_eq!(
        conformance,
        expected(kv_testsuite::cases::all()),
        "the built Worker is stale: rebuild it with `cargo xtask worker`"
    );
    assert_eq!(patterns, expected(kv_testsuite::patterns::all()));

    let all: Vec<(&str, String)> = conformance
        .into_iter()
        .map(|c| ("conformance", c))
        .chain(patterns.into_iter().map(|c| ("patterns", c)))
        .collect();
    let outcomes: Vec<(String, Result<Value, String>)> = futures_util::stream::iter(&all)
        .map(|(suite, case)| {
            let (client, base) = (&client, &base);
            async move {
                let outcome = run_case(client, base, suite, case).await;
                (format!("{suite}/{case}"), outcome)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for (case, outcome) in &outcomes {
        match outcome {
            Ok(report) if report["outcome"] == "passed" => eprintln!("in workerd: {case}: passed"),
            Ok(report) if report["outcome"] == "skipped" => {
                eprintln!("in workerd: {case}: skipped ({})", report["reason"]);
                skipped.push(case.clone());
            }
            Ok(report) => failed.push(format!("{case}: unexpected report {report}")),
            Err(why) => failed.push(format!("{case}: {why}")),
        }
    }
    assert_eq!(outcomes.len(), all.len());
    assert!(
        failed.is_empty(),
        "cases failed inside workerd:\n{}",
        failed.join("\n")
    );
    // Cloudflare's counter and put-if-absent are best-effort: exactly the cases that need them
    // atomic skip themselves, and no other.
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "conformance/counter_exact_under_concurrency",
            "conformance/put_if_absent_one_winner",
            "patterns/ratelimit_exact_under_concurrency",
        ]
    );
}
