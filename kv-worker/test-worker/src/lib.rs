//! A Rust Worker that runs `kvkit`'s conformance and pattern cases inside workerd, against the KV
//! namespace bound as `KV`, through `kvkit_worker::WorkerKvStore`.
//!
//! Built for `wasm32-unknown-unknown` with `worker-build --release` (`cargo xtask worker` does it
//! with the tools from the registries), and run by `kv-worker/tests/in_workerd.rs` through the
//! Cloudflare emulator. It answers:
//!
//! - `GET …/cases`: the names of the cases, `{"conformance": [...], "patterns": [...]}`;
//! - `GET …/run/{store}/{suite}/{case}`: runs one case on `kv` (the binding), `durable` (a
//!   `kvkit_durable::DurableKvStore` over four objects of the Durable Object namespace bound as
//!   `KVKIT`, whose class `KvShard` this Worker exports with `kvkit_durable::durable_object!`;
//!   objects of its own for each case) or
//!   `memory` (a `MemoryStore` behind `Namespaced` and `Observed`, fresh for the request, which
//!   shows the memory store and those wrappers working inside a Worker), `{"case": …, "outcome":
//!   "passed"}` or `{"outcome": "skipped", "reason": …}`. A failing case panics: the panic
//!   message goes to the console, the request fails, and the next request starts from a fresh
//!   instance.
//! - `…/probe/…`: single operations on the Durable Object store, for the host's tests of
//!   concurrency and persistence (`probe.rs`).
//! - `POST …/bench/{ops}`: the same operations through the store and by hand on the object's
//!   storage, timed, for the benchmark (`bench.rs`).

#[cfg(target_arch = "wasm32")]
mod bench;
#[cfg(target_arch = "wasm32")]
mod probe;

#[cfg(target_arch = "wasm32")]
mod run {
    use kvkit_durable::DurableKvStore;
    use kvkit_layers::Layered;
    use kvkit_memory::MemoryStore;
    use kvkit_testsuite::{Case, Harness};
    use kvkit_worker::WorkerKvStore;
    use serde_json::json;
    use worker::{Context, Env, Request, Response, Result, event};

    fn suite(name: &str) -> Option<Vec<Case>> {
        match name {
            "conformance" => Some(kvkit_testsuite::cases::all()),
            "patterns" => Some(kvkit_testsuite::patterns::all()),
            _ => None,
        }
    }

    fn names(cases: Vec<Case>) -> Vec<&'static str> {
        cases.into_iter().map(|c| c.name).collect()
    }

    #[event(start)]
    fn start() {
        std::panic::set_hook(Box::new(|info| {
            worker::console_error!("kv-worker-test: {info}");
        }));
    }

    kvkit_durable::durable_object!(KvShard);

    fn kv_error(e: impl std::fmt::Display) -> worker::Error {
        worker::Error::RustError(e.to_string())
    }

    /// A Durable Object store over four objects (so that listings merge) of their own, named
    /// after `name`: each case gets objects of its own, as it gets a fresh memory store, so
    /// that cases sharing a fixed key (a session id) cannot meet.
    fn durable_store(env: &Env, name: &str) -> Result<DurableKvStore> {
        DurableKvStore::builder(env, "KVKIT")
            .and_then(|b| b.name(name).shards(4).build())
            .map_err(kv_error)
    }

    #[event(fetch)]
    async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
        let url = req.url()?;
        let path: Vec<&str> = url
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        if let Some(at) = path.iter().position(|segment| *segment == "probe") {
            return crate::probe::serve(req, &env, &durable_store(&env, "probe")?, &path[at + 1..])
                .await;
        }
        match path.as_slice() {
            [.., "bench", ops] => {
                let Ok(ops) = ops.parse::<u32>() else {
                    return Response::error("the operation count is a number", 400);
                };
                crate::bench::run(&env, ops).await
            }
            [.., "cases"] => Response::from_json(&json!({
                "conformance": names(kvkit_testsuite::cases::all()),
                "patterns": names(kvkit_testsuite::patterns::all()),
            })),
            [.., "run", store_name, suite_name, case_name] => {
                let Some(case) = suite(suite_name)
                    .and_then(|cases| cases.into_iter().find(|c| c.name == *case_name))
                else {
                    return Response::error(format!("no case {suite_name}/{case_name}"), 404);
                };
                let harness = match *store_name {
                    "kv" => {
                        Harness::real_time(WorkerKvStore::from_env(&env, "KV").map_err(kv_error)?)
                    }
                    "durable" => {
                        Harness::real_time(durable_store(&env, &format!("suite/{case_name}"))?)
                    }
                    "memory" => {
                        Harness::real_time(MemoryStore::new().namespaced("worker/").observed())
                    }
                    _ => return Response::error(format!("no store {store_name}"), 404),
                };
                (case.run)(&harness).await;
                Response::from_json(&match kvkit_testsuite::take_skip(case.name) {
                    Some(reason) => {
                        json!({"case": case.name, "outcome": "skipped", "reason": reason})
                    }
                    None => json!({"case": case.name, "outcome": "passed"}),
                })
            }
            _ => Response::error("not found", 404),
        }
    }
}
