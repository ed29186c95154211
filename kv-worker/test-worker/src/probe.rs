//! Single operations on the Durable Object store, one per request, for the host's tests: many
//! concurrent requests, each a Worker invocation of its own, racing on one key; and data read
//! back after the emulator restarted.
//!
//! - `POST …/probe/put/{key}` writes the body; `GET …/probe/get/{key}` reads it (404 when
//!   absent);
//! - `POST …/probe/incr/{key}` adds one and answers the new value;
//! - `GET …/probe/version/{key}` answers the entry's version;
//! - `POST …/probe/cas/{key}/{version}` writes the body only if the entry still has that
//!   version: 200 when it did, 409 when the condition failed;
//! - `POST …/probe/expiring/{n}` writes `n` keys that expire in 300 ms to the object
//!   `reclaim/0` of the benchmark's namespace (`BENCH`), and `GET …/probe/rows` answers how many
//!   rows that object's table holds, expired ones included: the alarm's work, seen from outside.

use std::time::Duration;

use kvkit_core::{CounterOptions, Error, KvStore, PutItem, PutOptions, Version};
use kvkit_durable::DurableKvStore;
use worker::{Env, Method, Request, Response, Result};

fn failed(e: &Error) -> Result<Response> {
    Response::error(e.to_string(), 500)
}

/// The object whose alarm the reclamation probe watches.
const RECLAIM_OBJECT: &str = "reclaim/0";

/// Serves the operation `rest` names (the path after `probe/`).
pub(crate) async fn serve(
    mut req: Request,
    env: &Env,
    store: &DurableKvStore,
    rest: &[&str],
) -> Result<Response> {
    match (req.method(), rest) {
        (Method::Post, ["expiring", n]) => {
            let Ok(n) = n.parse::<usize>() else {
                return Response::error("a number of keys", 400);
            };
            let reclaimed = DurableKvStore::builder(env, "BENCH")
                .and_then(|b| b.name("reclaim").build())
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            let soon = PutOptions::new().ttl(Duration::from_millis(300));
            let items = (0..n)
                .map(|i| PutItem::new(format!("expiring/{i}"), "x").options(soon.clone()))
                .collect();
            match reclaimed.put_many(items).await {
                Ok(()) => rows(env).await,
                Err(e) => failed(&e),
            }
        }
        (Method::Get, ["rows"]) => rows(env).await,
        (Method::Post, ["put", key]) => {
            let body = req.bytes().await?;
            match store.put(key, body.into(), PutOptions::new()).await {
                Ok(()) => Response::empty().map(|r| r.with_status(204)),
                Err(e) => failed(&e),
            }
        }
        (Method::Get, ["get", key]) => match store.get(key).await {
            Ok(Some(value)) => Response::from_bytes(value.to_vec()),
            Ok(None) => Response::error("absent", 404),
            Err(e) => failed(&e),
        },
        (Method::Post, ["incr", key]) => match store.increment(key, 1, CounterOptions::new()).await
        {
            Ok(value) => Response::ok(value.to_string()),
            Err(e) => failed(&e),
        },
        (Method::Get, ["version", key]) => match store.get_with_metadata(key).await {
            Ok(Some(entry)) => match entry.version {
                Some(version) => Response::ok(version.to_string()),
                None => Response::error("an entry without a version", 500),
            },
            Ok(None) => Response::error("absent", 404),
            Err(e) => failed(&e),
        },
        (Method::Post, ["cas", key, version]) => {
            let Ok(version) = version.parse::<u64>() else {
                return Response::error("versions of this store are numbers", 400);
            };
            let body = req.bytes().await?;
            let options = PutOptions::new().if_version(Version::from_u64(version));
            match store.put(key, body.into(), options).await {
                Ok(()) => Response::ok("won"),
                Err(Error::ConditionFailed { .. }) => Response::error("lost", 409),
                Err(e) => failed(&e),
            }
        }
        _ => Response::error("no such operation", 404),
    }
}

/// How many rows the reclamation probe's object holds.
async fn rows(env: &Env) -> Result<Response> {
    let stub = env.durable_object("BENCH")?.get_by_name(RECLAIM_OBJECT)?;
    let mut response = stub.fetch_with_str("http://bench/rows").await?;
    Response::ok(response.text().await?)
}
