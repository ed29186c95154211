//! `KvSessionStore` against tower-sessions' `SessionStore` contract, on memory (with and without
//! Cloudflare's limits) and on a real Redis.
#![cfg(feature = "tower-sessions")]

use std::sync::Arc;

use kvkit_core::KvStore;
use kvkit_http::KvSessionStore;
use kvkit_memory::MemoryStore;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::SessionStore;

mod support;

fn record(expires_in: Duration) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("cart".to_owned(), json!([1, 2, 3]));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

async fn contract(kv: Arc<dyn KvStore>) {
    let prefix = format!("{}ts:", kvkit_testsuite::Namespace::new().prefix());
    let store = KvSessionStore::new(Arc::clone(&kv)).prefix(&prefix);

    let mut first = record(Duration::hours(2));
    store.create(&mut first).await.expect("create");
    assert_eq!(
        store.load(&first.id).await.expect("load"),
        Some(first.clone())
    );
    let entry = kv
        .get_with_metadata(&format!("{prefix}{}", first.id))
        .await
        .expect("read")
        .expect("stored");
    let expiration =
        kvkit_core::backend::unix_secs_ceil(entry.expiration.expect("expires with the record"));
    let expected = first.expiry_date.unix_timestamp() as u64;
    assert!(
        (expected..=expected + 1).contains(&expiration),
        "{expiration} vs {expected}"
    );

    // A create that meets an existing id draws another one and leaves the other session alone.
    let mut clash = record(Duration::hours(1));
    clash.id = first.id;
    clash.data.insert("who".to_owned(), json!("someone else"));
    store.create(&mut clash).await.expect("create");
    assert_ne!(clash.id, first.id);
    assert_eq!(
        store.load(&first.id).await.expect("load"),
        Some(first.clone())
    );
    assert_eq!(
        store.load(&clash.id).await.expect("load"),
        Some(clash.clone())
    );

    first.data.insert("cart".to_owned(), json!([]));
    store.save(&first).await.expect("save");
    assert_eq!(
        store
            .load(&first.id)
            .await
            .expect("load")
            .expect("live")
            .data["cart"],
        json!([])
    );

    first.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(1);
    store.save(&first).await.expect("save an expired record");
    assert_eq!(
        store.load(&first.id).await.expect("load"),
        None,
        "an expired save deletes"
    );

    store.delete(&clash.id).await.expect("delete");
    assert_eq!(store.load(&clash.id).await.expect("load"), None);
    store.delete(&clash.id).await.expect("delete again");
    assert_eq!(
        store.load(&Id::default()).await.expect("load unknown"),
        None
    );

    kv.put(
        &format!("{prefix}{}", clash.id),
        "not json".into(),
        kvkit_core::PutOptions::new(),
    )
    .await
    .expect("put");
    assert!(matches!(
        store.load(&clash.id).await,
        Err(tower_sessions_core::session_store::Error::Decode(_))
    ));
}

#[tokio::test]
async fn on_memory() {
    contract(Arc::new(MemoryStore::new())).await;
    contract(Arc::new(MemoryStore::builder().cloudflare_limits().build())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let Some(url) = kvkit_test_servers::shared_redis_url() else {
        kvkit_testsuite::skip("tower_sessions on_redis", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let store = kvkit_redis::RedisStore::connect(&url).await.expect("redis");
    contract(Arc::new(store)).await;
}

/// A client library's error with a cause of its own.
#[derive(Debug)]
struct Refused(std::io::Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn errors_keep_their_whole_chain_and_kind() {
    let store = KvSessionStore::new(support::Failing::with(|| {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "os error 111");
        kvkit_core::Error::backend("redis", "GET failed", true, Refused(cause))
    }));
    let mut record = record(Duration::hours(1));
    let id = record.id;
    let expected = "redis: GET failed: connection refused: os error 111 (kind: unavailable)";
    let errors = [
        store.load(&id).await.unwrap_err(),
        store.save(&record).await.unwrap_err(),
        store.delete(&id).await.unwrap_err(),
        store.create(&mut record).await.unwrap_err(),
    ];
    for error in errors {
        let tower_sessions_core::session_store::Error::Backend(text) = &error else {
            panic!("a backend error: {error:?}");
        };
        assert_eq!(text, expected);
        assert!(!text.contains(&id.to_string()), "no session id: {text}");
    }

    let down = KvSessionStore::new(support::Failing::down());
    let error = down.load(&id).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "down: connection refused: refused (kind: unavailable)"
    );
}
