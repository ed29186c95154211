//! The benchmark's Worker side: the same operations (a put, a get and an increment, in turn)
//! through `DurableKvStore` and by hand on the object's storage, one request to the object per
//! operation either way, timed in the same invocation.
//!
//! The object is `BenchShard`: the store's `Shard`, which also counts the store's requests it
//! serves (`GET /stats`) and the rows its table holds, expired ones not yet reclaimed included
//! (`GET /rows`, for the test of the alarm), and serves the hand-written operations
//! (`/direct/{op}/{key}`: one SQL statement each, on a table of its own, with no expiry,
//! metadata or version), the smallest Durable Object a user would write for them.

use std::cell::Cell;

use kvkit_core::{CounterOptions, KvStore, PutOptions};
use kvkit_durable::{DurableKvStore, Shard};
use serde_json::json;
// The code `#[durable_object]` generates names `wasm_bindgen`.
use worker::wasm_bindgen;
use worker::{
    Date, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage,
    SqlStorageValue, State, Stub, durable_object,
};

/// Rounds each way, alternated, so that a drift of the machine's speed hits both alike.
const ROUNDS: u32 = 4;

/// The benchmark's object: the store's shard, counted, beside hand-written operations.
#[durable_object(alarm)]
pub struct BenchShard {
    shard: Shard,
    sql: SqlStorage,
    served: Cell<u64>,
}

impl DurableObject for BenchShard {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(e) = sql.exec(
            "CREATE TABLE IF NOT EXISTS bench_direct \
             (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
            None,
        ) {
            // The direct operations then fail, and the benchmark with them.
            worker::console_error!("bench: creating the table failed: {e}");
        }
        Self {
            shard: Shard::new(state, env),
            sql,
            served: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["stats"] => Response::ok(self.served.get().to_string()),
            ["rows"] => {
                let rows = self
                    .sql
                    .exec("SELECT count(*) FROM kvkit_entries", None)?
                    .raw()
                    .collect::<Result<Vec<_>>>()?;
                match rows.first().and_then(|row| row.first()) {
                    Some(SqlStorageValue::Integer(n)) => Response::ok(n.to_string()),
                    _ => Response::error("no count", 500),
                }
            }
            ["direct", op, key] => {
                let body = req.bytes().await?;
                self.direct(op, key, body)
            }
            _ => {
                self.served.set(self.served.get() + 1);
                self.shard.fetch(req).await
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.shard.alarm().await
    }
}

impl BenchShard {
    /// One hand-written operation: one SQL statement.
    fn direct(&self, op: &str, key: &str, body: Vec<u8>) -> Result<Response> {
        let key = SqlStorageValue::Blob(key.as_bytes().to_vec());
        match op {
            "put" => {
                self.sql.exec(
                    "INSERT INTO bench_direct (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    vec![key, SqlStorageValue::Blob(body)],
                )?;
                Response::empty()
            }
            "get" => {
                let rows = self
                    .sql
                    .exec("SELECT value FROM bench_direct WHERE key = ?1", vec![key])?
                    .raw()
                    .collect::<Result<Vec<_>>>()?;
                match rows.first().and_then(|row| row.first()) {
                    Some(SqlStorageValue::Blob(value)) => Response::from_bytes(value.clone()),
                    _ => Response::error("absent", 404),
                }
            }
            "incr" => {
                let rows = self
                    .sql
                    .exec(
                        "INSERT INTO bench_direct (key, value) VALUES (?1, 1) \
                         ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                        vec![key],
                    )?
                    .raw()
                    .collect::<Result<Vec<_>>>()?;
                match rows.first().and_then(|row| row.first()) {
                    Some(SqlStorageValue::Integer(n)) => Response::ok(n.to_string()),
                    _ => Response::error("no counter", 500),
                }
            }
            _ => Response::error("no such operation", 404),
        }
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// How many store requests the object has served.
async fn served(stub: &Stub) -> Result<u64> {
    let mut response = stub.fetch_with_str("http://bench/stats").await?;
    response
        .text()
        .await?
        .parse()
        .map_err(|_| worker::Error::RustError("a request count".into()))
}

/// `ops` operations through the store.
async fn through_store(store: &DurableKvStore, ops: u32) -> Result<()> {
    let fail = |e: kvkit_core::Error| worker::Error::RustError(e.to_string());
    for i in 0..ops {
        let key = format!("k{}", i % 64);
        match i % 3 {
            0 => store
                .put(&key, "value".into(), PutOptions::new())
                .await
                .map_err(fail)?,
            1 => drop(store.get(&key).await.map_err(fail)?),
            _ => drop(
                store
                    .increment("counter", 1, CounterOptions::new())
                    .await
                    .map_err(fail)?,
            ),
        }
    }
    Ok(())
}

/// The same `ops` operations, by hand on the object's storage.
async fn by_hand(stub: &Stub, ops: u32) -> Result<()> {
    for i in 0..ops {
        let (method, url, body) = match i % 3 {
            0 => (
                Method::Post,
                format!("http://bench/direct/put/k{}", i % 64),
                Some("value"),
            ),
            1 => (
                Method::Get,
                format!("http://bench/direct/get/k{}", i % 64),
                None,
            ),
            _ => (
                Method::Post,
                "http://bench/direct/incr/counter".to_owned(),
                None,
            ),
        };
        let mut init = RequestInit::new();
        init.with_method(method).with_body(body.map(Into::into));
        let mut response = stub
            .fetch_with_request(Request::new_with_init(&url, &init)?)
            .await?;
        if response.status_code() >= 500 {
            return Err(worker::Error::RustError(format!(
                "a direct operation failed with {}",
                response.status_code()
            )));
        }
        // The answer is read, as the store reads its replies: a get's value, a counter.
        drop(response.bytes().await?);
    }
    Ok(())
}

/// Runs `ops` operations each way and answers
/// `{"ops", "store_ms", "direct_ms", "store_requests"}`.
pub(crate) async fn run(env: &Env, ops: u32) -> Result<Response> {
    let store = DurableKvStore::builder(env, "BENCH")
        .and_then(|b| b.name("bench").build())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let stub = env.durable_object("BENCH")?.get_by_name("bench/0")?;
    let per_round = ops.div_ceil(ROUNDS);
    let before = served(&stub).await?;
    let (mut store_ms, mut direct_ms) = (0, 0);
    for _ in 0..ROUNDS {
        let started = now_ms();
        through_store(&store, per_round).await?;
        store_ms += now_ms() - started;
        let started = now_ms();
        by_hand(&stub, per_round).await?;
        direct_ms += now_ms() - started;
    }
    let store_requests = served(&stub).await? - before;
    Response::from_json(&json!({
        "ops": per_round * ROUNDS,
        "store_ms": store_ms,
        "direct_ms": direct_ms,
        "store_requests": store_requests,
    }))
}
