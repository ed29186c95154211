//! Acknowledged writes survive a process killed at random moments.
//!
//! The parent re-runs this test binary as a child (the ignored test `crash_child`, selected by
//! an environment variable naming the database), which writes keys from several tasks and
//! prints each key once its write is acknowledged. The parent SIGKILLs the child at a random
//! moment, reopens the database, and checks that every acknowledged key is there with its value
//! and that `PRAGMA integrity_check` finds the file intact. Rounds alternate the two
//! durabilities, since both promise to survive a process crash.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TempDir;
use kvkit_core::{KvStore, PutItem, PutOptions};
use kvkit_sqlite::{Durability, SqliteStore};

const CHILD_DB: &str = "KVKIT_SQLITE_CRASH_DB";
const CHILD_DURABILITY: &str = "KVKIT_SQLITE_CRASH_DURABILITY";
const ROUNDS: u64 = 24;
const WRITERS: usize = 8;

fn value_of(key: &str) -> String {
    format!("value of {key}")
}

/// The child: writes until it is killed, printing `@ack <key>` for each acknowledged key.
#[test]
#[ignore = "the child process of the crash test, run by it"]
fn crash_child() {
    let path = std::env::var(CHILD_DB).expect("run by crash_test");
    let durability: Durability = std::env::var(CHILD_DURABILITY)
        .expect("run by crash_test")
        .parse()
        .expect("a durability");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = SqliteStore::builder()
            .path(&path)
            .durability(durability)
            .open()
            .await
            .expect("the store");
        let stamp = std::process::id();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("k:{stamp}:{w}:{i}");
                        if i % 5 == 4 {
                            // A batch: both keys are acknowledged together.
                            let second = format!("{key}:b");
                            let items = vec![
                                PutItem::new(key.clone(), value_of(&key)),
                                PutItem::new(second.clone(), value_of(&second)),
                            ];
                            store.put_many(items).await.expect("put_many");
                            report(&[&key, &second]);
                        } else {
                            let value = value_of(&key).into();
                            store
                                .put(&key, value, PutOptions::new())
                                .await
                                .expect("put");
                            report(&[&key]);
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer");
        }
    });
}

fn report(keys: &[&str]) {
    let mut out = std::io::stdout().lock();
    for key in keys {
        writeln!(out, "@ack {key}").expect("stdout");
    }
    out.flush().expect("stdout");
}

/// A random number below `n`.
fn random_below(n: u64) -> u64 {
    RandomState::new().hash_one(std::time::Instant::now()) % n
}

/// Runs one child until a random moment, kills it, and returns the keys it acknowledged.
fn crash_once(path: &Path, durability: Durability) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, path)
        .env(CHILD_DURABILITY, format!("{durability:?}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child");
    let stdout = child.stdout.take().expect("piped");
    let (first_tx, first_ack) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut off by the kill has no newline: it is not an acknowledgement.
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            // The test harness prints the test's name before the first line.
            let acked_key = line.split_once("@ack ").map(|(_, rest)| rest);
            if let Some(key) = acked_key.and_then(|l| l.strip_suffix('\n')) {
                if acked.is_empty() {
                    let _ = first_tx.send(());
                }
                acked.push(key.to_owned());
            }
            line.clear();
        }
        acked
    });
    // Somewhere between the first acknowledgement and well into the writing.
    first_ack
        .recv_timeout(Duration::from_secs(30))
        .expect("the child acknowledged no write");
    std::thread::sleep(Duration::from_millis(random_below(300)));
    child.kill().expect("SIGKILL");
    child.wait().expect("the child's end");
    reader.join().expect("the reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = TempDir::new();
    let path = dir.path().join("crash.db");
    let (mut acked_total, mut lost_total) = (0, 0);
    for round in 0..ROUNDS {
        let durability = if round % 2 == 0 {
            Durability::Full
        } else {
            Durability::Normal
        };
        let path_for_child = path.clone();
        let acked = tokio::task::spawn_blocking(move || crash_once(&path_for_child, durability))
            .await
            .expect("a round");
        let store = SqliteStore::builder()
            .path(&path)
            .open()
            .await
            .expect("reopen");
        let mut lost = 0;
        for chunk in acked.chunks(100) {
            let values = store.get_many(chunk).await.expect("get_many");
            for (key, value) in chunk.iter().zip(values) {
                if value.as_deref() != Some(value_of(key).as_bytes()) {
                    lost += 1;
                }
            }
        }
        drop(store);
        let check = path.clone();
        let integrity: String = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&check).expect("open");
            conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .expect("integrity_check")
        })
        .await
        .expect("integrity check");
        assert_eq!(integrity, "ok", "round {round}");
        println!(
            "round {round} ({durability:?}): {} acknowledged, {lost} lost, integrity ok",
            acked.len()
        );
        acked_total += acked.len();
        lost_total += lost;
    }
    println!("crash test: {ROUNDS} rounds, {acked_total} acknowledged writes, {lost_total} lost");
    assert_eq!(lost_total, 0);
    assert!(acked_total > 0, "no child ever acknowledged a write");
}
