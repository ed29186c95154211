//! The conformance cases, one `pub async fn` per rule of the [`KvStore`] contract.
//!
//! Each case takes a [`Harness`], works in a fresh [`Namespace`] and removes its keys when it
//! passes. [`conformance_tests!`](crate::conformance_tests) stamps them all into a test file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use kvkit_core::backend::{from_unix_ms, unix_ms};
use kvkit_core::{
    CounterOptions, Error, Expiry, KeyInfo, KvStore, KvStoreExt, ListOptions, ListPage, PutItem,
    PutOptions, Version,
};
use serde_json::{Value, json};

use crate::rt::concurrently;
use crate::{Harness, Namespace, skip};

/// A margin added when waiting for real time to pass expirations.
const MARGIN: Duration = Duration::from_millis(150);

/// How long to wait for a key written now with `ttl` to be gone: the TTL, plus twice the
/// backend's TTL precision (a backend that keeps expirations in whole seconds ends a key at the
/// second it reports, up to a second after write + TTL, and its clock may tick into the next
/// second while the write travels), plus a margin.
fn past_expiry(h: &Harness, ttl: Duration) -> Duration {
    ttl + h.store().capabilities().ttl_precision * 2 + MARGIN
}

fn opts() -> PutOptions {
    PutOptions::new()
}

async fn put(store: &dyn KvStore, key: &str, value: &str) {
    store
        .put(key, Bytes::copy_from_slice(value.as_bytes()), opts())
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
}

async fn get(store: &dyn KvStore, key: &str) -> Option<Bytes> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
}

fn names(page: &ListPage) -> Vec<String> {
    page.keys.iter().map(|k| k.name.clone()).collect()
}

/// Follows cursors to the end, checking the page invariants, and returns every key listed.
pub async fn list_all(store: &dyn KvStore, prefix: &str, limit: Option<usize>) -> Vec<KeyInfo> {
    let mut keys = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let mut options = ListOptions::new().prefix(prefix).cursor(cursor.take());
        options.limit = limit;
        let page = store
            .list(options)
            .await
            .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"));
        let max = limit.unwrap_or(1000);
        assert!(
            page.keys.len() <= max,
            "page of {} keys exceeds limit {max}",
            page.keys.len()
        );
        assert_eq!(
            page.cursor.is_none(),
            page.list_complete,
            "cursor must be None exactly when list_complete"
        );
        keys.extend(page.keys);
        if page.list_complete {
            return keys;
        }
        cursor = page.cursor;
    }
    panic!("listing {prefix:?} did not complete");
}

async fn list_names(store: &dyn KvStore, prefix: &str, limit: Option<usize>) -> Vec<String> {
    list_all(store, prefix, limit)
        .await
        .into_iter()
        .map(|k| k.name)
        .collect()
}

/// Writes `count` keys `{prefix}{i:05}` in batches.
async fn fill(store: &dyn KvStore, ns: &Namespace, count: usize) -> Vec<String> {
    let keys: Vec<String> = (0..count).map(|i| ns.key(&format!("{i:05}"))).collect();
    for chunk in keys.chunks(500) {
        let items = chunk.iter().map(|k| PutItem::new(k.clone(), "v")).collect();
        store.put_many(items).await.expect("put_many");
    }
    keys
}

fn variant(err: &Error) -> String {
    format!("{err:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!(
                "expected {}, got {:?}",
                stringify!($pattern),
                other.map_err(|e| variant(&e))
            ),
        }
    };
}

/// Rule 1: a key never written reads as `None` everywhere.
pub async fn get_missing_is_none(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("missing");
    assert_eq!(get(store, &key).await, None);
    assert_eq!(
        store
            .get_with_metadata(&key)
            .await
            .expect("get_with_metadata"),
        None
    );
    assert_eq!(
        store
            .get_many(std::slice::from_ref(&key))
            .await
            .expect("get_many"),
        vec![None]
    );
    assert!(list_all(store, ns.prefix(), None).await.is_empty());
}

/// Rule 2: empty, 1-byte, 1 MiB and non-UTF-8 values round-trip byte for byte.
pub async fn binary_values_round_trip(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let mib: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
    let values: Vec<(&str, Bytes)> = vec![
        ("empty", Bytes::new()),
        ("one", Bytes::from_static(b"x")),
        ("zero-byte", Bytes::from_static(&[0])),
        (
            "invalid-utf8",
            Bytes::from_static(&[0xff, 0xfe, 0x00, 0xc3, 0x28]),
        ),
        ("mib", Bytes::from(mib)),
    ];
    for (name, value) in &values {
        let key = ns.key(name);
        store.put(&key, value.clone(), opts()).await.expect("put");
        assert_eq!(get(store, &key).await.as_ref(), Some(value), "{name}");
        let entry = store
            .get_with_metadata(&key)
            .await
            .expect("get_with_metadata")
            .expect("present");
        assert_eq!(&entry.value, value, "{name} via get_with_metadata");
    }
    let keys: Vec<String> = values.iter().map(|(n, _)| ns.key(n)).collect();
    let batch = store.get_many(&keys).await.expect("get_many");
    for ((name, value), got) in values.iter().zip(batch) {
        assert_eq!(got.as_ref(), Some(value), "{name} via get_many");
    }
    ns.clean(store).await;
}

/// Rule 3: a put replaces value, metadata and expiration together.
pub async fn overwrite_replaces_value_metadata_and_expiry(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    let ttl = Duration::from_secs(3600).max(store.capabilities().min_ttl);
    store
        .put(
            &key,
            "one".into(),
            opts().ttl(ttl).metadata(json!({"version": 1})),
        )
        .await
        .expect("put");
    store
        .put(&key, "two".into(), opts())
        .await
        .expect("overwrite");
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.value, "two");
    assert_eq!(
        entry.metadata, None,
        "metadata must be cleared by a put without it"
    );
    assert_eq!(
        entry.expiration, None,
        "expiry must be cleared by a put without it"
    );
    store
        .put(&key, "three".into(), opts().metadata(json!("m")))
        .await
        .expect("overwrite");
    let listed = list_all(store, ns.prefix(), None).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].metadata, Some(json!("m")));
    assert_eq!(listed[0].expiration, None);
    ns.clean(store).await;
}

/// Rule 4: deleting twice, or deleting a key never written, succeeds.
pub async fn delete_is_idempotent(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    put(store, &key, "v").await;
    store.delete(&key).await.expect("delete");
    assert_eq!(get(store, &key).await, None);
    store.delete(&key).await.expect("second delete");
    store
        .delete(&ns.key("never"))
        .await
        .expect("delete of missing key");
    assert!(list_all(store, ns.prefix(), None).await.is_empty());
}

/// The metadata a store returns for `written`: the same value, except that JSON `null` is no
/// metadata where metadata is not exact (Cloudflare).
fn expected_metadata(store: &dyn KvStore, written: &Value) -> Option<Value> {
    (store.capabilities().exact_metadata || !written.is_null()).then(|| written.clone())
}

