//! The pattern cases on a real `redis-server` and a real 3-master Redis Cluster, started on free
//! loopback ports unless `KV_TEST_REDIS_URL` / `KV_TEST_REDIS_CLUSTER_URLS` say where they are.
//! The patterns read a manual clock, so their timing is tested without sleeping.

use kvkit::redis::RedisStore;
use kvkit_test_servers as servers;
use kvkit_testsuite::{Harness, Namespace};

async fn single() -> Option<Harness> {
    let url = servers::shared_redis_url()?;
    let store = RedisStore::builder(url)
        .namespace(Namespace::new().prefix())
        .connect()
        .await
        .expect("connecting to the test redis-server");
    Some(Harness::real_time(store))
}

async fn cluster() -> Option<Harness> {
    let urls = servers::shared_redis_cluster_urls()?;
    let store = RedisStore::cluster(urls)
        .namespace(Namespace::new().prefix())
        .connect()
        .await
        .expect("connecting to the test cluster");
    Some(Harness::real_time(store))
}

kvkit_testsuite::pattern_tests!(single);

mod on_cluster {
    kvkit_testsuite::pattern_tests!(super::cluster);
}
