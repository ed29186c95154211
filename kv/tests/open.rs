//! `kvkit::open`: every scheme, and clear errors for the ones that cannot work.

use kvkit::{KvStore, OpenError, PutOptions};
use kvkit_test_servers as servers;

#[tokio::test]
async fn memory_urls() {
    for url in ["memory:", "memory://", "MEMORY://"] {
        let store = kvkit::open(url).await.expect("memory store");
        store
            .put("k", "v".into(), PutOptions::new())
            .await
            .expect("put");
        assert_eq!(store.capabilities().backend, "memory");
    }
}

#[tokio::test]
async fn sqlite_urls_keep_data_across_reopening() {
    let dir = std::env::temp_dir().join(format!(
        "kvkit-open-{}-{}",
        std::process::id(),
        kvkit_testsuite::Namespace::new()
            .prefix()
            .trim_end_matches('/')
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite:{}", dir.join("kv.db").display());
    let store = kvkit::open(&url).await.expect("sqlite store");
    assert_eq!(store.capabilities().backend, "sqlite");
    store
        .put("k", "v".into(), PutOptions::new())
        .await
        .expect("put");
    drop(store);
    let again = kvkit::open(&format!("{url}?durability=normal"))
        .await
        .expect("reopened");
    assert_eq!(
        again.get("k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    drop(again);
    std::fs::remove_dir_all(&dir).expect("cleaned up");

    let in_memory = kvkit::open("sqlite::memory:").await.expect("in memory");
    assert_eq!(in_memory.get("k").await.expect("get"), None);
    match kvkit::open("sqlite:kv.db?durability=fast").await {
        Err(OpenError::Store(err)) => {
            assert_eq!(err.kind(), kvkit::ErrorKind::Configuration, "{err}");
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(_) => panic!("durability=fast is no setting"),
    }
}

#[tokio::test]
async fn unknown_and_malformed_urls() {
    for url in ["", "nothing", "ftp://host", "postgres://u:secret@db/app"] {
        match kvkit::open(url).await {
            Err(OpenError::UnknownScheme { .. }) => {}
            Err(other) => panic!("{url}: expected UnknownScheme, got {other:?}"),
            Ok(_) => panic!("{url}: expected UnknownScheme, got a store"),
        }
    }
    match kvkit::open("redis+cluster://").await {
        Err(OpenError::Invalid { message }) => assert!(message.contains("host:port")),
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("expected Invalid, got a store"),
    }
}

#[tokio::test]
async fn unreachable_redis_is_a_store_error_without_the_password() {
    let port = servers::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    match kvkit::open(&url).await {
        Err(err @ OpenError::Store(_)) => {
            let message = format!("{err} {err:?}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        Err(other) => panic!("expected a store error, got {other:?}"),
        Ok(_) => panic!("nothing listens on port {port}"),
    }
}

#[tokio::test]
async fn redis_and_cluster_urls() {
    let Some(url) = servers::shared_redis_url() else {
        kvkit_testsuite::skip("redis_and_cluster_urls", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let store = kvkit::open(&url).await.expect("redis store");
    assert_eq!(store.capabilities().backend, "redis");
    let key = kvkit_testsuite::Namespace::new().key("open");
    store
        .put(&key, "v".into(), PutOptions::new())
        .await
        .expect("put");
    assert_eq!(
        store.get(&key).await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    store.delete(&key).await.expect("delete");

    let nodes = servers::shared_redis_cluster_urls().expect("a cluster beside the server");
    let hosts: Vec<&str> = nodes
        .iter()
        .map(|u| u.trim_start_matches("redis://").trim_end_matches('/'))
        .collect();
    let cluster = kvkit::open(&format!("redis+cluster://{}", hosts.join(",")))
        .await
        .expect("cluster store");
    cluster
        .put(&key, "c".into(), PutOptions::new())
        .await
        .expect("put");
    assert_eq!(
        cluster.get(&key).await.expect("get").as_deref(),
        Some(&b"c"[..])
    );
    cluster.delete(&key).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_urls() {
    match kvkit::open("redis+sentinel://:hunter2@127.0.0.1:1").await {
        Err(OpenError::Store(err)) => {
            assert_eq!(err.kind(), kvkit::ErrorKind::Configuration, "{err:?}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(_) => panic!("a Sentinel URL without a service opened a store"),
    }
    let Some(setup) = servers::RedisSentinels::start(1, Some("open-secret")) else {
        kvkit_testsuite::skip("sentinel_urls", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let store = kvkit::open(&setup.url())
        .await
        .expect("a store through the sentinels");
    assert_eq!(store.capabilities().backend, "redis");
    let key = kvkit_testsuite::Namespace::new().key("open");
    store
        .put(&key, "s".into(), PutOptions::new())
        .await
        .expect("put");
    assert_eq!(
        store.get(&key).await.expect("get").as_deref(),
        Some(&b"s"[..])
    );
}

#[tokio::test]
async fn malformed_cloudflare_urls() {
    match kvkit::open("cloudflare://only-one-part").await {
        Err(OpenError::Invalid { message }) => assert!(message.contains("ACCOUNT_ID/NAMESPACE_ID")),
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("expected Invalid, got a store"),
    }
    match kvkit::open("cloudflare://a/n?token=secret").await {
        Err(OpenError::Invalid { message }) => {
            assert!(message.contains("CLOUDFLARE_API_TOKEN") && !message.contains("secret"));
        }
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("expected Invalid, got a store"),
    }
}
