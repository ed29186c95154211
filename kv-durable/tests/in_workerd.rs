//! The Durable Object store inside workerd: `kv-worker/test-worker`, built for wasm32 by `cargo
//! xtask worker` (which `cargo xtask test` runs first), exports the class with
//! `kvkit_durable::durable_object!`; Miniflare runs it with SQLite-backed objects. These tests
//! drive it over HTTP:
//!
//! - every conformance and pattern case on the store over four objects, none skipped;
//! - many requests (each a Worker invocation of its own) racing on one key: increments all
//!   count, and of the compare-and-sets against one version exactly one wins, round after round;
//! - expired entries are removed by the object's alarm, in batches, without any read;
//! - what was written survives a restart of the emulator with persistence on.
//!
//! `KV_TEST_SKIP_WORKER=1` skips them, visibly, when the Worker is not built.

use std::path::PathBuf;
use std::time::Duration;

use kvkit_test_servers::{self as servers, WorkerdEmulator};

/// The test Worker's script, or `None` when the user opted out of building it.
fn built_worker() -> Option<PathBuf> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kv-worker/test-worker/build/index.js");
    if script.is_file() {
        return Some(script);
    }
    if std::env::var("KV_TEST_SKIP_WORKER").is_ok_and(|v| v == "1" || v == "true") {
        eprintln!("kvkit-durable: SKIPPED a test inside workerd: KV_TEST_SKIP_WORKER is set");
        return None;
    }
    panic!(
        "the test Worker is not built ({} is missing): run `cargo xtask worker` (or `cargo \
         xtask test`), or set KV_TEST_SKIP_WORKER=1 to skip these tests",
        script.display()
    );
}

/// The emulator running the test Worker with its object classes, keeping its data in
/// `persist` when given; `None` when opted out.
fn emulator(persist: Option<&std::path::Path>) -> Option<(WorkerdEmulator, String)> {
    let script = built_worker()?;
    if servers::skip_cf() {
        eprintln!("kvkit-durable: SKIPPED a test inside workerd: KV_TEST_SKIP_CF is set");
        return None;
    }
    let mut builder = WorkerdEmulator::builder()
        .worker("suite", script)
        .durable_object("suite", "KVKIT", "KvShard")
        .durable_object("suite", "BENCH", "BenchShard");
    if let Some(dir) = persist {
        builder = builder.persist(dir);
    }
    let emulator = builder.start()?;
    let base = emulator.worker_url("suite");
    Some((emulator, base))
}

fn client() -> reqwest::Client {
    servers::worker_client(Duration::from_secs(120))
}

/// A response's status and body, or why there was none.
type Answer = Result<(u16, String), String>;

/// Sends `request` and returns its status and body, or why it got none.
async fn try_send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Sends `request` and returns its status and body.
async fn send(request: reqwest::RequestBuilder) -> (u16, String) {
    try_send(request).await.expect("a response from the Worker")
}

