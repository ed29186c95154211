//! A tour of the `KvStore` contract on the embedded memory backend: the seed's basic operations,
//! TTLs, metadata, ordered prefix listing, an atomic counter and put-if-absent.
//!
//! Run it with `cargo run -p kvkit --example quickstart`.

use std::time::Duration;

use futures_util::TryStreamExt;
use kvkit::memory::MemoryStore;
use kvkit::{CounterOptions, KvStore, KvStoreExt, ListOptions, PutOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
}

#[tokio::main]
async fn main() -> kvkit::Result<()> {
    let store = MemoryStore::new();
    let caps = store.capabilities();
    println!(
        "backend: {} (keys up to {} bytes, TTL at least {:?})",
        caps.backend, caps.max_key_bytes, caps.min_ttl
    );

    // Text and JSON values, as the seed's getValue/setJSON helpers.
    store
        .put_text("greeting", "hello, world", PutOptions::new())
        .await?;
    for (id, name, price_cents) in [(1, "kettle", 2_999), (2, "teapot", 1_850), (10, "mug", 650)] {
        let product = Product {
            id,
            name: name.into(),
            price_cents,
        };
        let metadata = serde_json::json!({ "category": "kitchen" });
        store
            .put_json(
                &format!("product:{id:04}"),
                &product,
                PutOptions::new().metadata(metadata),
            )
            .await?;
    }
    println!("greeting: {:?}", store.get_text("greeting").await?);
    let kettle: Option<Product> = store.get_json("product:0001").await?;
    println!("product:0001 -> {kettle:?}");

    // A session that expires.
    store
        .put_with_ttl("session:abc", "user-42", Duration::from_secs(1800))
        .await?;
    let session = store.get_with_metadata("session:abc").await?;
    if let Some(at) = session.and_then(|e| e.expiration) {
        println!("session:abc expires at {}", kvkit::backend::rfc3339(at));
    }

    // Ordered listing under a prefix, one page and then every key as a stream.
    let page = store
        .list(ListOptions::new().prefix("product:").limit(2))
        .await?;
    for key in &page.keys {
        println!("listed {} (metadata {:?})", key.name, key.metadata);
    }
    println!("complete after the first page? {}", page.list_complete);
    let all: Vec<_> = store.list_stream("product:").try_collect().await?;
    println!("{} products in all", all.len());

    // An exact counter, stored as a decimal string like the seed's rate limiter counts.
    let window = CounterOptions::new().ttl(Duration::from_secs(60));
    for _ in 0..3 {
        store.increment("ratelimit:127.0.0.1:0", 1, window).await?;
    }
    println!(
        "counter: {:?}",
        store.get_text("ratelimit:127.0.0.1:0").await?
    );

    // Put-if-absent: only the first writer wins.
    let first = store
        .put_if_absent("lock:report", "worker-1".into(), PutOptions::new())
        .await?;
    let second = store
        .put_if_absent("lock:report", "worker-2".into(), PutOptions::new())
        .await?;
    println!("lock taken by first: {first}, by second: {second}");

    // Bad input is a typed error, never a panic.
    if let Err(err) = store.put("", "x".into(), PutOptions::new()).await {
        println!("empty key refused: {err}");
    }
    Ok(())
}
