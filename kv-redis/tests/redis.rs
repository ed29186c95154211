//! Behaviour specific to the Redis backend: the value frame, metadata on counters, the expiry
//! sweep that keeps the indexes bounded, and secrets kept out of `Debug` and errors.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kvkit_core::{CounterOptions, ErrorKind, KvStore, ListOptions, PutItem, PutOptions};
use kvkit_redis::RedisStore;
use kvkit_test_servers as servers;
use kvkit_testsuite::Namespace;
use serde_json::json;

async fn store(namespace: &str) -> Option<(RedisStore, redis::aio::ConnectionManager)> {
    let url = servers::shared_redis_url()?;
    let store = RedisStore::builder(url.as_str())
        .namespace(namespace)
        .connect()
        .await
        .expect("connecting");
    let raw = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection_manager()
        .await
        .expect("raw connection");
    Some((store, raw))
}

#[tokio::test]
async fn values_that_look_framed_round_trip() {
    let ns = Namespace::new();
    let Some((store, _)) = store(ns.prefix()).await else {
        return;
    };
    let tricky = Bytes::from_static(&[0xff, b'K', b'V', 0x01, 0, 0, 0, 2, b'{', b'}', b'x']);
    store
        .put("raw", tricky.clone(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(store.get("raw").await.unwrap(), Some(tricky.clone()));
    let entry = store.get_with_metadata("raw").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.metadata), (tricky.clone(), None));
    let listed = store.list(ListOptions::new()).await.unwrap();
    assert_eq!(listed.keys[0].metadata, None);
    assert_eq!(
        store.get_many(&["raw".to_owned()]).await.unwrap(),
        vec![Some(tricky)]
    );
}

#[tokio::test]
async fn counters_with_metadata_keep_it() {
    let ns = Namespace::new();
    let Some((store, _)) = store(ns.prefix()).await else {
        return;
    };
    let options = PutOptions::new()
        .metadata(json!({"unit": "requests"}))
        .ttl(Duration::from_secs(60));
    store.put("ctr", "41".into(), options).await.unwrap();
    let n = store
        .increment("ctr", 1, CounterOptions::new())
        .await
        .unwrap();
    assert_eq!(n, 42);
    let entry = store.get_with_metadata("ctr").await.unwrap().unwrap();
    assert_eq!(entry.value, "42");
    assert_eq!(entry.metadata, Some(json!({"unit": "requests"})));
    assert!(entry.expiration.is_some(), "the TTL was kept");
    store
        .put("text", "x".into(), PutOptions::new().metadata(json!(1)))
        .await
        .unwrap();
    assert!(matches!(
        store.increment("text", 1, CounterOptions::new()).await,
        Err(kvkit_core::Error::NotACounter { .. })
    ));
}

#[tokio::test]
async fn counters_get_their_expiry_and_index_entries_only_when_created() {
    let ns = Namespace::new();
    let Some((store, mut raw)) = store(ns.prefix()).await else {
        return;
    };
    let window = CounterOptions::new().ttl(Duration::from_secs(60));
    let score = |set: &str, name: &str| {
        let mut cmd = redis::cmd("ZSCORE");
        cmd.arg(format!("{}{set}", ns.prefix())).arg(name);
        cmd
    };

    // A permanent counter at 0 stays permanent.
    store
        .put("zero", "0".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(store.increment("zero", 1, window).await.unwrap(), 1);
    let entry = store.get_with_metadata("zero").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.expiration), ("1".into(), None));

    // A counter whose key vanished while its index entries stayed (as when Redis expires it)
    // is created again, with the expiry.
    assert_eq!(store.increment("stale", 5, window).await.unwrap(), 5);
    let mut del = redis::cmd("DEL");
    del.arg(format!("{}v:stale", ns.prefix()));
    let deleted: i64 = del.query_async(&mut raw).await.unwrap();
    assert_eq!(deleted, 1);
    let stale: Option<f64> = score("i", "stale").query_async(&mut raw).await.unwrap();
    assert_eq!(stale, Some(0.0), "the index entry outlives the value");
    assert_eq!(store.increment("stale", 2, window).await.unwrap(), 2);
    let entry = store.get_with_metadata("stale").await.unwrap().unwrap();
    assert_eq!(entry.value, "2");
    assert!(entry.expiration.is_some(), "the re-created counter expires");

    // A new counter is listed and in the expiry index; its later increments keep the expiry.
    assert_eq!(store.increment("new", 1, window).await.unwrap(), 1);
    let expires: Option<f64> = score("x", "new").query_async(&mut raw).await.unwrap();
    assert!(expires.is_some(), "the expiry index holds the new counter");
    let first = store.get_with_metadata("new").await.unwrap().unwrap();
    let long = CounterOptions::new().ttl(Duration::from_secs(3600));
    assert_eq!(store.increment("new", 1, long).await.unwrap(), 2);
    let later = store.get_with_metadata("new").await.unwrap().unwrap();
    assert_eq!(later.expiration, first.expiration);
    let names: Vec<String> = store
        .list(ListOptions::new())
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["new", "stale", "zero"]);

    // Values past 2^53 come back exact on both paths.
    let big = i64::MAX - 1;
    assert_eq!(store.increment("big", big, window).await.unwrap(), big);
    assert_eq!(store.increment("big", 1, window).await.unwrap(), i64::MAX);
}

