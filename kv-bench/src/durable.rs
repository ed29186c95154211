//! The Durable Object store inside workerd (Miniflare, SQLite-backed objects), against the same
//! operations done by hand on the object's storage, in the same invocation of the test Worker
//! (`kv-worker/test-worker/src/bench.rs`): requests to the object per operation, counted by the
//! object; operations per second through the store ÷ by hand; and the example Worker's rate
//! limiter under 300 concurrent requests from one client, admitted ÷ limit.
//!
//! Needs the Workers built (`cargo xtask worker`).

use std::path::PathBuf;
use std::time::Duration;

use kvkit_test_servers::{self as servers, WorkerdEmulator};

use crate::{line, median};

/// Operations per measurement, each way (a third each of puts, gets and increments).
const OPS: u32 = 3000;
const ROUNDS: usize = 5;
/// The example Worker's limit, per client and minute.
const LIMIT: usize = 100;
const BURST: usize = 300;

fn built(dir: &str) -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("build")
        .join("index.js");
    assert!(
        script.is_file(),
        "{} is missing: build the Workers with `cargo xtask worker`",
        script.display()
    );
    script
}

pub(crate) async fn run() {
    let emulator = WorkerdEmulator::builder()
        .worker("suite", built("kv-worker/test-worker"))
        .durable_object("suite", "KVKIT", "KvShard")
        .durable_object("suite", "BENCH", "BenchShard")
        .worker("example", built("examples/worker"))
        .durable_object("example", "KVKIT", "KvShard")
        .start()
        .expect("the workerd emulator is needed");
    let client = servers::worker_client(Duration::from_secs(300));

    let bench = format!("{}/bench/{OPS}", emulator.worker_url("suite"));
    let (mut store_rates, mut direct_rates, mut ratios, mut per_op) = (vec![], vec![], vec![], 0.0);
    // The first run warms both paths (the objects, their tables, the module's code).
    for round in 0..=ROUNDS {
        let body = client
            .post(&bench)
            .send()
            .await
            .expect("the benchmark's response")
            .text()
            .await
            .expect("a body");
        let report: serde_json::Value = serde_json::from_str(&body).expect("a JSON report");
        let number = |field: &str| report[field].as_f64().expect("a number in the report");
        if round == 0 {
            continue;
        }
        let ops = number("ops");
        let store = ops / (number("store_ms").max(1.0) / 1000.0);
        let direct = ops / (number("direct_ms").max(1.0) / 1000.0);
        store_rates.push(store);
        direct_rates.push(direct);
        ratios.push(store / direct);
        per_op = number("store_requests") / ops;
    }
    line("durable_requests_per_op", format!("{per_op:.2}"));
    line(
        "durable_store_ops_per_sec",
        format!("{:.0}", median(store_rates)),
    );
    line(
        "durable_direct_ops_per_sec",
        format!("{:.0}", median(direct_rates)),
    );
    line(
        "durable_store_vs_direct_ratio",
        format!("{:.2}", median(ratios)),
    );

    // The example's fixed window is a minute: the burst starts well inside one.
    let url = format!("{}/products/1", emulator.worker_url("example"));
    let statuses = servers::burst_within_one_minute(&client, &url, "203.0.113.9", BURST).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    line(
        "durable_ratelimit_admitted_over_limit",
        format!(
            "{:.2} ({admitted} of {BURST} admitted, limit {LIMIT})",
            admitted as f64 / LIMIT as f64
        ),
    );
}