/// Rule 5: metadata of every JSON type round-trips through get_with_metadata and list.
pub async fn metadata_round_trips(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let samples = [
        json!(null),
        json!(true),
        json!(42),
        json!(-1.5),
        json!("text with ünïcode"),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"a": [1, 2]}, "empty": {}}),
    ];
    for (i, metadata) in samples.iter().enumerate() {
        let key = ns.key(&format!("{i}"));
        store
            .put(&key, "v".into(), opts().metadata(metadata.clone()))
            .await
            .expect("put");
        let entry = store
            .get_with_metadata(&key)
            .await
            .expect("get_with_metadata")
            .expect("present");
        assert_eq!(
            entry.metadata,
            expected_metadata(store, metadata),
            "sample {i}"
        );
        assert_eq!(entry.value, "v");
    }
    let listed = list_all(store, ns.prefix(), None).await;
    assert_eq!(listed.len(), samples.len());
    for (i, key) in listed.iter().enumerate() {
        assert_eq!(
            key.metadata,
            expected_metadata(store, &samples[i]),
            "listed sample {i}"
        );
    }
    ns.clean(store).await;
}

/// Rule 6: once its TTL passes, a key is absent from every read, list and batch.
pub async fn ttl_expiry_hides_key_everywhere(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let ttl = h.short_ttl();
    let expiring = ns.key("expiring");
    let permanent = ns.key("permanent");
    store
        .put(&expiring, "v".into(), opts().ttl(ttl))
        .await
        .expect("put with ttl");
    put(store, &permanent, "v").await;
    assert_eq!(get(store, &expiring).await.as_deref(), Some(&b"v"[..]));
    h.advance(past_expiry(h, ttl)).await;
    assert_eq!(
        get(store, &expiring).await,
        None,
        "expired key returned by get"
    );
    assert_eq!(
        store
            .get_with_metadata(&expiring)
            .await
            .expect("get_with_metadata"),
        None
    );
    assert_eq!(
        store
            .get_many(&[expiring.clone(), permanent.clone()])
            .await
            .expect("get_many"),
        vec![None, Some(Bytes::from_static(b"v"))]
    );
    assert_eq!(list_names(store, ns.prefix(), None).await, vec![permanent]);
    assert!(
        store
            .put_if_absent(&expiring, "again".into(), opts())
            .await
            .expect("put_if_absent"),
        "an expired key counts as absent"
    );
    ns.clean(store).await;
}

/// `at` rounded up to a whole multiple of `precision` since the unix epoch, as the contract
/// says backends store expirations.
fn round_up_to(at: SystemTime, precision: Duration) -> SystemTime {
    let since = at.duration_since(UNIX_EPOCH).expect("after 1970");
    let p = precision.as_nanos().max(1);
    let nanos = since.as_nanos().div_ceil(p) * p;
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).expect("before 2554"))
}

/// `at` truncated to whole milliseconds (the resolution of the servers' clocks).
fn floor_ms(at: SystemTime) -> SystemTime {
    from_unix_ms(unix_ms(at))
}

/// Rule 6: an absolute expiration ends the key at that instant, rounded up to the backend's
/// precision, and is reported as such.
pub async fn absolute_expiration(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    let precision = store.capabilities().ttl_precision;
    let min = store.capabilities().min_ttl;
    // A whole second, the precision of every backend.
    let at = round_up_to(h.now() + min, Duration::from_secs(1)) + Duration::from_secs(1);
    store
        .put(&key, "v".into(), opts().expire_at(at))
        .await
        .expect("put with expiration");
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present before the expiration");
    assert_eq!(entry.expiration, Some(at));
    // Between two whole seconds: kept to the backend's precision, rounded up.
    let odd = at + Duration::from_micros(1_500_250);
    let other = ns.key("odd");
    store
        .put(&other, "v".into(), opts().expire_at(odd))
        .await
        .expect("put with a fractional expiration");
    let listed = list_all(store, &other, None).await;
    assert_eq!(listed[0].expiration, Some(round_up_to(odd, precision)));
    store.delete(&other).await.expect("delete");
    let wait = at.duration_since(h.now()).unwrap_or_default() + MARGIN;
    h.advance(wait).await;
    assert_eq!(
        get(store, &key).await,
        None,
        "key present after its expiration"
    );
    assert!(list_all(store, ns.prefix(), None).await.is_empty());
}

/// Rule 6: get_with_metadata and list report when a key expires, rounded up to the backend's
/// precision.
pub async fn expiration_is_reported(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    // A fractional TTL, so that rounding down instead of up would be caught.
    let caps = store.capabilities();
    let ttl = Duration::from_millis(600_500).max(caps.min_ttl + Duration::from_millis(500));
    let Ok(Some(Expiry::Ttl(rounded))) = caps.check_expiry(Some(Expiry::Ttl(ttl)), h.now()) else {
        panic!("a TTL of {ttl:?} must be accepted");
    };
    if unix_ms(h.now()).is_multiple_of(1000) {
        // Start between two seconds, so that the exact second reported is meaningful.
        h.advance(Duration::from_millis(300)).await;
    }
    let before = floor_ms(h.now());
    store
        .put(&key, "v".into(), opts().ttl(ttl))
        .await
        .expect("put");
    let after = h.now();
    let low = round_up_to(before + rounded, caps.ttl_precision);
    let high = round_up_to(after + rounded, caps.ttl_precision);
    let shown = |at: SystemTime| unix_ms(at);
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present");
    let reported = entry
        .expiration
        .expect("expiration reported by get_with_metadata");
    assert!(
        (low..=high).contains(&reported),
        "get_with_metadata reported {} ms, expected {}..={} ms",
        shown(reported),
        shown(low),
        shown(high)
    );
    let listed = list_all(store, ns.prefix(), None).await;
    let reported = listed[0].expiration.expect("expiration reported by list");
    assert!(
        (low..=high).contains(&reported),
        "list reported {} ms, expected {}..={} ms",
        shown(reported),
        shown(low),
        shown(high)
    );
    ns.clean(store).await;
}

/// Rule 7: keys are listed in byte order of their UTF-8 encoding, whatever their script.
pub async fn list_orders_by_bytes(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let names = [
        "a", "B", "b", "~", "é", "e\u{301}", "z", "ä", "中文", "😀", "A", "0", " ", "a\u{7f}",
        "ab", "a b", "\u{ffff}", "\u{1}",
    ];
    for name in names {
        put(store, &ns.key(name), "v").await;
    }
    let mut expected: Vec<String> = names.iter().map(|n| ns.key(n)).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(list_names(store, ns.prefix(), None).await, expected);
    assert_eq!(list_names(store, ns.prefix(), Some(3)).await, expected);
    ns.clean(store).await;
}

