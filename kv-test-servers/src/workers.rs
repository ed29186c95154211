//! Driving Rust Workers in the emulators over HTTP: the client to use, the
//! conformance and pattern cases run inside a Worker, and a burst of concurrent requests.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

/// Cases run inside a Worker at once: enough for the ones that wait a minute of real time to
/// overlap.
const IN_FLIGHT: usize = 8;

/// An HTTP client for requests to Workers in the emulators: `timeout` for each request, and a
/// connection per request (Node closes idle connections after 5 s, and a request sent on one it
/// is closing would fail without reaching the Worker).
///
/// ```
/// let client = kvkit_test_servers::worker_client(std::time::Duration::from_secs(60));
/// // Its Debug shows the timeout.
/// let shown = format!("{client:?}");
/// assert!(shown.contains(": 60s"), "{shown}");
/// ```
pub fn worker_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// What the Worker reported for one case: `Ok` with its JSON, or `Err` with why it failed.
async fn run_case(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = client
        .get(url)
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

/// Runs every conformance and pattern case inside the Worker at `base` (as
/// [`WorkerdEmulator::worker_url`](crate::WorkerdEmulator::worker_url) or
/// [`CfEmulator::worker_url`](crate::CfEmulator::worker_url) gives it) on each of `stores`, and
/// panics unless every one passed, save exactly `expected_skips` (in any order, each named
/// `{store}/{suite}/{case}`), which must have skipped themselves: any other skip counts as a
/// failure, and so does an expected skip that did not happen.
///
/// The Worker is `kv-worker/test-worker`'s: `GET {base}/cases` lists its cases as
/// `{"conformance": [...], "patterns": [...]}`, which must be `kvkit_testsuite`'s own (the
/// built Worker is stale otherwise), and `GET {base}/run/{store}/{suite}/{case}` runs one,
/// answering `{"outcome": "passed"}` or `{"outcome": "skipped", "reason": …}`, or failing (the
/// panic's message is then on the emulator's console). A few cases run at once, each on
/// `client` (make it with [`worker_client`], with a timeout longer than the slowest case).
/// Every outcome is printed on standard error.
///
/// ```no_run
/// // no_run: it needs node, the emulator's packages and the test Worker built by
/// // `cargo xtask worker`.
/// # async fn run() {
/// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
///     .worker("suite", "kv-worker/test-worker/build/index.js")
///     .durable_object("suite", "KVKIT", "KvShard")
///     .start()
///     .expect("not opted out");
/// let client = kvkit_test_servers::worker_client(std::time::Duration::from_secs(120));
/// // Panics unless every case passed on the Durable Object store, none skipped.
/// kvkit_test_servers::assert_worker_cases_pass(&client, &emulator.worker_url("suite"), &["durable"], &[])
///     .await;
/// # }
/// ```
pub async fn assert_worker_cases_pass(
    client: &reqwest::Client,
    base: &str,
    stores: &[&str],
    expected_skips: &[&str],
) {
    let listed = client
        .get(format!("{base}/cases"))
        .send()
        .await
        .expect("listing the Worker's cases")
        .text()
        .await
        .expect("listing the Worker's cases");
    let listed: Value = serde_json::from_str(&listed).expect("the case list is JSON");
    let names = |suite: &str| -> Vec<String> {
        listed[suite]
            .as_array()
            .expect("a list of cases")
            .iter()
            .map(|n| n.as_str().expect("a case name").to_owned())
            .collect()
    };
    let expected = |cases: Vec<kvkit_testsuite::Case>| -> Vec<String> {
        cases.into_iter().map(|c| c.name.to_owned()).collect()
    };
    let (conformance, patterns) = (names("conformance"), names("patterns"));
    assert_eq!(
        conformance,
        expected(kvkit_testsuite::cases::all()),
        "the built Worker is stale: rebuild it with `cargo xtask worker`"
    );
    assert_eq!(patterns, expected(kvkit_testsuite::patterns::all()));

    let all: Vec<(&str, &str, String)> = stores
        .iter()
        .flat_map(|&store| {
            conformance
                .iter()
                .map(move |c| (store, "conformance", c.clone()))
                .chain(patterns.iter().map(move |c| (store, "patterns", c.clone())))
        })
        .collect();
    let outcomes: Vec<(String, Result<Value, String>)> = futures_util::stream::iter(&all)
        .map(|(store, suite, case)| async move {
            let outcome = run_case(client, &format!("{base}/run/{store}/{suite}/{case}")).await;
            (format!("{store}/{suite}/{case}"), outcome)
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
                skipped.push(case.as_str());
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
    skipped.sort_unstable();
    let mut expected_skips = expected_skips.to_vec();
    expected_skips.sort_unstable();
    assert_eq!(
        skipped, expected_skips,
        "the cases that skipped themselves inside workerd (a skip not expected is a failure)"
    );
}

/// Sends `count` GET requests to `url` at once, all from the client address `ip` (the
/// `CF-Connecting-IP` header, as Cloudflare sets it), and returns their statuses, in order.
/// For a rate limiter with a fixed window of a minute, as the example Worker's: the burst starts
/// well inside one minute, after waiting for the next one when less than 20 s are left.
///
/// ```no_run
/// // no_run: it needs node, the emulator's packages and the example Worker built by
/// // `cargo xtask worker`.
/// # async fn run() {
/// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
///     .worker("example", "examples/worker/build/index.js")
///     .durable_object("example", "KVKIT", "KvShard")
///     .start()
///     .expect("not opted out");
/// let client = kvkit_test_servers::worker_client(std::time::Duration::from_secs(120));
/// let url = format!("{}/products/1", emulator.worker_url("example"));
/// let statuses = kvkit_test_servers::burst_within_one_minute(&client, &url, "203.0.113.9", 300).await;
/// assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 100);
/// # }
/// ```
pub async fn burst_within_one_minute(
    client: &reqwest::Client,
    url: &str,
    ip: &str,
    count: usize,
) -> Vec<u16> {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        % 60;
    if into_minute > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    futures_util::future::join_all((0..count).map(|_| {
        let request = client.get(url).header("CF-Connecting-IP", ip);
        async move {
            request
                .send()
                .await
                .expect("a response from the Worker")
                .status()
                .as_u16()
        }
    }))
    .await
}
