//! Two processes sharing one database file stay exact: their increments all count, a rate
//! limiter they share admits exactly its limit, each key claimed with put-if-absent has one
//! winner, and no compare-and-set update is lost.
//!
//! The parent re-runs this test binary twice as children (the ignored test `process_child`,
//! told its database and task by environment variables). Each child opens the store, prints
//! `@ready`, waits for a line on its standard input so that both start together, does its share
//! of the work from several tasks at once, and prints what it saw.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::TempDir;
use kvkit_core::{CounterOptions, Error, KvStore, ManualClock, PutOptions};
use kvkit_patterns::RateLimiter;
use kvkit_sqlite::SqliteStore;

const CHILD_DB: &str = "KVKIT_SQLITE_PROCESS_DB";
const CHILD_TASK: &str = "KVKIT_SQLITE_PROCESS_TASK";
const TASKS: usize = 10;
const INCREMENTS_PER_TASK: usize = 50;
// Each child asks 500 times, fewer than the limit: only the two together can reach it, so the
// limit holds only if they count in one place.
const LIMIT: u64 = 600;
const REQUESTS_PER_TASK: usize = 50;
const CLAIMS: usize = 100;
const CAS_PER_TASK: usize = 20;

/// The child: increments the shared counter, asks the shared rate limiter, claims keys or
/// increments a value by compare-and-set, from `TASKS` tasks, then prints `@done <n>` (for the
/// limiter, how many requests it admitted; for claims, how many keys it won).
#[test]
#[ignore = "a child process of the two-process tests, run by them"]
fn process_child() {
    let path = std::env::var(CHILD_DB).expect("run by a two-process test");
    let task = std::env::var(CHILD_TASK).expect("run by a two-process test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // Both processes start their manual clocks at the same instant, so they agree on the
        // limiter's window whenever they run.
        let clock = ManualClock::new();
        let store = SqliteStore::builder()
            .path(&path)
            .clock(clock.clone())
            .open()
            .await
            .expect("the store");
        println!("@ready");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).expect("the go line");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, clock, task) = (store.clone(), clock.clone(), task.clone());
                tokio::spawn(async move {
                    match task.as_str() {
                        "increment" => {
                            for _ in 0..INCREMENTS_PER_TASK {
                                store
                                    .increment("counter", 1, CounterOptions::new())
                                    .await
                                    .expect("increment");
                            }
                            INCREMENTS_PER_TASK as u64
                        }
                        "claim" => {
                            // Every task of both processes tries to claim every key once.
                            let mut won = 0;
                            for i in 0..CLAIMS {
                                let key = format!("claim:{i}");
                                let value = "mine".into();
                                if store
                                    .put_if_absent(&key, value, PutOptions::new())
                                    .await
                                    .expect("put_if_absent")
                                {
                                    won += 1;
                                }
                            }
                            won
                        }
                        "cas" => {
                            // Read, add one, write back only if unchanged; retry when another
                            // writer got there first.
                            for _ in 0..CAS_PER_TASK {
                                loop {
                                    let entry = store.get_with_metadata("cas").await.expect("get");
                                    let (n, condition) = match entry {
                                        Some(entry) => {
                                            let n: u64 = std::str::from_utf8(&entry.value)
                                                .expect("text")
                                                .parse()
                                                .expect("a number");
                                            (
                                                n,
                                                PutOptions::new()
                                                    .if_version(entry.version.expect("versioned")),
                                            )
                                        }
                                        None => (0, PutOptions::new().if_absent()),
                                    };
                                    match store
                                        .put("cas", (n + 1).to_string().into(), condition)
                                        .await
                                    {
                                        Ok(()) => break,
                                        Err(Error::ConditionFailed { .. }) => continue,
                                        Err(e) => panic!("cas: {e}"),
                                    }
                                }
                            }
                            CAS_PER_TASK as u64
                        }
                        _ => {
                            let limiter =
                                RateLimiter::builder(store, LIMIT, Duration::from_secs(3600))
                                    .clock(clock)
                                    .build();
                            let mut admitted = 0;
                            for _ in 0..REQUESTS_PER_TASK {
                                if limiter.check("client").await.expect("check").allowed {
                                    admitted += 1;
                                }
                            }
                            admitted
                        }
                    }
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("a task");
        }
        println!("@done {total}");
    });
}

/// A child and its output.
struct Worker {
    child: Child,
    output: BufReader<ChildStdout>,
}

fn start(path: &Path, task: &str) -> Worker {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "process_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, path)
        .env(CHILD_TASK, task)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("a child");
    let output = BufReader::new(child.stdout.take().expect("piped"));
    Worker { child, output }
}

/// Reads the child's output up to the line holding `word` (the test harness may print the
/// test's name before it on the same line); returns what follows the word.
fn line_after(worker: &mut Worker, word: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let read = worker
            .output
            .read_line(&mut line)
            .expect("the child's output");
        assert!(read > 0, "the child ended early");
        if let Some((_, rest)) = line.split_once(word) {
            return rest.trim().to_owned();
        }
    }
}

/// Runs two children on one database together; returns what each printed after `done`.
fn run_two(path: &Path, task: &str) -> Vec<u64> {
    let mut children = [start(path, task), start(path, task)];
    for worker in &mut children {
        line_after(worker, "@ready");
    }
    for worker in &mut children {
        writeln!(worker.child.stdin.as_mut().expect("piped")).expect("go");
    }
    children
        .iter_mut()
        .map(|worker| {
            let done = line_after(worker, "@done").parse().expect("a number");
            assert!(worker.child.wait().expect("the child's end").success());
            done
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_processes_all_count() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.db");
    // Set the file up first, so both children open a database that exists.
    drop(
        SqliteStore::builder()
            .path(&path)
            .open()
            .await
            .expect("create"),
    );
    let child_path = path.clone();
    let done = tokio::task::spawn_blocking(move || run_two(&child_path, "increment"))
        .await
        .expect("the children");
    assert_eq!(done, [500, 500]);
    let store = SqliteStore::builder()
        .path(&path)
        .open()
        .await
        .expect("reopen");
    let counter = store.get("counter").await.expect("get");
    println!("two processes, 2 x 500 increments: counter = {counter:?}");
    assert_eq!(counter.as_deref(), Some(&b"1000"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limiter_shared_by_two_processes_admits_exactly_its_limit() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.db");
    let child_path = path.clone();
    let admitted = tokio::task::spawn_blocking(move || run_two(&child_path, "ratelimit"))
        .await
        .expect("the children");
    println!("two processes, 2 x 500 requests, limit {LIMIT}: admitted {admitted:?}");
    assert_eq!(admitted.iter().sum::<u64>(), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_if_absent_from_two_processes_has_one_winner_per_key() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.db");
    let child_path = path.clone();
    let won = tokio::task::spawn_blocking(move || run_two(&child_path, "claim"))
        .await
        .expect("the children");
    println!("two processes x {TASKS} tasks claiming {CLAIMS} keys: won {won:?}");
    assert_eq!(won.iter().sum::<u64>(), CLAIMS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_from_two_processes_loses_no_update() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.db");
    let child_path = path.clone();
    let done = tokio::task::spawn_blocking(move || run_two(&child_path, "cas"))
        .await
        .expect("the children");
    let store = SqliteStore::builder()
        .path(&path)
        .open()
        .await
        .expect("reopen");
    let value = store.get("cas").await.expect("get");
    println!("two processes, {done:?} compare-and-set increments: value {value:?}");
    let expected = (2 * TASKS * CAS_PER_TASK).to_string();
    assert_eq!(value.as_deref(), Some(expected.as_bytes()));
}
