//! Side-by-side benchmarks: each `kv` backend against the raw library underneath, in one process,
//! printed as `name: value` lines (ratios are ours ÷ theirs). Results live in BENCHMARKS.md.
//!
//! `cargo run --release -p kv-bench -- memory` (or `redis`, `wrappers`, `patterns`, `http`: the Redis
//! ones start their own `redis-server` unless `KV_BENCH_REDIS_URL` is set; or `cloudflare`: starts
//! the KV REST emulator unless `KV_BENCH_CF_URL` is set)

use std::process::ExitCode;

mod alloc;
mod cloudflare;
mod http;
mod memory;
mod patterns;
mod redis;
mod wrappers;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Prints one result line.
fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name}: {value}");
}

/// The median of a few measurements.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The Redis to benchmark against: `KV_BENCH_REDIS_URL`, or a `redis-server` started on a free
/// loopback port (kept running while the returned guard lives).
fn redis_for_bench() -> (Option<kv_testsuite::servers::RedisServer>, String) {
    match std::env::var("KV_BENCH_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = kv_testsuite::servers::RedisServer::start(&[])
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
        "wrappers" => runtime.block_on(wrappers::run()),
        "patterns" => runtime.block_on(patterns::run()),
        "http" => runtime.block_on(http::run()),
        "cloudflare" => runtime.block_on(cloudflare::run()),
        _ => {
            eprintln!("usage: kv-bench memory|redis|wrappers|patterns|http|cloudflare");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
