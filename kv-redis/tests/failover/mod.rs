//! High-availability scenarios under load, on servers they start on loopback ports: a Sentinel
//! failover, a Cluster failover and a Cluster resharding. `tests/ha.rs` asserts what they find;
//! `kv-bench redis-ha` (which includes this file) prints the figures.
//!
//! The load: `WRITERS` tasks, each in a loop putting a new key (`wNN:iiiiiii`, its value the
//! number `i`), incrementing its own counter (`cNN`) and reading back its last acknowledged key.
//! A write is acknowledged when the store answered `Ok`. After the run, every acknowledged put
//! must still read back, every counter must be at least its last acknowledged value, and the
//! listing must hold exactly the keys that exist, in order, each once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvkit_core::{CounterOptions, KvStore, ListOptions, PutOptions};
use kvkit_redis::RedisStore;
use kvkit_test_servers::{RedisCluster, RedisSentinels};

/// Concurrent writers.
const WRITERS: usize = 8;
/// How long the load runs before the fault.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long callers must meet no error before the store counts as serving again.
const QUIET: Duration = Duration::from_millis(1500);
/// How long a scenario waits for the store to serve again before giving up.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Each call's time limit: a dead primary answers at once (its port refuses connections).
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a write waits for its replica, with replica acknowledgement on.
pub(crate) const WAIT_TIMEOUT: Duration = Duration::from_millis(500);
/// Namespace of every scenario (each runs on servers of its own).
const NAMESPACE: &str = "ha:";
/// Shards of the store on a cluster (the default).
const SHARDS: u32 = 16;

/// How often a caller tries one call on a retryable error, and how long it waits between tries
/// (doubling from `first_wait` up to `max_wait`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryBudget {
    pub(crate) attempts: u32,
    pub(crate) first_wait: Duration,
    pub(crate) max_wait: Duration,
}

/// The budget resharding callers get: 10 tries over about 3 s.
pub(crate) const RESHARDING_BUDGET: RetryBudget = RetryBudget {
    attempts: 10,
    first_wait: Duration::from_millis(20),
    max_wait: Duration::from_millis(500),
};

/// What a scenario found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// From the fault to the last error a caller saw (zero if none); `None` when the store did
    /// not serve again within `GIVE_UP`.
    pub(crate) outage: Option<Duration>,
    /// How long moving the slots took (resharding).
    pub(crate) fault: Duration,
    /// Hash slots moved (resharding).
    pub(crate) slots_moved: usize,
    pub(crate) acked_puts: usize,
    pub(crate) acked_increments: u64,
    /// Acknowledged puts that no longer read back as written.
    pub(crate) lost_puts: usize,
    /// Acknowledged increments missing from their counters.
    pub(crate) lost_increments: u64,
    /// Errors callers saw (after their retry budget, when they had one), by kind.
    pub(crate) errors: BTreeMap<&'static str, u64>,
    /// Retryable errors callers retried within their budget, by kind.
    pub(crate) retried: BTreeMap<&'static str, u64>,
    /// Increments that failed, so their outcome was unknown to the caller.
    pub(crate) unknown_increments: u64,
    /// Of those, how many the counters show as applied.
    pub(crate) applied_unknown_increments: u64,
    /// Keys listed.
    pub(crate) listed: usize,
    /// Whether the listing was in strictly increasing order (so no key twice).
    pub(crate) ordered: bool,
    /// Keys that exist but were not listed.
    pub(crate) unlisted: usize,
    /// Keys listed that do not exist.
    pub(crate) listed_absent: usize,
}

impl Report {
    /// Acknowledged writes lost: puts and increments.
    pub(crate) fn acked_writes_lost(&self) -> u64 {
        self.lost_puts as u64 + self.lost_increments
    }