/// Rule 7: only keys starting with the prefix are listed; glob characters match literally.
pub async fn list_filters_by_prefix_literally(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let all = [
        "user:1", "user:2", "user:10", "users", "use", "order:1", "*", "*x", "a*b", "a?b", "a[b]",
        "a\\b", "ab", "axb",
    ];
    for name in all {
        put(store, &ns.key(name), "v").await;
    }
    for (prefix, expected) in [
        ("user:", vec!["user:1", "user:10", "user:2"]),
        ("user", vec!["user:1", "user:10", "user:2", "users"]),
        ("*", vec!["*", "*x"]),
        ("a*", vec!["a*b"]),
        ("a?", vec!["a?b"]),
        ("a[", vec!["a[b]"]),
        ("a\\", vec!["a\\b"]),
        ("nothing", vec![]),
    ] {
        let expected: Vec<String> = expected.iter().map(|n| ns.key(n)).collect();
        assert_eq!(
            list_names(store, &ns.key(prefix), None).await,
            expected,
            "prefix {prefix:?}"
        );
    }
    assert_eq!(list_names(store, ns.prefix(), None).await.len(), all.len());
    ns.clean(store).await;
}

async fn paginate_2500(h: &Harness, limit: usize) {
    let store = &**h.store();
    let ns = Namespace::new();
    let keys = fill(store, &ns, 2500).await;
    let listed = list_names(store, ns.prefix(), Some(limit)).await;
    assert_eq!(listed.len(), keys.len());
    assert_eq!(listed, keys, "every key exactly once, in order");
    if limit == 1000 {
        let first = store
            .list(ListOptions::new().prefix(ns.prefix()))
            .await
            .expect("list");
        assert!(
            !first.list_complete && first.keys.len() <= 1000,
            "the default page is at most 1000 keys"
        );
    }
    ns.clean(store).await;
}

/// Rule 7: 2,500 keys listed 1000 at a time come back exactly once each, in order.
pub async fn list_paginates_2500_keys_at_limit_1000(h: &Harness) {
    paginate_2500(h, 1000).await;
}

/// Rule 7: 2,500 keys listed 7 at a time come back exactly once each, in order.
pub async fn list_paginates_2500_keys_at_limit_7(h: &Harness) {
    paginate_2500(h, 7).await;
}

/// Rule 7: keys deleted between pages do not appear later, keys present throughout appear once.
pub async fn list_pages_after_deletes_and_inserts(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let keys = fill(store, &ns, 100).await;
    let mut seen: Vec<String> = Vec::new();
    let mut deleted = BTreeSet::new();
    let mut deleted_unseen = BTreeSet::new();
    let mut cursor = None;
    let mut page_no = 0;
    loop {
        let page = store
            .list(
                ListOptions::new()
                    .prefix(ns.prefix())
                    .limit(10)
                    .cursor(cursor),
            )
            .await
            .expect("list");
        seen.extend(names(&page));
        if page.list_complete {
            break;
        }
        cursor = page.cursor;
        page_no += 1;
        // Delete a key of a later page, one of an earlier page, and the last key returned (the
        // one the cursor points after).
        for i in [page_no * 10 + 15, page_no * 3, page_no * 10 - 1] {
            if let Some(key) = keys.get(i) {
                store.delete(key).await.expect("delete");
                if deleted.insert(key.clone()) && !seen.contains(key) {
                    deleted_unseen.insert(key.clone());
                }
            }
        }
        // Insert keys between pages: they may or may not be listed, but never twice.
        put(store, &ns.key(&format!("{:05}x", page_no * 10 + 5)), "new").await;
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a key was listed twice");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "listing is out of order across pages");
    for key in &keys {
        if !deleted.contains(key) {
            assert!(
                unique.contains(key),
                "{key} was present throughout but not listed"
            );
        }
    }
    for key in &deleted_unseen {
        assert!(
            !unique.contains(key),
            "{key} was listed after it was deleted"
        );
    }
    let remaining: Vec<String> = keys
        .iter()
        .filter(|k| !deleted.contains(*k))
        .cloned()
        .collect();
    let now_listed: Vec<String> = list_names(store, ns.prefix(), Some(10))
        .await
        .into_iter()
        .filter(|k| !k.ends_with('x'))
        .collect();
    assert_eq!(now_listed, remaining);
    ns.clean(store).await;
}

/// The extension trait's key stream follows cursors across pages.
pub async fn list_stream_follows_cursors(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let keys = fill(store, &ns, 1500).await;
    let streamed: Vec<String> = store
        .list_stream(ns.prefix())
        .map_ok(|k| k.name)
        .try_collect()
        .await
        .expect("list_stream");
    assert_eq!(streamed, keys);
    ns.clean(store).await;
}

/// Rule 8: batch get, put and delete behave like the single operations, in order.
pub async fn batch_operations(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let items: Vec<PutItem> = (0..100)
        .map(|i| {
            PutItem::new(ns.key(&format!("{i:03}")), format!("value {i}"))
                .options(opts().metadata(json!({ "i": i })))
        })
        .collect();
    store.put_many(items).await.expect("put_many");
    let mut keys: Vec<String> = (0..100).rev().map(|i| ns.key(&format!("{i:03}"))).collect();
    let values = store.get_many(&keys).await.expect("get_many of 100 keys");
    assert_eq!(values.len(), 100);
    for (i, value) in (0..100).rev().zip(&values) {
        assert_eq!(value.as_deref(), Some(format!("value {i}").as_bytes()));
    }
    let entry = store
        .get_with_metadata(&ns.key("042"))
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.metadata, Some(json!({"i": 42})));
    keys.truncate(50);
    keys.push(ns.key("never-written"));
    store.delete_many(&keys).await.expect("delete_many");
    let after = store.get_many(&keys).await.expect("get_many");
    assert!(after.iter().all(Option::is_none));
    assert_eq!(list_all(store, ns.prefix(), None).await.len(), 50);
    let twice = ns.key("twice");
    store
        .put_many(vec![
            PutItem::new(twice.clone(), "first"),
            PutItem::new(twice.clone(), "last"),
        ])
        .await
        .expect("put_many with a repeated key");
    assert_eq!(
        get(store, &twice).await.as_deref(),
        Some(&b"last"[..]),
        "the last write wins"
    );
    store.delete(&twice).await.expect("delete");
    // With and without an expiry in one batch: each key ends as its last write, expiry and all.
    let ttl = Duration::from_secs(3600).max(h.short_ttl());
    let (lasting, expiring) = (ns.key("lasting"), ns.key("expiring"));
    store
        .put_many(vec![
            PutItem::new(lasting.clone(), "expiring").options(PutOptions::new().ttl(ttl)),
            PutItem::new(expiring.clone(), "lasting"),
            PutItem::new(lasting.clone(), "lasting"),
            PutItem::new(expiring.clone(), "expiring").options(PutOptions::new().ttl(ttl)),
        ])
        .await
        .expect("put_many with and without expiries");
    for (key, expires) in [(&lasting, false), (&expiring, true)] {
        let entry = store
            .get_with_metadata(key)
            .await
            .expect("read")
            .expect("written");
        let value = if expires { "expiring" } else { "lasting" };
        assert_eq!(&entry.value[..], value.as_bytes());
        assert_eq!(
            entry.expiration.is_some(),
            expires,
            "{value}: the last write's expiry"
        );
    }
    assert_eq!(store.get_many(&[]).await.expect("empty get_many"), vec![]);
    store.put_many(vec![]).await.expect("empty put_many");
    store.delete_many(&[]).await.expect("empty delete_many");
    ns.clean(store).await;
}

