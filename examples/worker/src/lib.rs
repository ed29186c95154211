//! The TypeScript seed's product endpoint and rate-limit middleware, as a Rust Worker on `kvkit`.
//!
//! - `GET /products/{id}`: the product from the D1 database bound as `DB`, read through the
//!   cache pattern (`cache:product:{id}`, fresh for 5 minutes, then served stale for 1 more while
//!   one background refresh runs in the invocation's `wait_until`), as `{"data": …}` with an
//!   `X-Cache` header (`HIT`, `STALE` or `MISS`). An unknown id is a 404, cached for a minute.
//! - Every request first passes the seed's rate limit: 100 requests a minute per
//!   `CF-Connecting-IP`, with `X-RateLimit-Remaining` and `X-RateLimit-Reset`, and a 429
//!   `{"error": "Too many requests"}` past it. The limit is exact: its counters live in Durable
//!   Objects (`kvkit_durable::DurableKvStore` over the namespace bound as `KVKIT`, 16 objects,
//!   each client's counters in one of them), so however many requests arrive at once, exactly
//!   100 a minute are admitted. On Workers KV, concurrent requests would read the same count and
//!   all be admitted.
//!
//! Each store does what it is good at: the cache stays on Workers KV (the namespace bound as
//! `KV`: reads served from the edge, a stale entry harmless), the counters go to the objects.
//! The database is created and seeded on first use, so the example runs as it is in `wrangler
//! dev` or Miniflare (`wrangler.toml` beside this crate has the bindings). Build it with `cargo
//! xtask worker`, or `worker-build --release` in this directory.

#[cfg(target_arch = "wasm32")]
mod app {
    use std::time::Duration;

    use kvkit_durable::DurableKvStore;
    use kvkit_patterns::{Cache, CacheOptions, RateLimiter};
    use kvkit_worker::{WaitUntil, WorkerKvStore};
    use serde_json::{Value, json};
    use worker::{Context, D1Database, Env, Request, Response, Result, event};

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS products \
         (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL)";
    const SEED: &str = "INSERT OR IGNORE INTO products (id, name, price_cents) VALUES \
         (1, 'Widget', 1999), (2, 'Gadget', 4999), (3, 'Gizmo', 999)";

    // The Durable Object class the rate limiter's store runs on, bound as `KVKIT`.
    kvkit_durable::durable_object!(KvShard);

    /// A rate-limit counter's key, `ratelimit:{client}:{window}`, without its window: all of one
    /// client's counters go to one object.
    fn client_of(key: &str) -> &str {
        key.rsplit_once(':').map_or(key, |(client, _window)| client)
    }

    fn kv_error(e: impl std::fmt::Display) -> worker::Error {
        worker::Error::RustError(e.to_string())
    }

    /// The product `id`, from D1 (created and seeded when missing).
    async fn load_product(db: D1Database, id: u64) -> std::result::Result<Option<Value>, String> {
        db.exec(SCHEMA).await.map_err(|e| e.to_string())?;
        db.exec(SEED).await.map_err(|e| e.to_string())?;
        db.prepare("SELECT * FROM products WHERE id = ?1")
            .bind(&[(id as f64).into()])
            .map_err(|e| e.to_string())?
            .first::<Value>(None)
            .await
            .map_err(|e| e.to_string())
    }

    #[event(fetch)]
    async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
        let store = WorkerKvStore::from_env(&env, "KV").map_err(kv_error)?;
        let counters = DurableKvStore::builder(&env, "KVKIT")
            .and_then(|b| b.name("ratelimit").shards(16).shard_key(client_of).build())
            .map_err(kv_error)?;

        // The seed's middleware: 100 requests a minute per client address, exactly.
        let ip = req
            .headers()
            .get("CF-Connecting-IP")?
            .unwrap_or_else(|| "unknown".to_owned());
        let limiter = RateLimiter::fixed_window(counters, 100, Duration::from_secs(60));
        let limit = limiter.check(&ip).await.map_err(kv_error)?;
        let mut response = if limit.allowed {
            route(&req, &env, ctx, store).await?
        } else {
            Response::from_json(&json!({"error": "Too many requests"}))?.with_status(429)
        };
        let headers = response.headers_mut();
        headers.set("X-RateLimit-Remaining", &limit.remaining.to_string())?;
        let reset_at = kvkit_core::backend::unix_secs_ceil(limit.reset_at);
        headers.set("X-RateLimit-Reset", &reset_at.to_string())?;
        Ok(response)
    }

    async fn route(
        req: &Request,
        env: &Env,
        ctx: Context,
        store: WorkerKvStore,
    ) -> Result<Response> {
        let path = req.path();
        // `/products/{id}`, wherever the Worker is mounted.
        let Some((_, id)) = path.rsplit_once("/products/") else {
            return Response::error("Not Found", 404);
        };
        let Ok(id) = id.parse::<u64>() else {
            return Response::from_json(&json!({"error": "product ids are numbers"}))
                .map(|r| r.with_status(400));
        };
        let db = env.d1("DB")?;
        let cache = Cache::builder(store).spawner(WaitUntil::new(ctx)).build();
        let options = CacheOptions::new(Duration::from_secs(300))
            .stale_while_revalidate(Duration::from_secs(60))
            .negative_ttl(Duration::from_secs(60));
        let product = cache
            .get_or_fetch_optional(&format!("product:{id}"), &options, move || {
                load_product(db, id)
            })
            .await
            .map_err(kv_error)?;
        let status = product.status.as_str();
        let mut response = match product.value {
            Some(data) => Response::from_json(&json!({ "data": data }))?,
            None => Response::from_json(&json!({"error": "no such product"}))?.with_status(404),
        };
        response.headers_mut().set("X-Cache", status)?;
        Ok(response)
    }
}