    /// Errors callers saw, of every kind.
    pub(crate) fn caller_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What one writer did.
struct Writer {
    acked: Vec<u32>,
    attempted: u32,
    /// The counter's value after its last acknowledged increment.
    counter: i64,
    acked_increments: u64,
    unknown_increments: u64,
    /// Acknowledged increments found missing during the run (the counter went back).
    lost_increments: u64,
}

/// What every writer shares: the stop flag and the times of the last error and success.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    last_error: Mutex<Option<Instant>>,
    last_success: Mutex<Option<Instant>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    retried: Mutex<BTreeMap<&'static str, u64>>,
}

fn now_into(slot: &Mutex<Option<Instant>>) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
}

fn read(slot: &Mutex<Option<Instant>>) -> Option<Instant> {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn count(counts: &Mutex<BTreeMap<&'static str, u64>>, kind: &'static str) {
    *counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(kind)
        .or_default() += 1;
}

fn take(counts: &Mutex<BTreeMap<&'static str, u64>>) -> BTreeMap<&'static str, u64> {
    std::mem::take(
        &mut counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// `call`'s answer, retried while it fails with a retryable error: right after a failover the
/// sentinels may still be settling (a sentinel that has not yet learnt the new primary answers
/// that it knows no such master), which a caller is told to retry. Gives up after 30 s.
async fn patiently<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kvkit_core::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

fn key(writer: usize, i: u32) -> String {
    format!("w{writer:02}:{i:07}")
}

fn counter(writer: usize) -> String {
    format!("c{writer:02}")
}

impl Shared {
    /// Runs `op`, retrying retryable errors within `budget`; records the outcome.
    async fn call<T, F, Fut>(&self, budget: Option<RetryBudget>, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kvkit_core::Result<T>>,
    {
        let mut wait = budget.map_or(Duration::ZERO, |b| b.first_wait);
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(value) => {
                    now_into(&self.last_success);
                    return Some(value);
                }
                Err(e) => {
                    if let Some(budget) = budget
                        && e.is_retryable()
                        && attempt < budget.attempts
                    {
                        count(&self.retried, e.kind().as_str());
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(budget.max_wait);
                        attempt += 1;
                        continue;
                    }
                    now_into(&self.last_error);
                    count(&self.errors, e.kind().as_str());
                    return None;
                }
            }
        }
    }
}

/// The load on a store, running until [`Load::finish`].
struct Load {
    store: RedisStore,
    shared: Arc<Shared>,
    writers: Vec<tokio::task::JoinHandle<Writer>>,
}

impl Load {
    fn start(store: &RedisStore, budget: Option<RetryBudget>) -> Self {
        let shared = Arc::new(Shared::default());
        let writers = (0..WRITERS)
            .map(|w| {
                let (store, shared) = (store.clone(), Arc::clone(&shared));
                tokio::spawn(async move { write(w, &store, &shared, budget).await })
            })
            .collect();
        Self {
            store: store.clone(),
            shared,
            writers,
        }
    }

    /// Waits until callers have met no error for `QUIET` (and had a success since), and returns
    /// the time from `fault` to the last error; `None` after `GIVE_UP`.
    async fn served_again(&self, fault: Instant) -> Option<Duration> {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let last_error = read(&self.shared.last_error).filter(|&at| at > fault);
            let quiet_since = last_error.unwrap_or(fault);
            let succeeded = read(&self.shared.last_success).is_some_and(|at| at > quiet_since);
            if succeeded && quiet_since.elapsed() >= QUIET {
                return Some(last_error.map_or(Duration::ZERO, |at| at - fault));
            }
            if fault.elapsed() > GIVE_UP {
                return None;
            }
        }
    }

    /// Stops the writers and checks what the store holds against what they were told.
    async fn finish(self, outage: Option<Duration>) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut report = Report {
            outage,
            ..Report::default()
        };
        if outage.is_none() {
            // A store that does not serve cannot be read back.
            return report;
        }
        let mut existing = BTreeSet::new();
        for (w, writer) in self.writers.into_iter().enumerate() {
            let writer = writer.await.expect("a writer task");
            report.acked_puts += writer.acked.len();
            report.acked_increments += writer.acked_increments;
            report.unknown_increments += writer.unknown_increments;
            report.lost_increments += writer.lost_increments;
            let keys: Vec<String> = (0..writer.attempted).map(|i| key(w, i)).collect();
            let mut values = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(100) {
                values.extend(patiently("reading back", || self.store.get_many(chunk)).await);
            }
            let acked: BTreeSet<u32> = writer.acked.iter().copied().collect();
            for (i, value) in values.iter().enumerate() {
                let i = u32::try_from(i).expect("fewer than 2^32 keys");
                let written = value
                    .as_ref()
                    .is_some_and(|v| **v == *i.to_string().as_bytes());
                if value.is_some() {
                    existing.insert(key(w, i));
                }
                if acked.contains(&i) && !written {
                    report.lost_puts += 1;
                }
            }
            let name = counter(w);
            let stored = patiently("reading a counter", || self.store.get(&name)).await;
            if stored.is_some() {
                existing.insert(counter(w));
            }
            let value: i64 = stored.map_or(0, |v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .expect("a counter")
            });
            report.lost_increments += u64::try_from(writer.counter - value).unwrap_or(0);
            report.applied_unknown_increments += u64::try_from(value - writer.counter).unwrap_or(0);
        }
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let options = ListOptions::new().limit(1000).cursor(cursor);
            let page = patiently("listing", || self.store.list(options.clone())).await;
            listed.extend(page.keys.into_iter().map(|k| k.name));
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        report.listed = listed.len();
        report.ordered = listed.windows(2).all(|pair| pair[0] < pair[1]);
        let listed: BTreeSet<String> = listed.into_iter().collect();
        report.unlisted = existing.difference(&listed).count();
        report.listed_absent = listed.difference(&existing).count();
        report.errors = take(&self.shared.errors);
        report.retried = take(&self.shared.retried);
        report
    }
}

