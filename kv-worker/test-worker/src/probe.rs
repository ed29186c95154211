//! Single operations on the Durable Object store, one per request, for the host's tests: many
//! concurrent requests, each a Worker invocation of its own, racing on one key; and data read
//! back after the emulator restarted.
//!
//! - `POST …/probe/put/{key}` writes the body; `GET …/probe/get/{key}` reads it (404 when
//!   absent);
//! - `POST …/probe/incr/{key}` adds one and answers the new value;
//! - `GET …/probe/version/{key}` answers the entry's version;
//! - `POST …/probe/cas/{key}/{version}` writes the body only if the entry still has that
//!   version: 200 when it did, 409 when the condition failed.

use kvkit_core::{CounterOptions, Error, KvStore, PutOptions, Version};
use kvkit_durable::DurableKvStore;
use worker::{Method, Request, Response, Result};

fn failed(e: &Error) -> Result<Response> {
    Response::error(e.to_string(), 500)
}

/// Serves the operation `rest` names (the path after `probe/`).
pub(crate) async fn serve(
    mut req: Request,
    store: &DurableKvStore,
    rest: &[&str],
) -> Result<Response> {
    match (req.method(), rest) {
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
