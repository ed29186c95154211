//! High availability under load, on servers each test starts on its own loopback ports: a
//! Sentinel failover and a Cluster failover, each with replica acknowledgement (`WAIT`) on and
//! off, and a Cluster resharding. Each prints its figures (`cargo test -- --nocapture`); the
//! same scenarios make `kv-bench redis-ha`.
//!
//! With acknowledgement on, no acknowledged write may be lost; without it, the loss is only
//! counted (Redis replicates asynchronously, so it may lose the writes of the last moment).
//! Every scenario checks that the store serves again within `BOUND`, that the listing holds
//! exactly the keys that exist, in order, once each, and that every counter holds at least its
//! acknowledged increments and at most those plus the increments whose outcome was unknown.

mod failover;

use std::time::Duration;

use failover::{Fault, Report};

/// The longest a failover may take before the store serves again: the target is 10 s with the
/// test servers' timeouts (Sentinel's `down-after-milliseconds` 1 s, `cluster-node-timeout`
/// 2 s); this bound leaves room for a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

fn check(name: &str, report: &Report) {
    println!("{name}: {report:?}");
    let outage = report.outage.expect("the store serves again");
    println!("{name}_outage_s: {:.2}", outage.as_secs_f64());
    assert!(outage <= BOUND, "{name}: served again after {outage:?}");
    assert!(
        report.acked_puts > 0 && report.acked_increments > 0,
        "{report:?}"
    );
    assert!(
        report.ordered,
        "{name}: listing out of order or with a key twice"
    );
    assert_eq!(
        (report.unlisted, report.listed_absent),
        (0, 0),
        "{name}: listing incomplete or with absent keys"
    );
    assert!(
        report.applied_unknown_increments <= report.unknown_increments,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_with_wait_loses_no_acknowledged_write() {
    let Some(report) = failover::sentinel_failover(true, Fault::Kill).await else {
        return;
    };
    check("sentinel_failover_with_wait", &report);
    assert_eq!(report.acked_writes_lost(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_without_wait_serves_again_and_counts_what_it_lost() {
    let Some(report) = failover::sentinel_failover(false, Fault::Kill).await else {
        return;
    };
    check("sentinel_failover_without_wait", &report);
    println!(
        "acked_writes_lost_without_wait: {}",
        report.acked_writes_lost()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_of_a_frozen_primary_with_wait_loses_no_acknowledged_write() {
    let Some(report) = failover::sentinel_failover(true, Fault::Freeze).await else {
        return;
    };
    check("sentinel_failover_frozen_with_wait", &report);
    assert_eq!(report.acked_writes_lost(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_with_wait_loses_no_acknowledged_write() {
    let Some(report) = failover::cluster_failover(true).await else {
        return;
    };
    check("cluster_failover_with_wait", &report);
    assert_eq!(report.acked_writes_lost(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_without_wait_serves_again_and_counts_what_it_lost() {
    let Some(report) = failover::cluster_failover(false).await else {
        return;
    };
    check("cluster_failover_without_wait", &report);
    println!(
        "acked_writes_lost_without_wait: {}",
        report.acked_writes_lost()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_loses_nothing_and_callers_see_no_error() {
    let Some(report) = failover::resharding().await else {
        return;
    };
    check("resharding", &report);
    println!("resharding_s: {:.2}", report.fault.as_secs_f64());
    assert_eq!(report.caller_errors(), 0, "{report:?}");
    assert_eq!(report.acked_writes_lost(), 0, "{report:?}");
    // Every error retried is of the documented retryable kind, and no increment's outcome was
    // left unknown, so every counter is exact.
    assert!(
        report.retried.keys().all(|&kind| kind == "unavailable"),
        "{report:?}"
    );
    assert_eq!(report.unknown_increments, 0, "{report:?}");
}