/// One writer's loop: put a new key, increment its counter, read back its last acknowledged key.
async fn write(
    w: usize,
    store: &RedisStore,
    shared: &Shared,
    budget: Option<RetryBudget>,
) -> Writer {
    let mut writer = Writer {
        acked: Vec::new(),
        attempted: 0,
        counter: 0,
        acked_increments: 0,
        unknown_increments: 0,
        lost_increments: 0,
    };
    let options = CounterOptions::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let i = writer.attempted;
        writer.attempted += 1;
        let (k, value) = (key(w, i), i.to_string());
        let put = || store.put(&k, value.clone().into(), PutOptions::new());
        if shared.call(budget, put).await.is_some() {
            writer.acked.push(i);
        }
        let c = counter(w);
        let increment = || store.increment(&c, 1, options);
        match shared.call(budget, increment).await {
            Some(n) => {
                // A counter at or below its last acknowledged value lost acknowledged increments.
                writer.lost_increments += u64::try_from(writer.counter + 1 - n).unwrap_or(0);
                writer.counter = n;
                writer.acked_increments += 1;
            }
            None => writer.unknown_increments += 1,
        }
        if let Some(&last) = writer.acked.last() {
            let k = key(w, last);
            shared.call(budget, || store.get(&k)).await;
        }
    }
    writer
}

/// The store `builder` connects, with the scenarios' namespace and timeout, every write waiting
/// for one replica with `wait`.
async fn connect(builder: kvkit_redis::RedisBuilder, wait: bool) -> RedisStore {
    let builder = builder.namespace(NAMESPACE).timeout(TIMEOUT);
    let builder = if wait {
        builder.wait_for_replicas(1, WAIT_TIMEOUT)
    } else {
        builder
    };
    builder
        .connect()
        .await
        .expect("connecting to the test servers")
}

/// What happens to the primary.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// Killed (`kill -9`): its connections close at once.
    Kill,
    /// Frozen (`kill -STOP`): it stops answering, its connections stay open, as when the
    /// network cuts it off.
    Freeze,
}