/// A key no other run uses.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_on_durable_objects_with_no_skips() {
    let Some((_emulator, base)) = emulator(None) else {
        return;
    };
    servers::assert_worker_cases_pass(&client(), &base, &["durable"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_count_exactly_and_one_compare_and_set_wins_per_version() {
    let Some((_emulator, base)) = emulator(None) else {
        return;
    };
    let client = client();

    // 200 increments, each a request of its own, at once: every one counts, once.
    let counter = unique("counter");
    let mut values: Vec<i64> = futures_util::future::join_all((0..200).map(|_| {
        let request = client.post(format!("{base}/probe/incr/{counter}"));
        async move {
            let (status, body) = send(request).await;
            assert_eq!(status, 200, "{body}");
            body.parse::<i64>().expect("a counter value")
        }
    }))
    .await;
    values.sort_unstable();
    assert_eq!(values, (1..=200).collect::<Vec<i64>>());

    // Rounds of 50 compare-and-sets against the version just read: one winner each round.
    let key = unique("contended");
    let (status, _) = send(client.post(format!("{base}/probe/put/{key}")).body("start")).await;
    assert_eq!(status, 204);
    let mut seen_versions = Vec::new();
    for round in 0..5 {
        let (status, version) = send(client.get(format!("{base}/probe/version/{key}"))).await;
        assert_eq!(status, 200, "{version}");
        assert!(
            !seen_versions.contains(&version),
            "a new version every write"
        );
        seen_versions.push(version.clone());
        let outcomes = futures_util::future::join_all((0..50).map(|i| {
            let request = client
                .post(format!("{base}/probe/cas/{key}/{version}"))
                .body(format!("round {round} writer {i}"));
            async move { (i, send(request).await) }
        }))
        .await;
        let winners: Vec<usize> = outcomes
            .iter()
            .filter(|(_, (status, _))| *status == 200)
            .map(|(i, _)| *i)
            .collect();
        let losers = outcomes.iter().filter(|(_, (s, _))| *s == 409).count();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one winner, not {winners:?}"
        );
        assert_eq!(losers, 49, "round {round}: every other writer lost");
        let (_, stored) = send(client.get(format!("{base}/probe/get/{key}"))).await;
        assert_eq!(stored, format!("round {round} writer {}", winners[0]));
    }
    eprintln!(
        "durable objects: 200 concurrent increments exact; 5 rounds of 50 compare-and-sets, one winner each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_removed_by_the_alarm_in_batches() {
    let Some((_emulator, base)) = emulator(None) else {
        return;
    };
    let client = client();
    // 600 keys expiring together: more than two of the alarm's batches of 256.
    let (status, rows) = send(client.post(format!("{base}/probe/expiring/600"))).await;
    assert_eq!((status, rows.as_str()), (200, "600"));
    let started = std::time::Instant::now();
    let mut left = rows;
    while left != "0" && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = send(client.get(format!("{base}/probe/rows"))).await.1;
    }
    assert_eq!(left, "0", "the alarm removed every expired row");
    eprintln!(
        "durable objects: 600 expired rows removed by the alarm {:.1} s after the write",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_of_the_emulator() {
    let dir = std::env::temp_dir().join(unique("kvkit-durable-persist"));
    let key = unique("kept");
    let counter = unique("kept-counter");
    let client = client();
    let version = {
        let Some((emulator, base)) = emulator(Some(&dir)) else {
            return;
        };
        let (status, _) = send(
            client
                .post(format!("{base}/probe/put/{key}"))
                .body("durable"),
        )
        .await;
        assert_eq!(status, 204);
        for expected in 1..=3 {
            let (_, value) = send(client.post(format!("{base}/probe/incr/{counter}"))).await;
            assert_eq!(value, expected.to_string());
        }
        let (_, version) = send(client.get(format!("{base}/probe/version/{key}"))).await;
        emulator.stop();
        version
    };
    let (emulator, base) = emulator(Some(&dir)).expect("started before");
    let (status, value) = send(client.get(format!("{base}/probe/get/{key}"))).await;
    assert_eq!((status, value.as_str()), (200, "durable"));
    let (_, value) = send(client.post(format!("{base}/probe/incr/{counter}"))).await;
    assert_eq!(value, "4", "the counter kept its count");
    let (_, kept) = send(client.get(format!("{base}/probe/version/{key}"))).await;
    assert_eq!(kept, version, "the entry kept its version");
    // Versions made after the restart are new: a compare-and-set against the kept one wins
    // once, and the entry's next version is one it never had.
    let cas = format!("{base}/probe/cas/{key}/{version}");
    let (status, _) = send(client.post(&cas).body("after restart")).await;
    assert_eq!(status, 200);
    let (status, _) = send(client.post(&cas).body("again")).await;
    assert_eq!(status, 409);
    let (_, newer) = send(client.get(format!("{base}/probe/version/{key}"))).await;
    assert_ne!(newer, version);
    emulator.stop();
    std::fs::remove_dir_all(&dir).expect("removing the emulator's data");
}
