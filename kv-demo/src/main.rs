//! `cargo run -p kv-demo`: the demo service on 127.0.0.1:8787.
//!
//! Settings (environment):
//! - `KV_DEMO_DB`: the product database (default `kv-demo.sqlite3`, created and seeded if missing).
//! - `KV_URL`: the store for the cache, the sessions and the rate limits, see `kvkit::open`. By
//!   default a SQLite file beside the product database (`sqlite:kv-demo.kv.sqlite3` for the
//!   default one), so sessions and rate limits survive a restart; `memory:` forgets them,
//!   `redis://127.0.0.1:6379` shares them between instances, and
//!   `cloudflare://ACCOUNT_ID/NAMESPACE_ID` (token in `CLOUDFLARE_API_TOKEN`) with a Worker.
//! - `KV_DEMO_ADDR`: where to listen (default `127.0.0.1:8787`).
//! - `RUST_LOG`-style level in `KV_DEMO_LOG` (`error`, `warn`, `info` (default), `debug`, `trace`).

use std::process::ExitCode;

use tracing::Level;

#[tokio::main]
async fn main() -> ExitCode {
    let level = std::env::var("KV_DEMO_LOG")
        .ok()
        .and_then(|l| l.parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    tracing_subscriber::fmt().with_max_level(level).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("KV_DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:8787".to_owned());
    let database = std::env::var("KV_DEMO_DB").unwrap_or_else(|_| "kv-demo.sqlite3".to_owned());
    let url = std::env::var("KV_URL").unwrap_or_else(|_| default_store_url(&database));
    let store = kvkit::open(&url).await?;
    let backend = store.capabilities().backend;
    let router = kv_demo::router(kv_demo::Config::new(store, database))?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        "kv-demo on http://{} with the {backend} store; try: curl -i http://{}/products/1",
        listener.local_addr()?,
        listener.local_addr()?
    );
    kv_demo::serve(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}

/// `sqlite:` and a file beside the product database: `kv-demo.sqlite3` → `kv-demo.kv.sqlite3`.
fn default_store_url(database: &str) -> String {
    let database = std::path::Path::new(database);
    let stem = database
        .file_stem()
        .map_or_else(|| "kv-demo".into(), |stem| stem.to_string_lossy());
    let file = database.with_file_name(format!("{stem}.kv.sqlite3"));
    format!("sqlite:{}", file.display())
}

#[cfg(test)]
mod tests {
    use super::default_store_url;

    #[test]
    fn the_default_store_is_a_sqlite_file_beside_the_product_database() {
        assert_eq!(
            default_store_url("kv-demo.sqlite3"),
            "sqlite:kv-demo.kv.sqlite3"
        );
        assert_eq!(
            default_store_url("/var/lib/demo/products.db"),
            "sqlite:/var/lib/demo/products.kv.sqlite3"
        );
    }
}
