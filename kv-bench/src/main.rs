//! Side-by-side benchmarks: each `kvkit` backend against the raw library underneath, in one process,
//! printed as `name: value` lines (ratios are ours ÷ theirs). Results live in BENCHMARKS.md.
//!
//! `cargo run --release -p kv-bench -- memory` (or `redis`, `wrappers`, `patterns`, `http`: the Redis
//! ones start their own `redis-server` unless `KV_BENCH_REDIS_URL` is set; or `cloudflare`: starts
//! the KV REST emulator unless `KV_BENCH_CF_URL` is set; or `redis-ha`: Sentinel and Cluster
//! failovers and resharding under load, on servers it starts; or `sqlite`: its files in a
//! temporary directory; or `durable`: the Durable Object store inside workerd, which needs the
//! Workers built by `cargo xtask worker`)

use std::process::ExitCode;

/// Runs `$body` (which may `.await`) for each index of `$indices[t]` in each of `$indices.len()` tasks,
/// with `$state` cloned once per task and bound as `$s`; evaluates to the ops/s achieved.
macro_rules! throughput {
    ($indices:expr, $state:expr, |$s:ident, $i:ident| $body:expr) => {{
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..$indices.len())
            .map(|t| {
                let indices = $indices.clone();
                let $s = $state.clone();
                tokio::spawn(async move {
                    let mut ops = 0usize;
                    for &i in &indices[t] {
                        let $i = i as usize;
                        $body;
                        ops += 1;
                    }
                    ops
                })
            })
            .collect();
        let mut ops = 0;
        for task in tasks {
            ops += task.await.expect("benchmark task");
        }
        ops as f64 / start.elapsed().as_secs_f64()
    }};
}

mod alloc;
mod cloudflare;
mod durable;
mod http;
mod memory;
mod patterns;
mod redis;
mod redis_ha;
mod sqlite;
mod wrappers;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Prints one result line.
fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name}: {value}");
}

/// Runs `op(task, i)` from `concurrency` tasks for `round`, `i` cycling through `0..keys`;
/// returns operations per second. Each ratio printed is the median of per-round ratios, each
/// round measuring both sides back to back.
async fn throughput<F, Fut>(
    concurrency: usize,
    round: std::time::Duration,
    keys: usize,
    op: F,
) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (stop, done, op) = (Arc::clone(&stop), Arc::clone(&done), op.clone());
            tokio::spawn(async move {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i % keys).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(round).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("benchmark task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Measures `ours` and `theirs` back to back for `rounds` rounds, alternating which goes first
/// so drift in the machine's speed cancels out; returns the medians of our rates, their rates
/// and the per-round ratios.
async fn alternate<A, FA, B, FB>(rounds: usize, mut ours: A, mut theirs: B) -> (f64, f64, f64)
where
    A: FnMut() -> FA,
    FA: std::future::Future<Output = f64>,
    B: FnMut() -> FB,
    FB: std::future::Future<Output = f64>,
{
    let (mut our_rates, mut their_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (o, t) = if round % 2 == 0 {
            let o = ours().await;
            (o, theirs().await)
        } else {
            let t = theirs().await;
            (ours().await, t)
        };
        our_rates.push(o);
        their_rates.push(t);
        ratios.push(o / t);
    }
    (median(our_rates), median(their_rates), median(ratios))
}

/// The median of a few measurements.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The Redis to benchmark against: `KV_BENCH_REDIS_URL`, or a `redis-server` started on a free
/// loopback port (kept running while the returned guard lives).
fn redis_for_bench() -> (Option<kvkit_test_servers::RedisServer>, String) {
    match std::env::var("KV_BENCH_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = kvkit_test_servers::RedisServer::start(&[])
                .expect("redis-server is needed for this benchmark");
            let url = server.url();
            (Some(server), url)
        }
    }
}

/// A small deterministic xorshift generator, so both sides see the same key sequence.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `0..n` in a random order.
    fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut all: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            all.swap(i, self.below(i + 1));
        }
        all
    }
}

fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match which.as_str() {
        "memory" => runtime.block_on(memory::run()),
        "redis" => runtime.block_on(redis::run()),
        "redis-ha" => runtime.block_on(redis_ha::run()),
        "wrappers" => runtime.block_on(wrappers::run()),
        "patterns" => runtime.block_on(patterns::run()),
        "http" => runtime.block_on(http::run()),
        "cloudflare" => runtime.block_on(cloudflare::run()),
        "sqlite" => runtime.block_on(sqlite::run()),
        "durable" => runtime.block_on(durable::run()),
        _ => {
            eprintln!(
                "usage: kv-bench memory|redis|redis-ha|wrappers|patterns|http|cloudflare|sqlite|durable"
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
