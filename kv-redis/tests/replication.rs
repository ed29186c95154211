//! Replica acknowledgement (`wait_for_replicas`) and Sentinel specifics: a write no replica
//! confirms fails with `NotReplicated` yet was applied, replica reads go to a replica, and a
//! Sentinel store refuses a wrong password without showing it.

use std::time::Duration;

use kvkit_core::{CounterOptions, Error, ErrorKind, KvStore, PutItem, PutOptions};
use kvkit_redis::{RedisBuilder, RedisStore};
use kvkit_test_servers as servers;
use kvkit_testsuite::Namespace;

/// The version of the entry at `key`, which must be there.
async fn version_of(store: &RedisStore, key: &str) -> kvkit_core::Version {
    let entry = store.get_with_metadata(key).await.unwrap();
    entry.expect("the entry").version.expect("a version")
}

/// Every kind of write, on the store `builder` connects (in a namespace of its own) needing a
/// replica where there is none: each fails with `NotReplicated` (retryable, no key in its text),
/// and each was applied. Nothing when the servers are opted out (`None`).
async fn every_write_is_applied_but_not_replicated(builder: Option<RedisBuilder>) {
    let Some(builder) = builder else {
        return;
    };
    let store = builder
        .namespace(Namespace::new().prefix())
        .wait_for_replicas(1, Duration::from_millis(20))
        .connect()
        .await
        .expect("connecting");
    let not_replicated = |result: kvkit_core::Result<()>, what: &str| {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::NotReplicated, "{what}: {err:?}");
        assert!(err.is_retryable(), "{what}");
        assert!(
            matches!(
                err,
                Error::NotReplicated {
                    acknowledged: 0,
                    required: 1,
                    ..
                }
            ),
            "{what}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("secret-key"), "{err:?}");
    };
    let put = store.put("secret-key", "v".into(), PutOptions::new()).await;
    not_replicated(put, "put creating");
    let put = store.put("secret-key", "w".into(), PutOptions::new()).await;
    not_replicated(put, "put overwriting");
    let ttl = PutOptions::new().ttl(Duration::from_secs(60));
    let put = store.put("secret-key", "x".into(), ttl).await;
    not_replicated(put, "put overwriting with a TTL");
    assert_eq!(
        store.get("secret-key").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );

    let created = store
        .put_if_absent("absent", "a".into(), PutOptions::new())
        .await
        .map(|_| ());
    not_replicated(created, "put_if_absent");
    // A conditional write that writes nothing has nothing to replicate: it answers as usual.
    let again = store.put_if_absent("absent", "z".into(), PutOptions::new());
    assert!(!again.await.unwrap());
    let stale = PutOptions::new().if_version(kvkit_core::Version::from_token("stale"));
    let err = store.put("absent", "z".into(), stale).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    assert_eq!(
        store.get("absent").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    let version = version_of(&store, "absent").await;
    let put = PutOptions::new().if_version(version);
    not_replicated(store.put("absent", "b".into(), put).await, "put if_version");
    assert_eq!(
        store.get("absent").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
    let version = version_of(&store, "absent").await;
    let deleted = store.delete_if_version("absent", &version).await;
    not_replicated(deleted, "delete_if_version");
    assert_eq!(store.get("absent").await.unwrap(), None);

    for expected in [1, 2] {
        let counted = store.increment("n", 1, CounterOptions::new()).await;
        not_replicated(counted.map(|_| ()), "increment");
        assert_eq!(
            store.get("n").await.unwrap().as_deref(),
            Some(expected.to_string().as_bytes())
        );
    }

    // A counter with metadata takes the compare-and-set path.
    let framed = PutOptions::new().metadata(serde_json::json!({"unit": "hits"}));
    not_replicated(
        store.put("m", "1".into(), framed).await,
        "put with metadata",
    );
    let counted = store.increment("m", 1, CounterOptions::new()).await;
    not_replicated(counted.map(|_| ()), "increment with metadata");
    assert_eq!(store.get("m").await.unwrap().as_deref(), Some(&b"2"[..]));

    let batch = vec![PutItem::new("b1", "1"), PutItem::new("b2", "2")];
    not_replicated(store.put_many(batch).await, "put_many");
    let keys = ["b1".to_owned(), "b2".to_owned()];
    assert_eq!(
        store
            .get_many(&keys)
            .await
            .unwrap()
            .iter()
            .flatten()
            .count(),
        2
    );
    not_replicated(store.delete_many(&keys).await, "delete_many");
    not_replicated(store.delete("secret-key").await, "delete");
    assert_eq!(store.get_many(&keys).await.unwrap(), [None, None]);
    assert_eq!(store.get("secret-key").await.unwrap(), None);
}

#[tokio::test]
async fn on_a_server_without_replicas_every_write_fails_as_not_replicated_yet_applies() {
    let builder = servers::shared_redis_url().map(RedisStore::builder);
    every_write_is_applied_but_not_replicated(builder).await;
}

#[tokio::test]
async fn on_a_cluster_without_replicas_every_write_fails_as_not_replicated_yet_applies() {
    let builder = servers::shared_redis_cluster_urls().map(RedisStore::cluster);
    every_write_is_applied_but_not_replicated(builder).await;
}

#[tokio::test]
async fn replica_reads_need_a_sentinel_store() {
    let Some(url) = servers::shared_redis_url() else {
        return;
    };
    let err = RedisStore::builder(url)
        .read_from_replicas(true)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
}

/// `GET` calls each server of the setup has answered so far.
fn gets(port: u16, password: &str) -> u64 {
    let mut connection = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}"))
        .expect("url")
        .get_connection()
        .expect("connecting to a server of the setup");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection)
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_replica_reads_go_to_a_replica_and_passwords_stay_hidden() {
    let password = "sentinel-test-secret";
    let Some(setup) = servers::RedisSentinels::start(2, Some(password)) else {
        return;
    };
    let url = setup.url();
    let wrong = url.replace(password, "not-the-password");
    let err = RedisStore::connect(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("not-the-password"),
        "{err:?}"
    );

    // Both replicas confirm every write, so whichever serves a read has it.
    let store = RedisStore::builder(url.as_str())
        .namespace(Namespace::new().prefix())
        .read_from_replicas(true)
        .wait_for_replicas(2, Duration::from_secs(2))
        .connect()
        .await
        .expect("connecting through the sentinels");
    assert!(!format!("{store:?}").contains(password), "{store:?}");
    let primary = setup.primary_port().expect("a primary");
    let before = gets(primary, password);
    for i in 0..20 {
        let key = format!("k{i}");
        store
            .put(&key, i.to_string().into(), PutOptions::new())
            .await
            .unwrap();
        assert_eq!(
            store.get(&key).await.unwrap().as_deref(),
            Some(i.to_string().as_bytes())
        );
    }
    assert_eq!(
        gets(primary, password),
        before,
        "a read went to the primary"
    );
    let replica_gets: u64 = setup
        .server_ports()
        .into_iter()
        .filter(|&port| port != primary)
        .map(|port| gets(port, password))
        .sum();
    assert!(replica_gets >= 20, "{replica_gets} GETs on the replicas");
}
