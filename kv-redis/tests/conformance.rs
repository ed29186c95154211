//! The conformance suite against a real `redis-server` and a real 3-master Redis Cluster, both
//! started on free loopback ports unless `KV_TEST_REDIS_URL` / `KV_TEST_REDIS_CLUSTER_URLS` say
//! where to find them, and against a Sentinel-managed primary with two replicas (always started
//! here), through a `redis+sentinel://` URL with a password, every write waiting for a replica,
//! calls spread over four connections.
//! `KV_TEST_SKIP_REDIS=1` turns every case into a visible skip.

use std::sync::OnceLock;
use std::time::Duration;

use kvkit_redis::RedisStore;
use kvkit_test_servers as servers;
use kvkit_testsuite::{Harness, Namespace};

/// A store on the shared server, in a namespace of its own.
async fn single() -> Option<Harness> {
    let url = servers::shared_redis_url()?;
    let store = RedisStore::builder(url)
        .namespace(Namespace::new().prefix())
        .connect()
        .await
        .expect("connecting to the test redis-server");
    Some(Harness::real_time(store))
}

/// A store on the shared cluster, in a namespace of its own.
async fn cluster() -> Option<Harness> {
    let urls = servers::shared_redis_cluster_urls()?;
    let store = RedisStore::cluster(urls)
        .namespace(Namespace::new().prefix())
        .connect()
        .await
        .expect("connecting to the test cluster");
    Some(Harness::real_time(store))
}

/// A store on a Sentinel setup shared by this file's tests, through its sentinels, waiting for
/// one replica after every write, over four connections, in a namespace of its own.
async fn sentinel() -> Option<Harness> {
    static SETUP: OnceLock<Option<servers::RedisSentinels>> = OnceLock::new();
    let url = SETUP
        .get_or_init(|| servers::RedisSentinels::start(2, Some("conformance-secret")))
        .as_ref()?
        .url();
    let store = RedisStore::builder(url)
        .namespace(Namespace::new().prefix())
        .wait_for_replicas(1, Duration::from_secs(1))
        .connections(4)
        .connect()
        .await
        .expect("connecting through the test sentinels");
    Some(Harness::real_time(store))
}

kvkit_testsuite::conformance_tests!(single);

mod on_sentinel {
    kvkit_testsuite::conformance_tests!(super::sentinel);
}

mod on_cluster {
    kvkit_testsuite::conformance_tests!(super::cluster);
}
