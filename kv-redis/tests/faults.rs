//! Fault tests against a real `redis-server` of their own: killed mid-load and started again on
//! the same port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kvkit_core::{KvStore, PutOptions};
use kvkit_redis::RedisStore;
use kvkit_test_servers::RedisServer;
use tokio::time::{Instant, timeout};

const OP_TIMEOUT: Duration = Duration::from_millis(500);

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .timeout(OP_TIMEOUT)
        .connect_timeout(OP_TIMEOUT)
        .connect()
        .await
        .expect("connecting")
}

/// Writers that keep writing distinct keys until stopped, recording which writes returned `Ok`.
fn spawn_writers(
    store: &RedisStore,
    tasks: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<String>, usize)>> {
    (0..tasks)
        .map(|t| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = 0;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{t}:{i}");
                    i += 1;
                    // A hang guard, far above the store's own timeout: an operation must end.
                    let result = timeout(
                        OP_TIMEOUT * 4,
                        store.put(&key, key.clone().into(), PutOptions::new()),
                    )
                    .await
                    .expect("an operation hung past its timeout during the outage");
                    match result {
                        Ok(()) => acked.push(key),
                        Err(e) => {
                            assert!(e.is_retryable(), "outage error not retryable: {e:?}");
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (acked, failed)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_with_retryable_errors_and_recovers() {
    let Some(mut server) = RedisServer::start(&[]) else {
        kvkit_testsuite::skip("outage test", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let store = store(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&store, 8, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.kill();
    // Calls during the outage fail, retryably, within the timeout (the writers check each).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = timeout(OP_TIMEOUT * 4, store.get("load:0:0"))
        .await
        .expect("a get hung during the outage");
    let err = during.expect_err("Redis is down");
    assert!(err.is_retryable(), "{err:?}");

    server.restart();
    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(2) {
        if store.get("load:0:0").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recovered,
        "the store did not recover within 2 s of Redis coming back"
    );

    stop.store(true, Ordering::Relaxed);
    let mut failures = 0;
    let mut acked = 0;
    for writer in writers {
        let (ok, failed) = writer.await.expect("writer");
        acked += ok.len();
        failures += failed;
    }
    println!("{acked} writes acknowledged, {failures} failed retryably during the outage");
    assert!(acked > 0, "no write succeeded before the outage");
    assert!(failures > 0, "no write failed during the outage");
    store
        .put("after", "ok".into(), PutOptions::new())
        .await
        .expect("writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_crash_with_fsync_always() {
    let Some(mut server) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        kvkit_testsuite::skip("durability test", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let store = store(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&store, 8, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer").0);
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before the crash"
    );

    server.restart();
    let store = store_when_back(&server).await;
    let mut lost = Vec::new();
    for chunk in acked.chunks(100) {
        let values = store.get_many(chunk).await.expect("reading back");
        for (key, value) in chunk.iter().zip(values) {
            if value.as_deref() != Some(key.as_bytes()) {
                lost.push(key.clone());
            }
        }
    }
    println!("{} acknowledged writes, {} lost", acked.len(), lost.len());
    assert_eq!(
        lost.len(),
        0,
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    // The index survived too: every acknowledged key is listed.
    let listed = kvkit_core::KvStoreExt::list_stream(&store, "load:");
    let listed: Vec<_> = futures_util::TryStreamExt::try_collect(listed)
        .await
        .expect("listing");
    assert!(listed.len() >= acked.len());
}

/// Connects once Redis has finished loading its append-only file.
async fn store_when_back(server: &RedisServer) -> RedisStore {
    for _ in 0..100 {
        if let Ok(store) = RedisStore::builder(server.url()).connect().await
            && store.get("probe").await.is_ok()
        {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Redis did not come back after the restart");
}
