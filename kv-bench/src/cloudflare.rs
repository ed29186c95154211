//! The Cloudflare backend against the emulator (Cloudflare's KV on workerd, through the REST
//! API): HTTP requests per batch operation, counted by the store, and get throughput against
//! plain GETs of the same URLs with the same `reqwest` client.

use std::sync::Arc;
use std::time::Duration;

use kvkit_cloudflare::CloudflareStore;
use kvkit_core::{KvStore, ListOptions, PutItem};
use kvkit_test_servers::{self as servers, CfEmulator};

use crate::line;

const KEYS: usize = 10_000;
const VALUE_BYTES: usize = 100;
const CONCURRENCY: usize = 16;
const ROUND: Duration = Duration::from_secs(1);
const ROUNDS: usize = 7;

/// The emulator to benchmark against: `KV_BENCH_CF_URL` (an API base URL, started with the
/// default ids and token), or one started on a free loopback port, kept while the guard lives.
fn emulator_for_bench() -> (Option<CfEmulator>, String) {
    match std::env::var("KV_BENCH_CF_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let emulator = CfEmulator::start().expect("the Cloudflare emulator is needed");
            let url = emulator.api_url();
            (Some(emulator), url)
        }
    }
}

/// Runs `op(i)` from `CONCURRENCY` tasks for `ROUND`; returns operations per second.
async fn throughput<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    crate::throughput(CONCURRENCY, ROUND, KEYS, move |_, i| op(i)).await
}

pub(crate) async fn run() {
    let (_emulator, api) = emulator_for_bench();
    let store = CloudflareStore::builder()
        .base_url(api)
        .account_id(servers::CF_EMULATOR_ACCOUNT_ID)
        .namespace_id(servers::CF_EMULATOR_NAMESPACE_ID)
        .api_token(servers::CF_EMULATOR_TOKEN)
        .build()
        .expect("a store on the emulator");
    // Half the keys under `bench/a/` (the listing), half under `bench/b/`.
    let keys: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| format!("bench/{}/{i:05}", if i < KEYS / 2 { 'a' } else { 'b' }))
            .collect(),
    );
    let value = vec![b'x'; VALUE_BYTES];

    let before = store.request_count();
    let items = keys
        .iter()
        .map(|k| PutItem::new(k.clone(), value.clone()))
        .collect();
    store.put_many(items).await.expect("writing 10,000 keys");
    line("cf_requests_put_10000", store.request_count() - before);

    let before = store.request_count();
    let mut listed = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list(ListOptions::new().prefix("bench/a/").cursor(cursor))
            .await
            .expect("listing");
        listed += page.keys.len();
        if page.list_complete {
            break;
        }
        cursor = page.cursor;
    }
    assert_eq!(listed, KEYS / 2, "every key listed");
    line("cf_requests_list_5000", store.request_count() - before);

    let before = store.request_count();
    let values = store.get_many(&keys[..100]).await.expect("batch get");
    assert!(values.iter().all(|v| v.as_deref() == Some(&value[..])));
    line("cf_requests_get_100", store.request_count() - before);

    let ours = {
        let (store, keys) = (store.clone(), keys.clone());
        move |i: usize| {
            let (store, keys) = (store.clone(), keys.clone());
            async move {
                let got = store.get(&keys[i]).await.expect("get");
                assert!(got.is_some());
            }
        }
    };
    let raw = {
        let (store, keys) = (store.clone(), keys.clone());
        let auth = format!("Bearer {}", servers::CF_EMULATOR_TOKEN);
        move |i: usize| {
            let (store, keys, auth) = (store.clone(), keys.clone(), auth.clone());
            async move {
                let response = store
                    .http_client()
                    .get(store.value_url(&keys[i]))
                    .header("authorization", auth)
                    .send()
                    .await
                    .expect("raw get");
                assert!(response.status().is_success());
                let body = response.bytes().await.expect("raw body");
                assert_eq!(body.len(), VALUE_BYTES);
            }
        }
    };
    // Warm both paths (connections, the emulator's caches), then interleave rounds.
    throughput(ours.clone()).await;
    throughput(raw.clone()).await;
    let (our_rate, raw_rate, ratio) = crate::alternate(
        ROUNDS,
        || throughput(ours.clone()),
        || throughput(raw.clone()),
    )
    .await;
    line("cf_raw_get_ops_per_sec", raw_rate.round());
    line("cf_get_ops_per_sec", our_rate.round());
    line("cf_get_ratio_vs_raw_http", format!("{ratio:.2}"));

    let before = store.request_count();
    store
        .delete_many(&keys)
        .await
        .expect("deleting 10,000 keys");
    line("cf_requests_delete_10000", store.request_count() - before);
}