/// Rule 8: one invalid item makes put_many fail before anything is written.
pub async fn put_many_validates_before_writing(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let items = vec![
        PutItem::new(ns.key("a"), "1"),
        PutItem::new(ns.key("b"), "2"),
        PutItem::new("", "bad"),
    ];
    assert_err!(store.put_many(items).await, Error::EmptyKey);
    assert!(list_all(store, ns.prefix(), None).await.is_empty());
    let too_long = ns.key(&"x".repeat(store.capabilities().max_key_bytes));
    let items = vec![PutItem::new(ns.key("a"), "1"), PutItem::new(too_long, "2")];
    assert_err!(store.put_many(items).await, Error::KeyTooLong { .. });
    assert!(list_all(store, ns.prefix(), None).await.is_empty());
}

/// Rule 9: counters start at 0, are stored as decimal strings, and keep their first expiry.
pub async fn counter_basics(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("counter");
    let none = CounterOptions::new();
    assert_eq!(store.increment(&key, 1, none).await.expect("incr"), 1);
    assert_eq!(store.increment(&key, 41, none).await.expect("incr"), 42);
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"42"[..]));
    assert_eq!(store.increment(&key, -50, none).await.expect("decr"), -8);
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"-8"[..]));
    assert_eq!(store.increment(&key, 0, none).await.expect("incr 0"), -8);

    let text = ns.key("text");
    put(store, &text, "not a number").await;
    assert_err!(
        store.increment(&text, 1, none).await,
        Error::NotACounter { .. }
    );
    assert_eq!(
        get(store, &text).await.as_deref(),
        Some(&b"not a number"[..])
    );

    let big = ns.key("big");
    put(store, &big, &i64::MAX.to_string()).await;
    assert_err!(
        store.increment(&big, 1, none).await,
        Error::CounterOverflow { .. }
    );
    assert_eq!(
        get(store, &big).await.as_deref(),
        Some(i64::MAX.to_string().as_bytes())
    );

    let written = ns.key("written");
    put(store, &written, "10").await;
    assert_eq!(store.increment(&written, 5, none).await.expect("incr"), 15);

    let windowed = ns.key("windowed");
    let ttl = h.short_ttl();
    let window = CounterOptions::new().ttl(ttl);
    assert_eq!(
        store.increment(&windowed, 1, window).await.expect("incr"),
        1
    );
    let long = CounterOptions::new().ttl(Duration::from_secs(3600).max(ttl));
    assert_eq!(store.increment(&windowed, 1, long).await.expect("incr"), 2);
    h.advance(past_expiry(h, ttl)).await;
    assert_eq!(
        get(store, &windowed).await,
        None,
        "the expiry set at creation must stay"
    );
    assert_eq!(
        store.increment(&windowed, 1, window).await.expect("incr"),
        1
    );
    ns.clean(store).await;
}

/// Rule 9 for a store that counts at once ([`KvStore::increment_now`]): the same counter, the
/// same answers and the same errors as `increment`, and the expiry set when it creates the
/// counter. A store that answers `None` must count through `increment` alone.
pub async fn counter_now_agrees_with_increment(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("now");
    let none = CounterOptions::new();
    let Some(first) = store.increment_now(&key, 2, none) else {
        assert_eq!(store.increment(&key, 2, none).await.expect("incr"), 2);
        ns.clean(store).await;
        return;
    };
    assert_eq!(first.expect("incr now"), 2);
    let now = |key: &str, delta: i64, options: CounterOptions| {
        store
            .increment_now(key, delta, options)
            .expect("a store that counted at once once counts at once always")
    };
    assert_eq!(store.increment(&key, 1, none).await.expect("incr"), 3);
    assert_eq!(now(&key, -4, none).expect("decr now"), -1);
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"-1"[..]));

    let text = ns.key("text");
    put(store, &text, "01").await;
    assert_err!(now(&text, 1, none), Error::NotACounter { .. });
    assert_eq!(get(store, &text).await.as_deref(), Some(&b"01"[..]));
    let big = ns.key("big");
    put(store, &big, &(i64::MAX - 1).to_string()).await;
    assert_eq!(now(&big, 1, none).expect("to the maximum"), i64::MAX);
    assert_err!(now(&big, 1, none), Error::CounterOverflow { .. });
    assert_eq!(
        get(store, &big).await.as_deref(),
        Some(i64::MAX.to_string().as_bytes())
    );
    assert_err!(now("", 1, none), Error::EmptyKey);

    let windowed = ns.key("windowed");
    let ttl = h.short_ttl();
    assert_eq!(
        now(&windowed, 1, CounterOptions::new().ttl(ttl)).expect("incr"),
        1
    );
    let long = CounterOptions::new().ttl(Duration::from_secs(3600).max(ttl));
    assert_eq!(now(&windowed, 1, long).expect("incr"), 2);
    h.advance(past_expiry(h, ttl)).await;
    assert_eq!(
        get(store, &windowed).await,
        None,
        "the expiry set at creation must stay"
    );
    assert_eq!(now(&windowed, 1, long).expect("incr"), 1);
    ns.clean(store).await;
}

/// Rule 9: an increment of an existing counter changes its value only: its metadata and its
/// expiration stay.
pub async fn counter_keeps_metadata_and_expiration(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("tagged");
    let ttl = Duration::from_secs(3600).max(h.short_ttl());
    store
        .put(
            &key,
            Bytes::from_static(b"10"),
            PutOptions::new()
                .ttl(ttl)
                .metadata(json!({"owner": "billing"})),
        )
        .await
        .expect("put");
    let before = store
        .get_with_metadata(&key)
        .await
        .expect("read")
        .expect("written");
    let other_window = CounterOptions::new().ttl(ttl.saturating_mul(2));
    assert_eq!(
        store.increment(&key, 5, other_window).await.expect("incr"),
        15
    );
    let after = store
        .get_with_metadata(&key)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(&after.value[..], b"15");
    assert_eq!(after.metadata, Some(json!({"owner": "billing"})));
    assert_eq!(after.expiration, before.expiration, "the expiration stays");
    ns.clean(store).await;
}

/// Rule 9: only canonical decimal `i64`s are counters; anything else is refused untouched.
pub async fn counter_refuses_non_canonical_values(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let texts = [
        "+1",
        "01",
        "-0",
        " 5",
        "5 ",
        "1.0",
        "",
        "0x10",
        "9223372036854775808",
        "--1",
    ];
    for (i, text) in texts.iter().enumerate() {
        let key = ns.key(&format!("c{i}"));
        put(store, &key, text).await;
        assert_err!(
            store.increment(&key, 1, CounterOptions::new()).await,
            Error::NotACounter { .. }
        );
        assert_eq!(
            get(store, &key).await.as_deref(),
            Some(text.as_bytes()),
            "{text:?} changed"
        );
    }
    for (text, expected) in [("0", 1), ("-1", 0), ("-9223372036854775808", i64::MIN + 1)] {
        let key = ns.key(text);
        put(store, &key, text).await;
        let got = store.increment(&key, 1, CounterOptions::new()).await;
        assert_eq!(got.expect("increment"), expected);
    }
    ns.clean(store).await;
}

