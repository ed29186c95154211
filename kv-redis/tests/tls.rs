//! `rediss://` against a real `redis-server` that only speaks TLS, with a certificate signed by a
//! throwaway CA the store is told to trust.
#![cfg(feature = "tls")]

use kvkit_core::{KvStore, PutOptions};
use kvkit_redis::RedisStore;
use kvkit_test_servers::RedisServer;

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let Some(server) = RedisServer::start_tls() else {
        kvkit_testsuite::skip("TLS test", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    assert!(server.url().starts_with("rediss://"));
    let store = RedisStore::builder(server.url())
        .tls_root_certificates(server.tls_ca_pem())
        .connect()
        .await
        .expect("connecting over TLS");
    store
        .put("secure", "yes".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        store.get("secure").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );

    // Without the CA the server's certificate is not trusted: a clear error, not a panic.
    let untrusted = RedisStore::builder(server.url()).connect().await;
    assert!(untrusted.is_err(), "an unknown CA must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_with_a_private_ca_and_a_password() {
    let Some(setup) = kvkit_test_servers::RedisSentinels::start_tls(1, Some("tls-secret")) else {
        kvkit_testsuite::skip("TLS Sentinel test", "KV_TEST_SKIP_REDIS=1");
        return;
    };
    let url = setup.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let ca = setup.tls_ca_pem().expect("a TLS setup");
    let store = RedisStore::builder(url.as_str())
        .tls_root_certificates(ca)
        .wait_for_replicas(1, std::time::Duration::from_secs(1))
        .connect()
        .await
        .expect("connecting over TLS through the sentinels");
    store
        .put("secure", "yes".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        store.get("secure").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );

    let untrusted = RedisStore::connect(&url).await;
    assert!(untrusted.is_err(), "an unknown CA must be refused");
}
