//! `kv-bench redis-ha`: what Redis failovers and resharding cost the Redis backend's callers,
//! from the scenarios of `kv-redis/tests/failover` (included from there, so the test suite and
//! these figures measure the same thing): a Sentinel failover (a primary and two replicas, the
//! primary killed, or frozen as a network partition would leave it) and a Cluster failover (3 masters with a replica each, a master killed), each
//! with replica acknowledgement (`WAIT 1`) on and off, and the store's slots moved between
//! Cluster masters. Each runs `KV_BENCH_HA_ROUNDS` times (default 3) on servers of its own. Then
//! what waiting for a replica costs a put, side by side through one Sentinel setup.

#[path = "../../kv-redis/tests/failover/mod.rs"]
mod failover;

use std::time::Duration;

use bytes::Bytes;
use failover::{Fault, Report};
use kvkit_core::{KvStore, PutOptions};
use kvkit_redis::RedisStore;
use kvkit_test_servers::RedisSentinels;

use crate::{line, median};

/// Keys the put-throughput rounds cycle through.
const KEYS: usize = 10_000;
/// One throughput round.
const ROUND: Duration = Duration::from_millis(600);
/// Interleaved throughput rounds.
const ROUNDS: usize = 5;

/// The medians (and worst) of several rounds of one scenario.
struct Rounds(Vec<Report>);

impl Rounds {
    async fn of<F, Fut>(rounds: usize, mut scenario: F) -> Self
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<Report>>,
    {
        let mut reports = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let report = scenario()
                .await
                .expect("redis-server is needed for this benchmark");
            reports.push(report);
        }
        Self(reports)
    }

    /// Seconds from the fault to the last error a caller saw: the median and the worst round.
    fn outage(&self) -> (f64, f64) {
        let seconds: Vec<f64> = self
            .0
            .iter()
            .map(|r| r.outage.expect("the store served again").as_secs_f64())
            .collect();
        (
            median(seconds.clone()),
            seconds.iter().copied().fold(0.0, f64::max),
        )
    }

    fn sum(&self, of: impl Fn(&Report) -> u64) -> u64 {
        self.0.iter().map(of).sum()
    }

    /// Whether every round's listing held exactly the keys that exist, in order, once each.
    fn listings_exact(&self) -> bool {
        self.0
            .iter()
            .all(|r| r.ordered && r.unlisted == 0 && r.listed_absent == 0 && r.listed > 0)
    }

    /// Whether every counter held its acknowledged increments, and at most those plus the ones
    /// whose outcome its caller did not know.
    fn counters_consistent(&self) -> bool {
        self.0
            .iter()
            .all(|r| r.lost_increments == 0 && r.applied_unknown_increments <= r.unknown_increments)
    }

    fn print(&self, name: &str) {
        let (median, worst) = self.outage();
        line(&format!("{name}_s"), format!("{median:.2}"));
        line(&format!("{name}_worst_s"), format!("{worst:.2}"));
        line(
            &format!("{name}_acked_writes"),
            self.sum(|r| r.acked_puts as u64 + r.acked_increments),
        );
        line(
            &format!("{name}_caller_errors"),
            self.sum(Report::caller_errors),
        );
        line(&format!("{name}_listings_exact"), self.listings_exact());
    }
}

/// Puts a second through a Sentinel setup (a primary and two replicas), waiting for one replica
/// over `connections` connections, and without waiting over one, at `concurrency` callers: the
/// medians of interleaved rounds, and of their ratios (waiting ÷ not).
async fn wait_cost(concurrency: usize, connections: usize) -> (f64, f64, f64) {
    let setup = RedisSentinels::start(2, None).expect("redis-server is needed for this benchmark");
    let builder = || RedisStore::builder(setup.url()).namespace("bench:");
    let plain = builder().connect().await.expect("connecting");
    let waiting = builder()
        .wait_for_replicas(1, failover::WAIT_TIMEOUT)
        .connections(connections)
        .connect()
        .await
        .expect("connecting");
    let puts = |store: RedisStore| {
        move || {
            let store = store.clone();
            crate::throughput(concurrency, ROUND, KEYS, move |_, i| {
                let store = store.clone();
                async move {
                    let key = format!("key:{i:05}");
                    store
                        .put(&key, Bytes::from_static(b"value"), PutOptions::new())
                        .await
                        .expect("put");
                }
            })
        }
    };
    crate::alternate(ROUNDS, puts(waiting), puts(plain)).await
}