/// The names of the function libraries loaded on a server.
async fn libraries(raw: &mut redis::aio::ConnectionManager) -> Vec<String> {
    let listed: Vec<HashMap<String, redis::Value>> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(raw)
        .await
        .unwrap();
    listed
        .into_iter()
        .filter_map(|library| match library.get("library_name") {
            Some(redis::Value::BulkString(name)) => Some(String::from_utf8_lossy(name).into()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn counters_load_their_function_again_after_a_flush() {
    let Some(server) = servers::RedisServer::start(&[]) else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let none = CounterOptions::new();
    assert_eq!(store.increment("n", 1, none).await.unwrap(), 1);
    let loaded = libraries(&mut raw).await;
    assert!(
        matches!(loaded.as_slice(), [name] if name.starts_with("kv_")),
        "{loaded:?}"
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(libraries(&mut raw).await.is_empty());
    assert_eq!(store.increment("n", 5, none).await.unwrap(), 6);
    assert_eq!(libraries(&mut raw).await, loaded);
}

/// Creates the ACL user `name` (password `secret`, every key and channel) with `rules`, and
/// returns the server's URL logging in as it.
async fn acl_user(
    server: &servers::RedisServer,
    raw: &mut redis::aio::ConnectionManager,
    name: &str,
    rules: &[&str],
) -> String {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg(&["on", ">secret", "~*", "&*"][..])
        .arg(rules)
        .query_async(raw)
        .await
        .unwrap();
    server
        .url()
        .replacen("redis://", &format!("redis://{name}:secret@"), 1)
}

#[tokio::test]
async fn counters_fall_back_to_scripts_where_functions_are_refused() {
    let Some(server) = servers::RedisServer::start(&[]) else {
        return;
    };
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let url = acl_user(
        &server,
        &mut raw,
        "scripts-only",
        &["+@all", "-fcall", "-function"],
    )
    .await;
    let store = RedisStore::connect(&url).await.unwrap();
    let window = CounterOptions::new().ttl(Duration::from_secs(60));
    for expected in 1..=3 {
        assert_eq!(store.increment("n", 1, window).await.unwrap(), expected);
    }
    assert_eq!(store.increment("n", 10, window).await.unwrap(), 13);
    assert!(libraries(&mut raw).await.is_empty());
    let entry = store.get_with_metadata("n").await.unwrap().unwrap();
    assert_eq!(entry.value, "13");
    assert!(entry.expiration.is_some());
}

#[tokio::test]
async fn errors_are_classified_by_kind() {
    let Some(server) = servers::RedisServer::start(&[]) else {
        return;
    };
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let url = acl_user(&server, &mut raw, "nobody", &["+@connection"]).await;
    let store = RedisStore::connect(&url).await.unwrap();
    let err = store.get("k").await.expect_err("the ACL refuses GET");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    assert!(!err.is_retryable());

    let wrong = server
        .url()
        .replacen("redis://", "redis://nobody:wrong@", 1);
    let err = RedisStore::connect(&wrong)
        .await
        .expect_err("a wrong password");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");

    let err = RedisStore::connect("redis://127.0.0.1:notaport")
        .await
        .expect_err("a malformed URL");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    let err = RedisStore::builder("redis://127.0.0.1:1")
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_keys_are_swept_from_the_indexes_without_listing() {
    let ns = Namespace::new();
    let Some((store, mut raw)) = store(ns.prefix()).await else {
        return;
    };
    let short = PutOptions::new().ttl(Duration::from_millis(50));
    let items = (0..200)
        .map(|i| PutItem::new(format!("old:{i:03}"), "v").options(short.clone()))
        .collect();
    store.put_many(items).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let long = PutOptions::new().ttl(Duration::from_secs(600));
    for i in 0..200 {
        store
            .put(&format!("new:{i:03}"), "v".into(), long.clone())
            .await
            .unwrap();
    }
    let index: usize = redis::cmd("ZCARD")
        .arg(format!("{}i", ns.prefix()))
        .query_async(&mut raw)
        .await
        .unwrap();
    let expiring: usize = redis::cmd("ZCARD")
        .arg(format!("{}x", ns.prefix()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(index, 200, "dead names left in the index");
    assert_eq!(expiring, 200, "dead names left in the expiry index");
}

#[tokio::test]
async fn passwords_stay_out_of_debug_and_errors() {
    let port = servers::free_port();
    let url = format!("redis://admin:hunter2@127.0.0.1:{port}");
    let builder = RedisStore::builder(url.as_str()).connect_timeout(Duration::from_millis(300));
    assert!(!format!("{builder:?}").contains("hunter2"));
    let err = builder.connect().await.expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err:?}");
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("hunter2"), "{chain}");
}

#[tokio::test]
async fn connects_over_a_unix_socket() {
    let socket = std::env::temp_dir().join(format!(
        "kv-redis-{}-{}.sock",
        std::process::id(),
        servers::free_port()
    ));
    let socket_arg = socket.to_string_lossy().into_owned();
    let Some(_server) = servers::RedisServer::start(&["--unixsocket", &socket_arg]) else {
        return;
    };
    let store = RedisStore::connect(&format!("redis+unix://{socket_arg}"))
        .await
        .expect("connecting over the socket");
    store
        .put("over-unix", "ok".into(), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        store.get("over-unix").await.unwrap().as_deref(),
        Some(&b"ok"[..])
    );
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test]
async fn any_namespace_works_on_a_cluster() {
    let Some(urls) = servers::shared_redis_cluster_urls() else {
        return;
    };
    let unique = Namespace::new();
    for namespace in ["}x:app", "{y}:app", "a}b{c", "}"] {
        let namespace = format!("{namespace}{}", unique.prefix());
        let store = RedisStore::cluster(urls.clone())
            .namespace(namespace.as_str())
            .connect()
            .await
            .expect("connecting to the test cluster");
        let ttl = PutOptions::new().ttl(Duration::from_secs(60));
        store.put("k", "v".into(), ttl.clone()).await.expect("put");
        assert!(
            store
                .put_if_absent("n", "1".into(), ttl)
                .await
                .expect("put_if_absent")
        );
        assert_eq!(
            store
                .increment("n", 1, CounterOptions::new())
                .await
                .expect("incr"),
            2
        );
        let names: Vec<String> = store
            .list(ListOptions::new())
            .await
            .expect("list")
            .keys
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["k", "n"], "namespace {namespace:?}");
        store
            .delete_many(&["k".to_owned(), "n".to_owned()])
            .await
            .expect("delete");
    }
}

/// Names of vanished keys between live ones: a page still fills up to its limit (the names are
/// read again after the dropped ones), and the dropped names leave the index.
#[tokio::test]
async fn listing_fills_its_page_past_vanished_names_and_drops_them() {
    let ns = Namespace::new();
    let Some((store, mut raw)) = store(ns.prefix()).await else {
        return;
    };
    let index = format!("{}i", ns.prefix());
    for i in 0..10 {
        store
            .put(&format!("k{i:02}"), "v".into(), PutOptions::new())
            .await
            .unwrap();
    }
    let mut vanished = redis::cmd("ZADD");
    vanished.arg(&index);
    for i in 0..3 {
        vanished.arg(0).arg(format!("k{i:02}x"));
    }
    let _: () = vanished.query_async(&mut raw).await.unwrap();
    let first = store.list(ListOptions::new().limit(5)).await.unwrap();
    let names: Vec<&str> = first.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k00", "k01", "k02", "k03", "k04"]);
    let cursor = first.cursor.expect("more keys follow");
    let second = store
        .list(ListOptions::new().limit(5).cursor(Some(cursor)))
        .await
        .unwrap();
    let names: Vec<&str> = second.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k05", "k06", "k07", "k08", "k09"]);
    assert_eq!(second.cursor, None);
    let indexed: usize = redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(indexed, 10, "vanished names left in the index");
}

/// A long run of vanished names stops a page at the scan cap (1000 names at a small limit): the
/// page comes back short with a cursor after the last name looked at, and the next one goes on.
#[tokio::test]
async fn listing_stops_at_the_scan_cap_with_a_cursor() {
    let ns = Namespace::new();
    let Some((store, mut raw)) = store(ns.prefix()).await else {
        return;
    };
    let index = format!("{}i", ns.prefix());
    let mut vanished = redis::cmd("ZADD");
    vanished.arg(&index);
    for i in 0..1500 {
        vanished.arg(0).arg(format!("a{i:04}"));
    }
    let _: () = vanished.query_async(&mut raw).await.unwrap();
    for name in ["b1", "b2"] {
        store
            .put(name, "v".into(), PutOptions::new())
            .await
            .unwrap();
    }
    let first = store.list(ListOptions::new().limit(10)).await.unwrap();
    assert!(first.keys.is_empty(), "{:?}", first.keys);
    let cursor = first.cursor.expect("the scan stopped at the cap");
    let second = store
        .list(ListOptions::new().limit(10).cursor(Some(cursor)))
        .await
        .unwrap();
    let names: Vec<&str> = second.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["b1", "b2"]);
    assert_eq!(second.cursor, None);
    let indexed: usize = redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(indexed, 2, "vanished names left in the index");
}

#[tokio::test]
async fn failed_session_writes_never_show_the_session_id() {
    use kvkit_patterns::{Session, SessionManager};
    use kvkit_testsuite::secrets::assert_hides_session_id;

    let Some(server) = servers::RedisServer::start(&[]) else {
        return;
    };
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let session = Session {
        user_id: "u1".into(),
        email: "ada@example.com".into(),
        role: "admin".into(),
        created_at: std::time::UNIX_EPOCH,
    };
    let writer =
        SessionManager::<_, Session>::new(RedisStore::connect(&server.url()).await.unwrap());
    let id = writer.create(&session).await.expect("create");
    // A user who may read and open transactions, but not write: Redis refuses each write with
    // NOPERM. (Without MULTI itself, redis-rs 1.8's multiplexed connection panics in debug builds
    // on the refused MULTI of a transaction, an index underflow in its own code.)
    let rules = ["+@read", "+@connection", "+multi", "+exec", "+discard"];
    let url = acl_user(&server, &mut raw, "reader", &rules).await;
    let reader = SessionManager::<_, Session>::new(RedisStore::connect(&url).await.unwrap());
    assert_eq!(
        reader.get(id.as_str()).await.expect("read"),
        Some(session.clone())
    );
    let error = reader.destroy(id.as_str()).await.expect_err("NOPERM");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error:?}");
    assert_hides_session_id(&error, Some(id.as_str()));
    let error = reader.create(&session).await.expect_err("NOPERM");
    assert_hides_session_id(&error, None);
    // The server goes away.
    drop(server);
    let error = writer.destroy(id.as_str()).await.expect_err("no server");
    assert!(
        matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{error:?}"
    );
    assert_hides_session_id(&error, Some(id.as_str()));
}
