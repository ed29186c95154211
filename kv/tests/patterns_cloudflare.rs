//! The pattern cases on Cloudflare's KV in workerd, through the REST emulator (started on a free
//! loopback port unless `KV_TEST_CF_URL` says where one runs; `KV_TEST_SKIP_CF=1` skips them,
//! visibly). The patterns read a manual clock; only the session-expiry case waits for the
//! 60 s minimum TTL to pass for real, alongside the others.

use kvkit::cloudflare::CloudflareStore;
use kvkit_test_servers as servers;
use kvkit_testsuite::Harness;

async fn harness() -> Option<Harness> {
    let api = servers::shared_cf_url()?;
    let store = CloudflareStore::builder()
        .base_url(api)
        .account_id(servers::CF_EMULATOR_ACCOUNT_ID)
        .namespace_id(servers::CF_EMULATOR_NAMESPACE_ID)
        .api_token(servers::CF_EMULATOR_TOKEN)
        .build()
        .expect("a store on the emulator");
    Some(Harness::real_time(store))
}

kvkit_testsuite::pattern_tests!(harness);