/// Rule 9: 200 concurrent increments all count (when the counter is atomic).
pub async fn counter_exact_under_concurrency(h: &Harness) {
    if !h.store().capabilities().atomic_counter {
        skip(
            "counter_exact_under_concurrency",
            "the backend's counter is best-effort (Capabilities::atomic_counter is false)",
        );
        return;
    }
    let ns = Namespace::new();
    let key = Arc::new(ns.key("counter"));
    let tasks = (0..200).map(|_| {
        let store = h.store().clone();
        let key = key.clone();
        async move { store.increment(&key, 1, CounterOptions::new()).await }
    });
    let mut results: Vec<i64> = concurrently(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("increment"))
        .collect();
    results.sort_unstable();
    assert_eq!(
        results,
        (1..=200).collect::<Vec<i64>>(),
        "each increment sees a distinct value"
    );
    assert_eq!(get(&**h.store(), &key).await.as_deref(), Some(&b"200"[..]));
    ns.clean(&**h.store()).await;
}

/// Rule 10: put_if_absent writes only to absent keys and says whether it wrote.
pub async fn put_if_absent_basics(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    assert!(
        store
            .put_if_absent(&key, "first".into(), opts().metadata(json!(1)))
            .await
            .expect("pia")
    );
    assert!(
        !store
            .put_if_absent(&key, "second".into(), opts())
            .await
            .expect("pia")
    );
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.value, "first");
    assert_eq!(entry.metadata, Some(json!(1)));
    store.delete(&key).await.expect("delete");
    assert!(
        store
            .put_if_absent(&key, "third".into(), opts())
            .await
            .expect("pia after delete")
    );
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"third"[..]));

    let expiring = ns.key("expiring");
    let ttl = h.short_ttl();
    assert!(
        store
            .put_if_absent(&expiring, "a".into(), opts().ttl(ttl))
            .await
            .expect("pia")
    );
    assert!(
        !store
            .put_if_absent(&expiring, "b".into(), opts())
            .await
            .expect("pia")
    );
    h.advance(past_expiry(h, ttl)).await;
    assert!(
        store
            .put_if_absent(&expiring, "c".into(), opts())
            .await
            .expect("pia after expiry")
    );
    let entry = store
        .get_with_metadata(&expiring)
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.value, "c");
    assert_eq!(entry.expiration, None);
    ns.clean(store).await;
}

/// Rule 10: exactly one of 100 concurrent put_if_absent calls wins (when atomic).
pub async fn put_if_absent_one_winner(h: &Harness) {
    if !h.store().capabilities().atomic_put_if_absent {
        skip(
            "put_if_absent_one_winner",
            "the backend's put_if_absent is best-effort (Capabilities::atomic_put_if_absent is false)",
        );
        return;
    }
    let ns = Namespace::new();
    let key = Arc::new(ns.key("lock"));
    let tasks = (0..100).map(|i| {
        let store = h.store().clone();
        let key = key.clone();
        async move {
            let won = store
                .put_if_absent(&key, format!("{i}").into(), PutOptions::new())
                .await?;
            Ok::<_, Error>((i, won))
        }
    });
    let winners: Vec<i32> = concurrently(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("put_if_absent"))
        .filter_map(|(i, won)| won.then_some(i))
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = get(&**h.store(), &key).await.expect("present");
    assert_eq!(
        stored,
        winners[0].to_string(),
        "the winner's value is stored"
    );
    ns.clean(&**h.store()).await;
}

/// The extension trait: text and JSON helpers, and typed decode errors instead of panics.
pub async fn json_conveniences(h: &Harness) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct User {
        name: String,
        age: u32,
    }
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("user");
    let user = User {
        name: "Ada".into(),
        age: 36,
    };
    store.put_json(&key, &user, opts()).await.expect("put_json");
    assert_eq!(
        store.get_json::<User>(&key).await.expect("get_json"),
        Some(user)
    );
    assert_eq!(
        store.get_text(&key).await.expect("get_text").as_deref(),
        Some(r#"{"name":"Ada","age":36}"#)
    );
    assert_eq!(
        store
            .get_json::<User>(&ns.key("none"))
            .await
            .expect("missing"),
        None
    );
    store
        .put_text(&key, "{\"name\": 5}", opts())
        .await
        .expect("put_text");
    assert_err!(store.get_json::<User>(&key).await, Error::Decode { .. });
    store
        .put(&key, Bytes::from_static(&[0xff]), opts())
        .await
        .expect("put");
    assert_err!(store.get_text(&key).await, Error::Decode { .. });
    assert_err!(store.get_json::<Value>(&key).await, Error::Decode { .. });
    ns.clean(store).await;
}

/// Rule 11: the empty key is refused by every operation.
pub async fn validation_empty_key(h: &Harness) {
    let store = &**h.store();
    assert_err!(store.get("").await, Error::EmptyKey);
    assert_err!(store.get_with_metadata("").await, Error::EmptyKey);
    assert_err!(store.put("", "v".into(), opts()).await, Error::EmptyKey);
    assert_err!(
        store.put_if_absent("", "v".into(), opts()).await,
        Error::EmptyKey
    );
    assert_err!(store.delete("").await, Error::EmptyKey);
    assert_err!(
        store.increment("", 1, CounterOptions::new()).await,
        Error::EmptyKey
    );
    assert_err!(store.get_many(&[String::new()]).await, Error::EmptyKey);
    assert_err!(store.delete_many(&[String::new()]).await, Error::EmptyKey);
    assert_err!(
        store.put_many(vec![PutItem::new("", "v")]).await,
        Error::EmptyKey
    );
}

/// Rule 11: `.` and `..` are refused by every operation.
pub async fn validation_reserved_keys(h: &Harness) {
    let store = &**h.store();
    for key in [".", ".."] {
        assert_err!(store.get(key).await, Error::ReservedKey { .. });
        assert_err!(
            store.get_with_metadata(key).await,
            Error::ReservedKey { .. }
        );
        assert_err!(
            store.put(key, "v".into(), opts()).await,
            Error::ReservedKey { .. }
        );
        assert_err!(
            store.put_if_absent(key, "v".into(), opts()).await,
            Error::ReservedKey { .. }
        );
        assert_err!(store.delete(key).await, Error::ReservedKey { .. });
        assert_err!(
            store.increment(key, 1, CounterOptions::new()).await,
            Error::ReservedKey { .. }
        );
        assert_err!(
            store.get_many(&[key.to_owned()]).await,
            Error::ReservedKey { .. }
        );
        assert_err!(
            store.delete_many(&[key.to_owned()]).await,
            Error::ReservedKey { .. }
        );
        assert_err!(
            store.put_many(vec![PutItem::new(key, "v")]).await,
            Error::ReservedKey { .. }
        );
    }
    // Keys that merely contain dots are fine.
    let ns = Namespace::new();
    for name in ["...", ".a", "a."] {
        put(store, &ns.key(name), "v").await;
    }
    put(store, &format!("{}.", ns.prefix()), "v").await;
    assert_eq!(list_all(store, ns.prefix(), None).await.len(), 4);
    ns.clean(store).await;
}

