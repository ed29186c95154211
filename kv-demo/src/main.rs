//! `cargo run -p kv-demo`: the demo service on 127.0.0.1:8787.
//!
//! Settings (environment):
//! - `KV_URL`: the store (default `memory:`; e.g. `redis://127.0.0.1:6379`, or
//!   `cloudflare://ACCOUNT_ID/NAMESPACE_ID` with the token in `CLOUDFLARE_API_TOKEN`), see `kvkit::open`.
//! - `KV_DEMO_ADDR`: where to listen (default `127.0.0.1:8787`).
//! - `KV_DEMO_DB`: the SQLite database (default `kv-demo.sqlite3`, created and seeded if missing).
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
    let url = std::env::var("KV_URL").unwrap_or_else(|_| "memory:".to_owned());
    let addr = std::env::var("KV_DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:8787".to_owned());
    let database = std::env::var("KV_DEMO_DB").unwrap_or_else(|_| "kv-demo.sqlite3".to_owned());
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
