//! A Rust Worker that runs `kvkit`'s conformance and pattern cases inside workerd, against the KV
//! namespace bound as `KV`, through `kvkit_worker::WorkerKvStore`.
//!
//! Built for `wasm32-unknown-unknown` with `worker-build --release` (`cargo xtask worker` does it
//! with the tools from the registries), and run by `kv-worker/tests/in_workerd.rs` through the
//! Cloudflare emulator. It answers:
//!
//! - `GET …/cases`: the names of the cases, `{"conformance": [...], "patterns": [...]}`;
//! - `GET …/run/{store}/{suite}/{case}`: runs one case on `kv` (the binding) or `memory` (a
//!   `MemoryStore` behind `Namespaced` and `Observed`, fresh for the request, which shows the memory
//!   store and those wrappers working inside a Worker), `{"case": …, "outcome": "passed"}` or
//!   `{"outcome": "skipped", "reason": …}`. A failing case panics: the panic message goes to the
//!   console, the request fails, and the next request starts from a fresh instance.

#[cfg(target_arch = "wasm32")]
mod run {
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

    #[event(fetch)]
    async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
        let url = req.url()?;
        let path: Vec<&str> = url
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        match path.as_slice() {
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
                    "kv" => Harness::real_time(
                        WorkerKvStore::from_env(&env, "KV")
                            .map_err(|e| worker::Error::RustError(e.to_string()))?,
                    ),
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