/// Rule 11: a key one byte over the limit is refused, one at the limit is accepted.
pub async fn validation_key_too_long(h: &Harness) {
    let store = &**h.store();
    let max = store.capabilities().max_key_bytes;
    let ns = Namespace::new();
    let at_limit = format!("{}{}", ns.prefix(), "k".repeat(max - ns.prefix().len()));
    let over = format!("{at_limit}k");
    put(store, &at_limit, "v").await;
    assert_eq!(get(store, &at_limit).await.as_deref(), Some(&b"v"[..]));
    match store.put(&over, "v".into(), opts()).await {
        Err(Error::KeyTooLong { len, max: m, .. }) => {
            assert_eq!((len, m), (max + 1, max));
        }
        other => panic!("expected KeyTooLong, got {other:?}"),
    }
    assert_err!(store.get(&over).await, Error::KeyTooLong { .. });
    assert_err!(
        store.get_with_metadata(&over).await,
        Error::KeyTooLong { .. }
    );
    assert_err!(store.delete(&over).await, Error::KeyTooLong { .. });
    assert_err!(
        store.put_if_absent(&over, "v".into(), opts()).await,
        Error::KeyTooLong { .. }
    );
    assert_err!(
        store.increment(&over, 1, CounterOptions::new()).await,
        Error::KeyTooLong { .. }
    );
    assert_err!(
        store.get_many(std::slice::from_ref(&over)).await,
        Error::KeyTooLong { .. }
    );
    assert_err!(
        store.delete_many(std::slice::from_ref(&over)).await,
        Error::KeyTooLong { .. }
    );
    // Multi-byte characters count as their UTF-8 length.
    let wide = format!(
        "{}{}",
        ns.prefix(),
        "é".repeat((max - ns.prefix().len()) / 2 + 1)
    );
    assert_err!(
        store.put(&wide, "v".into(), opts()).await,
        Error::KeyTooLong { .. }
    );
    assert_eq!(list_all(store, ns.prefix(), None).await.len(), 1);
    ns.clean(store).await;
}