pub(crate) async fn run() {
    let rounds = std::env::var("KV_BENCH_HA_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    line("rounds", rounds);
    let sentinel = Rounds::of(rounds, || failover::sentinel_failover(false, Fault::Kill)).await;
    let sentinel_wait = Rounds::of(rounds, || failover::sentinel_failover(true, Fault::Kill)).await;
    let frozen = Rounds::of(rounds, || failover::sentinel_failover(false, Fault::Freeze)).await;
    let frozen_wait = Rounds::of(rounds, || failover::sentinel_failover(true, Fault::Freeze)).await;
    let cluster = Rounds::of(rounds, || failover::cluster_failover(false)).await;
    let cluster_wait = Rounds::of(rounds, || failover::cluster_failover(true)).await;
    let resharding = Rounds::of(rounds, failover::resharding).await;

    sentinel.print("sentinel_failover");
    sentinel_wait.print("sentinel_failover_with_wait");
    frozen.print("sentinel_frozen_primary_failover");
    frozen_wait.print("sentinel_frozen_primary_failover_with_wait");
    cluster.print("cluster_failover");
    cluster_wait.print("cluster_failover_with_wait");
    let lost = |rounds: &[&Rounds]| -> u64 {
        rounds
            .iter()
            .map(|r| r.sum(Report::acked_writes_lost))
            .sum()
    };
    line(
        "acked_writes_lost_with_wait",
        lost(&[&sentinel_wait, &frozen_wait, &cluster_wait]),
    );
    line(
        "acked_writes_lost_without_wait",
        lost(&[&sentinel, &frozen, &cluster]),
    );
    line(
        "counters_consistent",
        [
            &sentinel,
            &sentinel_wait,
            &frozen,
            &frozen_wait,
            &cluster,
            &cluster_wait,
            &resharding,
        ]
        .iter()
        .all(|r| r.counters_consistent()),
    );

    let moving: Vec<f64> = resharding.0.iter().map(|r| r.fault.as_secs_f64()).collect();
    line("resharding_s", format!("{:.2}", median(moving)));
    line(
        "resharding_slots_moved",
        resharding.sum(|r| r.slots_moved as u64),
    );
    line(
        "resharding_retries",
        resharding.sum(|r| r.retried.values().sum()),
    );
    line(
        "resharding_errors_seen_by_callers",
        resharding.sum(Report::caller_errors),
    );
    line(
        "resharding_counters_exact",
        resharding
            .0
            .iter()
            .all(|r| r.unknown_increments == 0 && r.lost_increments == 0),
    );
    line("resharding_listings_exact", resharding.listings_exact());
    line(
        "retry_budget",
        format!(
            "{} tries, waits {:?} doubling to {:?}",
            failover::RESHARDING_BUDGET.attempts,
            failover::RESHARDING_BUDGET.first_wait,
            failover::RESHARDING_BUDGET.max_wait
        ),
    );
    line(
        "wait",
        format!("1 replica within {:?}", failover::WAIT_TIMEOUT),
    );
    for (concurrency, connections) in [(1, 1), (16, 1), (16, 16)] {
        let (with, without, ratio) = wait_cost(concurrency, connections).await;
        let case = format!("c{concurrency}_conns{connections}");
        line(
            &format!("sentinel_put_ops_per_sec_{case}"),
            format!("{without:.0}"),
        );
        line(
            &format!("sentinel_put_with_wait_ops_per_sec_{case}"),
            format!("{with:.0}"),
        );
        line(&format!("wait_put_ratio_{case}"), format!("{ratio:.2}"));
    }
}