/// Sentinel, a primary and two replicas: the primary is killed or frozen under load. `None`
/// when the user opted out of Redis tests.
pub(crate) async fn sentinel_failover(wait: bool, fault: Fault) -> Option<Report> {
    let mut setup = RedisSentinels::start(2, None)?;
    let store = connect(RedisStore::builder(setup.url()), wait).await;
    let load = Load::start(&store, None);
    tokio::time::sleep(WARM_UP).await;
    let started = Instant::now();
    tokio::task::block_in_place(|| match fault {
        Fault::Kill => setup.kill_primary(),
        Fault::Freeze => setup.freeze_primary(),
    });
    let fault = started;
    let outage = load.served_again(fault).await;
    Some(load.finish(outage).await)
}

/// A cluster of 3 masters with a replica each: a master is killed under load. With `wait`, the
/// killed node is restarted once its replica took over, so that the new master has a replica to
/// confirm writes (until then, writes to its slots fail as not replicated). `None` when the user
/// opted out of Redis tests.
pub(crate) async fn cluster_failover(wait: bool) -> Option<Report> {
    let mut cluster = RedisCluster::start_with_replicas(3, 1)?;
    let store = connect(RedisStore::cluster(cluster.urls()), wait).await;
    let load = Load::start(&store, None);
    tokio::time::sleep(WARM_UP).await;
    let victim = cluster.master_ports()[0];
    let fault = Instant::now();
    tokio::task::block_in_place(|| {
        cluster.kill(victim);
        if wait {
            cluster.wait_for_failover(victim, GIVE_UP);
            cluster.restart(victim);
            cluster.wait_for_replica(victim, GIVE_UP);
        }
    });
    let outage = load.served_again(fault).await;
    Some(load.finish(outage).await)
}

/// The hash tag of shard `shard` of the scenarios' namespace on a cluster, as the crate docs
/// lay it out (`{h:s}`: the namespace's stable hash in hex, the shard number).
fn shard_tag(shard: u32) -> String {
    let hash = kvkit_core::backend::stable_hash(NAMESPACE);
    format!("{{{hash:016x}:{shard:02}}}")
}

/// A cluster of 3 masters: the slots of the store's shards on the master holding most of them
/// move to another master, one by one (`CLUSTER SETSLOT`, `MIGRATE`), while the load runs, its
/// callers retrying retryable errors within [`RESHARDING_BUDGET`]. `None` when the user opted
/// out of Redis tests.
pub(crate) async fn resharding() -> Option<Report> {
    let cluster = RedisCluster::start(3)?;
    let store = connect(RedisStore::cluster(cluster.urls()), false).await;
    let load = Load::start(&store, Some(RESHARDING_BUDGET));
    tokio::time::sleep(WARM_UP).await;
    let started = Instant::now();
    let slots_moved = tokio::task::block_in_place(|| {
        let mut by_owner: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
        for shard in 0..SHARDS {
            let slot = cluster.key_slot(&shard_tag(shard));
            by_owner
                .entry(cluster.slot_owner(slot))
                .or_default()
                .push(slot);
        }
        let (&from, slots) = by_owner
            .iter()
            .max_by_key(|(_, slots)| slots.len())
            .expect("shards on some master");
        let to = *cluster
            .master_ports()
            .iter()
            .find(|&&port| port != from)
            .expect("another master");
        for &slot in slots {
            cluster.migrate_slot(slot, to);
        }
        slots.len()
    });
    let fault = started.elapsed();
    tokio::time::sleep(WARM_UP).await;
    let outage = read(&load.shared.last_error).map(|at| at.saturating_duration_since(started));
    let mut report = load.finish(Some(outage.unwrap_or(Duration::ZERO))).await;
    report.fault = fault;
    report.slots_moved = slots_moved;
    Some(report)
}