/// Rule 11: a value one byte over the limit is refused before anything is sent.
pub async fn validation_value_too_large(h: &Harness) {
    let store = &**h.store();
    let max = store.capabilities().max_value_bytes;
    let ns = Namespace::new();
    let key = ns.key("big");
    // Zeroed allocations are lazy, so even a limit of hundreds of MiB costs no real memory.
    let over = Bytes::from(vec![0u8; max + 1]);
    match store.put(&key, over.clone(), opts()).await {
        Err(Error::ValueTooLarge { len, max: m, .. }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!(
            "expected ValueTooLarge, got {:?}",
            other.map_err(|e| variant(&e))
        ),
    }
    assert_err!(
        store.put_if_absent(&key, over.clone(), opts()).await,
        Error::ValueTooLarge { .. }
    );
    assert_err!(
        store.put_many(vec![PutItem::new(key.clone(), over)]).await,
        Error::ValueTooLarge { .. }
    );
    assert_eq!(get(store, &key).await, None);
}

/// Rule 11: metadata over the limit (as serialized JSON) is refused.
pub async fn validation_metadata_too_large(h: &Harness) {
    let store = &**h.store();
    let max = store.capabilities().max_metadata_bytes;
    let ns = Namespace::new();
    let key = ns.key("k");
    // A JSON string of n characters serializes to n + 2 bytes.
    let fits = json!("m".repeat(max - 2));
    let over = json!("m".repeat(max - 1));
    store
        .put(&key, "v".into(), opts().metadata(fits.clone()))
        .await
        .expect("metadata at the limit");
    match store
        .put(&key, "w".into(), opts().metadata(over.clone()))
        .await
    {
        Err(Error::MetadataTooLarge { len, max: m, .. }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!(
            "expected MetadataTooLarge, got {:?}",
            other.map_err(|e| variant(&e))
        ),
    }
    assert_err!(
        store
            .put_if_absent(&ns.key("other"), "v".into(), opts().metadata(over))
            .await,
        Error::MetadataTooLarge { .. }
    );
    let entry = store
        .get_with_metadata(&key)
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(
        (entry.value, entry.metadata),
        (Bytes::from("v"), Some(fits))
    );
    ns.clean(store).await;
}

/// Rule 11: a TTL of zero or under the backend's minimum is refused.
pub async fn validation_ttl(h: &Harness) {
    let store = &**h.store();
    let min = store.capabilities().min_ttl;
    let ns = Namespace::new();
    let key = ns.key("k");
    let mut too_short = vec![Duration::ZERO];
    if min > Duration::from_millis(1) {
        too_short.push(min - Duration::from_millis(1));
    }
    for ttl in too_short {
        match store.put(&key, "v".into(), opts().ttl(ttl)).await {
            Err(Error::TtlTooShort { ttl: t, min: m }) => assert_eq!((t, m), (ttl, min)),
            other => panic!(
                "expected TtlTooShort for {ttl:?}, got {:?}",
                other.map_err(|e| variant(&e))
            ),
        }
        assert_err!(
            store.put_if_absent(&key, "v".into(), opts().ttl(ttl)).await,
            Error::TtlTooShort { .. }
        );
        assert_err!(
            store
                .increment(&key, 1, CounterOptions::new().ttl(ttl))
                .await,
            Error::TtlTooShort { .. }
        );
        assert_err!(
            store
                .put_many(vec![
                    PutItem::new(key.clone(), "v").options(opts().ttl(ttl))
                ])
                .await,
            Error::TtlTooShort { .. }
        );
    }
    store
        .put(&key, "v".into(), opts().ttl(min))
        .await
        .expect("the minimum TTL is accepted");
    ns.clean(store).await;
}

/// Rule 11: an absolute expiration in the past, or closer than the minimum TTL, is refused.
pub async fn validation_expiration_not_in_future(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("k");
    let now = h.now();
    for at in [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(1),
        now - Duration::from_secs(10),
        now,
    ] {
        assert_err!(
            store.put(&key, "v".into(), opts().expire_at(at)).await,
            Error::ExpirationNotInFuture { .. }
        );
        assert_err!(
            store
                .increment(&key, 1, CounterOptions::new().expire_at(at))
                .await,
            Error::ExpirationNotInFuture { .. }
        );
        assert_err!(
            store
                .put_if_absent(&key, "v".into(), opts().expire_at(at))
                .await,
            Error::ExpirationNotInFuture { .. }
        );
        let item = PutItem::new(key.clone(), "v").options(opts().expire_at(at));
        assert_err!(
            store.put_many(vec![item]).await,
            Error::ExpirationNotInFuture { .. }
        );
    }
    for expiry in [
        Expiry::At(from_unix_ms(u64::MAX)),
        Expiry::At(store.capabilities().latest_expiration + Duration::from_secs(1)),
        Expiry::Ttl(Duration::MAX),
    ] {
        assert_err!(
            store
                .put(&key, "v".into(), opts().expiry(Some(expiry)))
                .await,
            Error::ExpiryTooFar { .. }
        );
    }
    let min = store.capabilities().min_ttl;
    if min >= Duration::from_secs(2) {
        let close = now + min / 2;
        assert_err!(
            store.put(&key, "v".into(), opts().expire_at(close)).await,
            Error::ExpirationNotInFuture { .. }
        );
    }
    assert_eq!(get(store, &key).await, None);
    // 2100-01-01, or the latest the backend accepts when that is earlier.
    let far = store
        .capabilities()
        .latest_expiration
        .min(UNIX_EPOCH + Duration::from_secs(4_102_444_800));
    assert!(matches!(
        store
            .put(&key, "v".into(), opts().expiry(Some(Expiry::At(far))))
            .await,
        Ok(())
    ));
    ns.clean(store).await;
}

/// Rule 11: list limits of 0 and over the maximum are refused.
pub async fn validation_list_limit(h: &Harness) {
    let store = &**h.store();
    let max = store.capabilities().max_list_limit;
    for limit in [0, max + 1, usize::MAX] {
        match store.list(ListOptions::new().limit(limit)).await {
            Err(Error::InvalidListLimit { limit: l, max: m }) => assert_eq!((l, m), (limit, max)),
            other => panic!(
                "expected InvalidListLimit for {limit}, got {:?}",
                other.map_err(|e| variant(&e))
            ),
        }
    }
    let ns = Namespace::new();
    fill(store, &ns, 3).await;
    let page = store
        .list(ListOptions::new().prefix(ns.prefix()).limit(1))
        .await
        .expect("limit 1");
    assert_eq!(page.keys.len(), 1);
    ns.clean(store).await;
}

/// Rule 11: a cursor the store did not issue is refused with a typed error.
pub async fn validation_cursor(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    fill(store, &ns, 5).await;
    let page = store
        .list(ListOptions::new().prefix(ns.prefix()).limit(2))
        .await
        .expect("list");
    let good = page.cursor.clone().expect("a cursor");
    for bad in ["not a cursor", "", "%%%", "00000000", &format!("{good}zz")] {
        assert_err!(
            store
                .list(
                    ListOptions::new()
                        .prefix(ns.prefix())
                        .cursor(Some(bad.to_owned()))
                )
                .await,
            Error::InvalidCursor { .. }
        );
    }
    let elsewhere = ListOptions::new()
        .prefix(ns.key("other/"))
        .cursor(Some(good.clone()));
    assert_err!(store.list(elsewhere).await, Error::InvalidCursor { .. });
    let next = store
        .list(
            ListOptions::new()
                .prefix(ns.prefix())
                .limit(2)
                .cursor(Some(good)),
        )
        .await
        .expect("the issued cursor still works");
    assert_eq!(next.keys.len(), 2);
    ns.clean(store).await;
}

/// Rule 11: a cursor is bound to the prefix it was issued for. Listing another prefix with it,
/// even a shorter one that its keys start with (where the listing would silently skip every key
/// before the cursor), is refused.
pub async fn validation_cursor_bound_to_prefix(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    for name in ["0", "a", "a:1", "a:2", "a:3", "b"] {
        store
            .put(&ns.key(name), Bytes::from_static(b"v"), PutOptions::new())
            .await
            .expect("put");
    }
    let page = store
        .list(ListOptions::new().prefix(ns.key("a:")).limit(1))
        .await
        .expect("list");
    let cursor = page
        .cursor
        .clone()
        .expect("a cursor after the first of three keys");
    for other in [
        ns.key("a"),
        ns.prefix().to_owned(),
        String::new(),
        ns.key("a:1"),
        ns.key("a:2"),
    ] {
        let listing = ListOptions::new()
            .prefix(other.clone())
            .cursor(Some(cursor.clone()));
        assert!(
            matches!(store.list(listing).await, Err(Error::InvalidCursor { .. })),
            "a cursor of prefix {:?} was accepted for prefix {other:?}",
            ns.key("a:")
        );
    }
    let mut names: Vec<String> = page.keys.into_iter().map(|k| k.name).collect();
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let rest = store
            .list(ListOptions::new().prefix(ns.key("a:")).cursor(Some(cursor)))
            .await
            .expect("the issued cursor, on its own prefix");
        names.extend(rest.keys.into_iter().map(|k| k.name));
        next = rest.cursor;
    }
    assert_eq!(names, [ns.key("a:1"), ns.key("a:2"), ns.key("a:3")]);
    ns.clean(store).await;
}

/// The version `key` has now.
async fn version(store: &dyn KvStore, key: &str) -> Version {
    store
        .get_with_metadata(key)
        .await
        .unwrap_or_else(|e| panic!("get_with_metadata {key:?}: {e}"))
        .unwrap_or_else(|| panic!("{key:?} is present"))
        .version
        .unwrap_or_else(|| panic!("{key:?} has a version (conditional_writes is true)"))
}

/// Rule 12: a conditional write writes only when its condition holds, and otherwise fails with
/// `ConditionFailed`, writing nothing; every change gives the entry a new version. A store
/// without conditional writes refuses every condition with `Unsupported` and writes nothing.
pub async fn conditional_writes(h: &Harness) {
    let store = &**h.store();
    let ns = Namespace::new();
    let key = ns.key("cas");
    let value = |v: &'static str| Bytes::from_static(v.as_bytes());
    if !store.capabilities().conditional_writes {
        for options in [
            PutOptions::new().if_absent(),
            PutOptions::new().if_version(Version::from_token("any")),
            PutOptions::new().if_version(Version::from_u64(1)),
        ] {
            assert_err!(
                store.put(&key, value("v"), options).await,
                Error::Unsupported { .. }
            );
        }
        assert_err!(
            store.delete_if_version(&key, &Version::from_u64(1)).await,
            Error::Unsupported { .. }
        );
        assert_eq!(
            get(store, &key).await,
            None,
            "a refused condition writes nothing"
        );
        put(store, &key, "v").await;
        let entry = store
            .get_with_metadata(&key)
            .await
            .expect("read")
            .expect("written");
        assert_eq!(
            entry.version, None,
            "no versions without conditional writes"
        );
        ns.clean(store).await;
        return;
    }

    store
        .put(&key, value("one"), PutOptions::new().if_absent())
        .await
        .expect("if_absent on an absent key writes");
    assert_err!(
        store
            .put(&key, value("two"), PutOptions::new().if_absent())
            .await,
        Error::ConditionFailed { .. }
    );
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"one"[..]));

    let first = version(store, &key).await;
    assert_eq!(
        version(store, &key).await,
        first,
        "reading does not change the version"
    );
    store
        .put(
            &key,
            value("two"),
            PutOptions::new().if_version(first.clone()),
        )
        .await
        .expect("if_version with the current version writes");
    let second = version(store, &key).await;
    assert_ne!(second, first, "a write changes the version");
    assert_err!(
        store
            .put(
                &key,
                value("three"),
                PutOptions::new().if_version(first.clone())
            )
            .await,
        Error::ConditionFailed { .. }
    );
    assert_eq!(get(store, &key).await.as_deref(), Some(&b"two"[..]));

    store
        .put(
            &key,
            value("two"),
            PutOptions::new().metadata(json!({"tag": "x"})),
        )
        .await
        .expect("put");
    let third = version(store, &key).await;
    assert_ne!(third, second, "new metadata is a new version");

    assert_err!(
        store.delete_if_version(&key, &second).await,
        Error::ConditionFailed { .. }
    );
    assert!(
        get(store, &key).await.is_some(),
        "a failed delete deletes nothing"
    );
    store
        .delete_if_version(&key, &third)
        .await
        .expect("delete_if_version with the current version deletes");
    assert_eq!(get(store, &key).await, None);
    let listed = store
        .list(ListOptions::new().prefix(ns.prefix()))
        .await
        .expect("list");
    assert!(listed.keys.is_empty(), "deleted keys are not listed");
    assert_err!(
        store
            .put(
                &key,
                value("back"),
                PutOptions::new().if_version(third.clone())
            )
            .await,
        Error::ConditionFailed { .. }
    );
    assert_err!(
        store.delete_if_version(&key, &third).await,
        Error::ConditionFailed { .. }
    );
    assert_eq!(
        get(store, &key).await,
        None,
        "a deleted entry is not resurrected"
    );

    let counter = ns.key("counter");
    store
        .increment(&counter, 1, CounterOptions::new())
        .await
        .expect("incr");
    let before = version(store, &counter).await;
    store
        .increment(&counter, 1, CounterOptions::new())
        .await
        .expect("incr");
    assert_ne!(
        version(store, &counter).await,
        before,
        "an increment is a new version"
    );

    let expiring = ns.key("expiring");
    let ttl = h.short_ttl();
    store
        .put(&expiring, value("old"), PutOptions::new().ttl(ttl))
        .await
        .expect("put");
    let old = version(store, &expiring).await;
    h.advance(past_expiry(h, ttl)).await;
    assert_err!(
        store
            .put(&expiring, value("new"), PutOptions::new().if_version(old))
            .await,
        Error::ConditionFailed { .. }
    );
    store
        .put(&expiring, value("new"), PutOptions::new().if_absent())
        .await
        .expect("an expired key is absent");

    let conditional = PutOptions::new().if_absent();
    assert_err!(
        store
            .put_many(vec![
                PutItem::new(ns.key("batch"), "v").options(conditional.clone()),
            ])
            .await,
        Error::Unsupported { .. }
    );
    assert_err!(
        store
            .put_if_absent(&ns.key("batch"), value("v"), conditional)
            .await,
        Error::Unsupported { .. }
    );
    assert_eq!(get(store, &ns.key("batch")).await, None);
    ns.clean(store).await;
}

