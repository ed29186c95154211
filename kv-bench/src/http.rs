//! The demo service in-process, driven over real HTTP on loopback: the product route through
//! the rate-limit layer against the same route without it, on the memory store.

use std::sync::Arc;
use std::time::Duration;

use crate::line;

const CONCURRENCY: usize = 64;
const ROUND: Duration = Duration::from_millis(800);
const ROUNDS: usize = 7;

/// Starts the demo on an ephemeral port; returns its base URL.
async fn start(rate_limit: Option<u64>, database: &std::path::Path) -> String {
    let store = kvkit::open("memory:").await.expect("memory store");
    let mut config = kv_demo::Config::new(store, database);
    config.rate_limit = rate_limit;
    let router = kv_demo::router(config).expect("demo router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(kv_demo::serve(listener, router, std::future::pending()));
    base
}

/// Requests per second for `GET {base}/products/1` from `CONCURRENCY` tasks over `ROUND`.
async fn rps(client: &reqwest::Client, base: &str) -> f64 {
    let url = Arc::new(format!("{base}/products/1"));
    let client = client.clone();
    crate::throughput(CONCURRENCY, ROUND, 1, move |_, _| {
        let (client, url) = (client.clone(), Arc::clone(&url));
        async move {
            let response = client.get(url.as_str()).send().await.expect("request");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.expect("body");
        }
    })
    .await
}

pub(crate) async fn run() {
    let dir = std::env::temp_dir().join(format!("kv-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let limited = start(Some(u64::MAX), &dir.join("limited.sqlite3")).await;
    let plain = start(None, &dir.join("plain.sqlite3")).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    // Warm both: the product enters each cache, connections open.
    rps(&client, &limited).await;
    rps(&client, &plain).await;
    let (ours, theirs, ratio) =
        crate::alternate(ROUNDS, || rps(&client, &limited), || rps(&client, &plain)).await;
    line("http_cached_product_rps", format!("{ours:.0}"));
    line("http_plain_product_rps", format!("{theirs:.0}"));
    line(
        "http_rate_limited_rps_ratio_vs_plain",
        format!("{ratio:.2}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
