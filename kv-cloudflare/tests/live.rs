//! Against real Cloudflare, only when `KV_TEST_CF_ACCOUNT_ID`, `KV_TEST_CF_NAMESPACE_ID` and
//! `KV_TEST_CF_API_TOKEN` are set (use a namespace kept for tests: the test writes and deletes
//! keys under a random prefix). Otherwise it says on standard error that it was skipped.

use std::time::Duration;

use kvkit_cloudflare::CloudflareStore;
use kvkit_core::{KvStore, KvStoreExt, ListOptions, PutItem, PutOptions};
use kvkit_testsuite::Namespace;
use serde_json::json;

fn live_store() -> Option<CloudflareStore> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (Some(account), Some(namespace), Some(token)) = (
        var("KV_TEST_CF_ACCOUNT_ID"),
        var("KV_TEST_CF_NAMESPACE_ID"),
        var("KV_TEST_CF_API_TOKEN"),
    ) else {
        kvkit_testsuite::skip(
            "live_cloudflare_round_trip",
            "set KV_TEST_CF_ACCOUNT_ID, KV_TEST_CF_NAMESPACE_ID and KV_TEST_CF_API_TOKEN to run it",
        );
        return None;
    };
    let store = CloudflareStore::builder()
        .account_id(account)
        .namespace_id(namespace)
        .api_token(token)
        .build()
        .expect("a store on Cloudflare");
    Some(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cloudflare_round_trip() {
    let Some(store) = live_store() else {
        return;
    };
    let ns = Namespace::new();
    // Keys with characters that must be encoded, including `/`.
    let key = ns.key("odd key/ü?#%");
    let binary = vec![0xffu8, 0x00, 0x80, b'x'];
    store
        .put(
            &key,
            binary.clone().into(),
            PutOptions::new()
                .ttl(Duration::from_secs(600))
                .metadata(json!({"v": 1})),
        )
        .await
        .expect("put");
    assert_eq!(
        store.get(&key).await.expect("get").as_deref(),
        Some(&binary[..])
    );
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.value, binary);
    assert_eq!(entry.metadata, Some(json!({"v": 1})));
    assert!(entry.expiration.is_some());

    let items: Vec<PutItem> = (0..30)
        .map(|i| PutItem::new(ns.key(&format!("b{i:02}")), format!("{i}")))
        .collect();
    store.put_many(items).await.expect("put_many");
    let keys: Vec<String> = (0..30).map(|i| ns.key(&format!("b{i:02}"))).collect();
    let values = store.get_many(&keys).await.expect("get_many");
    assert_eq!(values[7].as_deref(), Some(&b"7"[..]));
    let listed: Vec<String> = {
        use futures_util::TryStreamExt;
        store
            .list_stream(ns.prefix())
            .map_ok(|k| k.name)
            .try_collect()
            .await
            .expect("list")
    };
    assert_eq!(listed.len(), 31);
    let page = store
        .list(ListOptions::new().prefix(ns.prefix()).limit(3))
        .await
        .expect("small page");
    assert_eq!(page.keys.len(), 3);
    ns.clean(&store).await;
    assert_eq!(store.get(&key).await.expect("get after delete"), None);
}