/// Rule 12: of many concurrent compare-and-sets against one version, exactly one succeeds, and
/// its value is the one stored.
pub async fn conditional_put_one_winner(h: &Harness) {
    if !h.store().capabilities().conditional_writes {
        skip(
            "conditional_put_one_winner",
            "the backend has no conditional writes (Capabilities::conditional_writes is false)",
        );
        return;
    }
    let ns = Namespace::new();
    let key = Arc::new(ns.key("contended"));
    put(&**h.store(), &key, "start").await;
    let read = version(&**h.store(), &key).await;
    let tasks = (0..32).map(|i| {
        let store = h.store().clone();
        let key = key.clone();
        let read = read.clone();
        async move {
            let outcome = store
                .put(
                    &key,
                    format!("{i}").into(),
                    PutOptions::new().if_version(read),
                )
                .await;
            (i, outcome)
        }
    });
    let mut winners = Vec::new();
    for (i, outcome) in concurrently(tasks).await {
        match outcome {
            Ok(()) => winners.push(i),
            Err(Error::ConditionFailed { .. }) => {}
            Err(e) => panic!("conditional put {i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = get(&**h.store(), &key).await.expect("present");
    assert_eq!(
        stored,
        winners[0].to_string(),
        "the winner's value is stored"
    );
    ns.clean(&**h.store()).await;
}

/// Rule 11: a batch get over the backend's maximum is refused.
pub async fn validation_batch_too_large(h: &Harness) {
    let store = &**h.store();
    let max = store.capabilities().max_batch_get;
    let ns = Namespace::new();
    let keys: Vec<String> = (0..=max).map(|i| ns.key(&i.to_string())).collect();
    match store.get_many(&keys).await {
        Err(Error::BatchTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!(
            "expected BatchTooLarge, got {:?}",
            other.map_err(|e| variant(&e))
        ),
    }
    assert_eq!(
        store
            .get_many(&keys[..max])
            .await
            .expect("the maximum batch")
            .len(),
        max
    );
}

/// Every conformance case, for runners other than
/// [`conformance_tests!`](crate::conformance_tests) (a Rust Worker on `wasm32`, say). The
/// model-based random test is not among them: it needs proptest, on native targets.
///
/// ```
/// assert!(kvkit_testsuite::cases::all().iter().any(|c| c.name == "get_missing_is_none"));
/// ```
pub fn all() -> Vec<crate::Case> {
    crate::case_list!(
        get_missing_is_none,
        binary_values_round_trip,
        overwrite_replaces_value_metadata_and_expiry,
        delete_is_idempotent,
        metadata_round_trips,
        expiration_is_reported,
        list_orders_by_bytes,
        list_filters_by_prefix_literally,
        list_paginates_2500_keys_at_limit_1000,
        list_paginates_2500_keys_at_limit_7,
        list_pages_after_deletes_and_inserts,
        list_stream_follows_cursors,
        batch_operations,
        put_many_validates_before_writing,
        counter_refuses_non_canonical_values,
        counter_exact_under_concurrency,
        put_if_absent_one_winner,
        conditional_writes,
        conditional_put_one_winner,
        json_conveniences,
        validation_empty_key,
        validation_reserved_keys,
        validation_key_too_long,
        validation_value_too_large,
        validation_metadata_too_large,
        validation_ttl,
        validation_expiration_not_in_future,
        validation_list_limit,
        validation_cursor,
        validation_cursor_bound_to_prefix,
        validation_batch_too_large,
        ttl_expiry_hides_key_everywhere,
        absolute_expiration,
        counter_basics,
        counter_now_agrees_with_increment,
        counter_keeps_metadata_and_expiration,
        put_if_absent_basics,
    )
}
