//! The pattern cases: the cache, sessions and rate limiter of `kvkit-patterns`, over any store.
//!
//! Each case takes a [`Harness`]. The patterns read a [`ManualClock`]: the store's own when the
//! harness has one (so store expiry and pattern time move together), or one set to the real time
//! otherwise, which the cases move without sleeping; only the few cases that need the store
//! itself to expire something wait for real time on such a harness.
//!
//! Keys are namespaced per case (`cache:{ns}…`, identifiers and user ids with a random part),
//! so the cases share one store safely.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let clock = kvkit_core::ManualClock::new();
//! let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
//! let harness = kvkit_testsuite::Harness::manual(store, clock);
//! kvkit_testsuite::patterns::ratelimit_fixed_window(&harness).await;
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kvkit_core::backend::{from_unix_ms, from_unix_secs, unix_ms};
use kvkit_core::{Clock, Error, KvStore, KvStoreExt, ManualClock, PutOptions, SystemClock};
use kvkit_patterns::{
    Cache, CacheError, CacheOptions, CacheStatus, RateLimiter, Session, SessionManager, Window,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::rt::{concurrently, sleep};
use crate::{Harness, Namespace, skip};

type Store = Arc<dyn KvStore>;

/// Time for the patterns of one case.
struct Time {
    clock: ManualClock,
    /// Whether the store reads the same clock.
    shared: bool,
}

impl Time {
    fn of(h: &Harness) -> Self {
        match h.manual_clock() {
            Some(clock) => Self {
                clock: clock.clone(),
                shared: true,
            },
            None => Self {
                clock: ManualClock::at(SystemClock.now()),
                shared: false,
            },
        }
    }

    fn now_ms(&self) -> u64 {
        unix_ms(self.clock.now())
    }

    /// Moves pattern time (and the store's, when shared) without sleeping.
    fn skip(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Lets `by` pass for the store too: moves the clock, and sleeps when the store runs on
    /// real time.
    async fn expire(&self, by: Duration) {
        self.clock.advance(by);
        if !self.shared {
            sleep(by).await;
        }
    }
}

/// Waits (up to a generous bound, for a loaded machine) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn counting_fetch(
    calls: &Arc<AtomicUsize>,
    value: Value,
) -> impl FnOnce() -> futures_util::future::Ready<Result<Value, std::io::Error>> + Send + 'static {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        futures_util::future::ready(Ok(value))
    }
}

fn cache(h: &Harness, time: &Time) -> Cache<Store> {
    Cache::builder(h.store().clone())
        .clock(time.clock.clone())
        .build()
}

fn options() -> CacheOptions {
    CacheOptions::new(Duration::from_secs(300)).stale_while_revalidate(Duration::from_secs(60))
}

/// Miss, then hit while fresh, then stale (served at once, refreshed in the background), then
/// a miss once past `ttl + stale_while_revalidate`, as the TypeScript pattern.
pub async fn cache_miss_hit_stale_miss(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Namespace::new().key("product:1");
    let calls = Arc::new(AtomicUsize::new(0));
    let opts = options();
    let get = |v: Value| cache.get_or_fetch(&key, &opts, counting_fetch(&calls, v));

    let first = get(json!({"v": 1})).await.expect("miss");
    assert_eq!(
        (first.status, &first.value),
        (CacheStatus::Miss, &json!({"v": 1}))
    );
    let hit = get(json!({"v": 2})).await.expect("hit");
    assert_eq!(
        (hit.status, &hit.value),
        (CacheStatus::Hit, &json!({"v": 1}))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    time.skip(Duration::from_secs(300));
    let stale = get(json!({"v": 2})).await.expect("stale");
    assert_eq!(
        (stale.status, &stale.value),
        (CacheStatus::Stale, &json!({"v": 1}))
    );
    eventually("the background refresh ran", || {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;
    let store = h.store().clone();
    let cache_key = format!("cache:{key}");
    let mut refreshed = false;
    for _ in 0..2000 {
        let raw = store.get_json::<Value>(&cache_key).await.expect("read");
        if raw.is_some_and(|v| v["data"] == json!({"v": 2})) {
            refreshed = true;
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert!(refreshed, "the refresh stored the new value");
    let fresh = get(json!({"v": 3})).await.expect("hit after refresh");
    assert_eq!(
        (fresh.status, &fresh.value),
        (CacheStatus::Hit, &json!({"v": 2}))
    );

    time.skip(Duration::from_secs(360));
    let expired = get(json!({"v": 4})).await.expect("miss after swr");
    assert_eq!(
        (expired.status, &expired.value),
        (CacheStatus::Miss, &json!({"v": 4}))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// The entry is the TypeScript pattern's envelope, stored for `ttl + swr` (at least the
/// backend's minimum TTL).
pub async fn cache_stores_seed_envelope(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Namespace::new().key("envelope");
    let opts =
        CacheOptions::new(Duration::from_secs(5)).stale_while_revalidate(Duration::from_secs(5));
    let value: Value = cache
        .cached(&key, &opts, || async {
            Ok::<_, std::io::Error>(json!([1, "two", null]))
        })
        .await
        .expect("cached");
    assert_eq!(value, json!([1, "two", null]));
    let entry = h
        .store()
        .get_with_metadata(&format!("cache:{key}"))
        .await
        .expect("read")
        .expect("stored");
    let envelope: Value = serde_json::from_slice(&entry.value).expect("JSON");
    assert_eq!(
        envelope,
        json!({"data": [1, "two", null], "timestamp": time.now_ms()})
    );
    assert_eq!(
        std::str::from_utf8(&entry.value).expect("utf-8"),
        format!(r#"{{"data":[1,"two",null],"timestamp":{}}}"#, time.now_ms()),
        "compact, in the order JSON.stringify writes it"
    );
    let lifetime = Duration::from_secs(10).max(h.store().capabilities().min_ttl);
    let expiration = unix_ms(entry.expiration.expect("the entry expires")) / 1000;
    let store_now = unix_ms(h.now()) / 1000;
    assert!(
        expiration >= store_now + lifetime.as_secs() - 1
            && expiration <= store_now + lifetime.as_secs() + 2,
        "expires after ttl + swr (at least the minimum TTL): {expiration} vs now {store_now}"
    );
}

/// An entry written by the TypeScript pattern is a fresh hit.
pub async fn cache_reads_seed_entry(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Namespace::new().key("seed");
    let raw = format!(
        r#"{{"data":{{"id":7,"name":"Widget"}},"timestamp":{}}}"#,
        time.now_ms() - 1000
    );
    h.store()
        .put(&format!("cache:{key}"), raw.into(), PutOptions::new())
        .await
        .expect("put");
    let calls = Arc::new(AtomicUsize::new(0));
    let got = cache
        .get_or_fetch(&key, &options(), counting_fetch(&calls, json!("fetched")))
        .await
        .expect("get");
    assert_eq!(got.status, CacheStatus::Hit);
    assert_eq!(got.value, json!({"id": 7, "name": "Widget"}));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Concurrent misses for one key call the fetcher once; every caller gets its value.
pub async fn cache_single_flight(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Arc::new(Namespace::new().key("hot"));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks = (0..200).map(|_| {
        let (cache, key, calls) = (cache.clone(), Arc::clone(&key), Arc::clone(&calls));
        async move {
            cache
                .cached(&key, &options(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(json!("expensive"))
                })
                .await
        }
    });
    for result in concurrently(tasks).await {
        assert_eq!(result.expect("cached"), json!("expensive"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for all callers");
}

/// Concurrent misses share the fetcher's error; nothing is cached.
pub async fn cache_fetch_error_without_entry(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Arc::new(Namespace::new().key("failing"));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks = (0..20).map(|_| {
        let (cache, key, calls) = (cache.clone(), Arc::clone(&key), Arc::clone(&calls));
        async move {
            cache
                .cached::<Value, _, _, _>(&key, &options(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("database unavailable"))
                })
                .await
        }
    });
    for result in concurrently(tasks).await {
        match result {
            Err(CacheError::Fetch(e)) => assert_eq!(e.to_string(), "database unavailable"),
            other => panic!("expected the fetch error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.store().get(&format!("cache:{key}")).await.expect("read"),
        None
    );
}

/// Many stale hits start one refresh; a second process (another `Cache` on the same store)
/// sees the lease and does not refresh.
pub async fn cache_one_refresh_at_a_time(h: &Harness) {
    let time = Time::of(h);
    let here = cache(h, &time);
    let elsewhere = cache(h, &time);
    let key = Arc::new(Namespace::new().key("stale"));
    let calls = Arc::new(AtomicUsize::new(0));
    here.cached(&key, &options(), counting_fetch(&calls, json!(1)))
        .await
        .expect("prime");
    time.skip(Duration::from_secs(330));

    let release = Arc::new(Notify::new());
    let blocked_fetch = |calls: &Arc<AtomicUsize>, release: &Arc<Notify>| {
        let (calls, release) = (Arc::clone(calls), Arc::clone(release));
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            Ok::<_, std::io::Error>(json!(2))
        }
    };
    let stale = here
        .get_or_fetch(&key, &options(), blocked_fetch(&calls, &release))
        .await
        .expect("stale");
    assert_eq!(stale.status, CacheStatus::Stale);
    eventually("the refresh started", || calls.load(Ordering::SeqCst) == 2).await;
    for cache in [&here, &here, &elsewhere, &elsewhere, &here] {
        let again = cache
            .get_or_fetch(&key, &options(), blocked_fetch(&calls, &release))
            .await
            .expect("stale again");
        assert_eq!((again.status, again.value), (CacheStatus::Stale, json!(1)));
    }
    // Give a wrongly started second refresh the time to show itself.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one refresh across both caches"
    );
    release.notify_one();
    let store = h.store().clone();
    let lease = format!("cache-lease:{key}");
    let mut released = false;
    for _ in 0..2000 {
        if store.get(&lease).await.expect("read lease").is_none() {
            released = true;
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the lease is released after the refresh");
    let fresh = elsewhere
        .get_or_fetch(&key, &options(), counting_fetch(&calls, json!(3)))
        .await
        .expect("fresh");
    assert_eq!((fresh.status, fresh.value), (CacheStatus::Hit, json!(2)));
}

/// A failing background refresh keeps serving the stale value.
pub async fn cache_stale_on_refresh_error(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Namespace::new().key("flaky");
    cache
        .cached(&key, &options(), || async {
            Ok::<_, std::io::Error>(json!("old"))
        })
        .await
        .expect("prime");
    time.skip(Duration::from_secs(310));
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let calls = Arc::clone(&calls);
        let got = cache
            .get_or_fetch::<Value, _, _, _>(&key, &options(), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(std::io::Error::other("upstream down"))
            })
            .await
            .expect("stale value despite the error");
        assert_eq!((got.status, got.value), (CacheStatus::Stale, json!("old")));
    }
    eventually("a refresh was attempted", || {
        calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    let stored = h
        .store()
        .get_json::<Value>(&format!("cache:{key}"))
        .await
        .expect("read")
        .expect("still cached");
    assert_eq!(
        stored["data"],
        json!("old"),
        "a failed refresh keeps the entry"
    );
}

/// "Not found" is cached for the negative TTL when asked, and not otherwise.
pub async fn cache_negative_caching(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let ns = Namespace::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let missing = |calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<Value>, std::io::Error>(None)
        }
    };
    let negative = options().negative_ttl(Duration::from_secs(30));
    let key = ns.key("absent");
    let first = cache
        .get_or_fetch_optional(&key, &negative, missing(&calls))
        .await
        .expect("first");
    assert_eq!((first.value, first.status), (None, CacheStatus::Miss));
    let second = cache
        .get_or_fetch_optional(&key, &negative, missing(&calls))
        .await
        .expect("second");
    assert_eq!((second.value, second.status), (None, CacheStatus::Hit));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let raw = h
        .store()
        .get_json::<Value>(&format!("cache:{key}"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(raw["data"], Value::Null);
    time.skip(Duration::from_secs(30));
    cache
        .get_or_fetch_optional(&key, &negative, missing(&calls))
        .await
        .expect("after the negative ttl");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let other = ns.key("absent-uncached");
    for _ in 0..2 {
        cache
            .get_or_fetch_optional(&other, &options(), missing(&calls))
            .await
            .expect("uncached");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "without negative_ttl, not cached"
    );
    assert_eq!(
        h.store()
            .get(&format!("cache:{other}"))
            .await
            .expect("read"),
        None
    );
}

/// An entry that does not decode is a miss and is overwritten; a key too long is a typed error.
pub async fn cache_bad_entries_and_keys(h: &Harness) {
    let time = Time::of(h);
    let cache = cache(h, &time);
    let key = Namespace::new().key("corrupt");
    let cache_key = format!("cache:{key}");
    for garbage in [
        &b"not json"[..],
        b"{\"data\":1}",
        b"{\"data\":\"text\",\"timestamp\":1}",
    ] {
        h.store()
            .put(&cache_key, garbage.to_vec().into(), PutOptions::new())
            .await
            .expect("put");
        let got = cache
            .get_or_fetch(&key, &options(), || async { Ok::<u64, std::io::Error>(42) })
            .await
            .expect("miss");
        assert_eq!((got.value, got.status), (42, CacheStatus::Miss));
        let stored = h.store().get_json::<Value>(&cache_key).await.expect("read");
        assert_eq!(stored.expect("overwritten")["data"], json!(42));
    }
    cache.invalidate(&key).await.expect("invalidate");
    assert_eq!(h.store().get(&cache_key).await.expect("read"), None);

    let too_long = "k".repeat(h.store().capabilities().max_key_bytes);
    let err = cache
        .cached(&too_long, &options(), || async {
            Ok::<u64, std::io::Error>(1)
        })
        .await
        .expect_err("key too long");
    assert!(
        matches!(err, CacheError::Key(Error::KeyTooLong { .. })),
        "{err:?}"
    );
}

fn sessions(h: &Harness, time: &Time) -> SessionManager<Store> {
    SessionManager::builder(h.store().clone())
        .clock(time.clock.clone())
        .build()
}

fn unique_user(name: &str) -> String {
    format!("{}{name}", Namespace::new().prefix())
}

/// Create, get, destroy, in the TypeScript pattern's format and TTL.
pub async fn session_lifecycle_and_format(h: &Harness) {
    let time = Time::of(h);
    let sessions = sessions(h, &time);
    let user = unique_user("ada");
    let id = sessions
        .create_for(&user, "ada@example.com", "admin")
        .await
        .expect("create");
    assert!(kvkit_patterns::SessionId::parse(id.as_str()).is_some());
    assert_eq!(id.as_str().as_bytes()[14], b'4', "a version 4 UUID");
    let entry = h
        .store()
        .get_with_metadata(&format!("session:{id}"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        std::str::from_utf8(&entry.value).expect("utf-8"),
        format!(
            r#"{{"userId":"{user}","email":"ada@example.com","role":"admin","createdAt":{}}}"#,
            time.now_ms()
        )
    );
    let expiration = unix_ms(entry.expiration.expect("expires")) / 1000;
    let store_now = unix_ms(h.now()) / 1000;
    assert!((store_now + 86_399..=store_now + 86_401).contains(&expiration));
    let session = sessions.get(id.as_str()).await.expect("get").expect("live");
    assert_eq!(
        session,
        Session {
            user_id: user.clone(),
            email: "ada@example.com".into(),
            role: "admin".into(),
            created_at: from_unix_ms(time.now_ms()),
        }
    );
    sessions.destroy(id.as_str()).await.expect("destroy");
    assert_eq!(sessions.get(id.as_str()).await.expect("get"), None);
    sessions.destroy(id.as_str()).await.expect("destroy again");
}

/// A session written by the TypeScript pattern reads back, and refreshes.
pub async fn session_reads_seed_session(h: &Harness) {
    let time = Time::of(h);
    let sessions = sessions(h, &time);
    let id = "3b241101-e2bb-4255-8caf-4136c566a962";
    let key = format!("session:{id}");
    let raw = r#"{"userId":"ts-user","email":"ts@example.com","role":"viewer","createdAt":1767225600000}"#;
    h.store()
        .put(
            &key,
            raw.into(),
            PutOptions::new().ttl(Duration::from_secs(86_400)),
        )
        .await
        .expect("put");
    let session = sessions.get(id).await.expect("get").expect("live");
    assert_eq!(session.user_id, "ts-user");
    assert_eq!(session.created_at, from_unix_ms(1_767_225_600_000));
    assert!(sessions.refresh(id).await.expect("refresh"));
    assert_eq!(
        h.store().get(&key).await.expect("read").as_deref(),
        Some(raw.as_bytes()),
        "a refresh keeps the stored JSON byte for byte"
    );
    sessions.destroy(id).await.expect("destroy");
}

/// Ids that are not this library's never reach the store.
pub async fn session_rejects_bad_ids(h: &Harness) {
    let time = Time::of(h);
    let recorder = Arc::new(Recorder::new(h.store().clone()));
    let sessions: SessionManager<Arc<Recorder>> = SessionManager::builder(Arc::clone(&recorder))
        .clock(time.clock.clone())
        .build();
    let oversized = "a".repeat(100_000);
    for bad in [
        "",
        ".",
        "..",
        "not-a-uuid",
        "3B241101-E2BB-4255-8CAF-4136C566A962",
        "3b241101-e2bb-4255-8caf-4136c566a96",
        "3b241101-e2bb-4255-8caf-4136c566a962/../x",
        "3b241101_e2bb_4255_8caf_4136c566a962",
        oversized.as_str(),
        "session:3b241101-e2bb-4255-8caf-4136c566a962",
    ] {
        assert_eq!(sessions.get(bad).await.expect("get"), None);
        assert_eq!(sessions.get_and_refresh(bad).await.expect("refresh"), None);
        assert!(!sessions.refresh(bad).await.expect("refresh"));
        assert_eq!(sessions.rotate(bad).await.expect("rotate"), None);
        sessions.destroy(bad).await.expect("destroy");
    }
    assert_eq!(recorder.calls(), 0, "no request for a malformed id");
    let unknown = "3b241101-e2bb-4255-8caf-4136c566a962";
    assert_eq!(sessions.get(unknown).await.expect("get"), None);
    assert_eq!(recorder.calls(), 1);
}

/// An expired session reads as `None`.
pub async fn session_expires(h: &Harness) {
    let time = Time::of(h);
    let ttl = h.short_ttl().max(Duration::from_secs(1));
    let sessions: SessionManager<Store> = SessionManager::builder(h.store().clone())
        .clock(time.clock.clone())
        .ttl(ttl)
        .build();
    let id = sessions
        .create_for(&unique_user("brief"), "b@example.com", "user")
        .await
        .expect("create");
    assert!(sessions.get(id.as_str()).await.expect("get").is_some());
    time.expire(ttl + Duration::from_millis(1100)).await;
    assert_eq!(sessions.get(id.as_str()).await.expect("get"), None);
}

/// Refresh slides the expiry, writing at most once per interval.
pub async fn session_refresh_writes_at_most_once_per_interval(h: &Harness) {
    let time = Time::of(h);
    let recorder = Arc::new(Recorder::new(h.store().clone()));
    let sessions: SessionManager<Arc<Recorder>> = SessionManager::builder(Arc::clone(&recorder))
        .clock(time.clock.clone())
        .refresh_interval(Duration::from_secs(60))
        .build();
    let id = sessions
        .create_for(&unique_user("slider"), "s@example.com", "user")
        .await
        .expect("create");
    // The session's own key, which Cloudflare lets a client write once a second; its
    // user-index entry is written with it, in the same call or (on a store with conditional
    // writes, after the compare-and-set of the session) in the next.
    let writes = || recorder.session_writes();
    let after_create = writes();
    for _ in 0..10 {
        assert!(sessions.refresh(id.as_str()).await.expect("refresh"));
        time.skip(Duration::from_secs(5));
    }
    assert_eq!(writes(), after_create, "no write within the interval");
    time.skip(Duration::from_secs(10));
    let session = sessions
        .get_and_refresh(id.as_str())
        .await
        .expect("refresh")
        .expect("live");
    assert_eq!(session.email, "s@example.com");
    assert_eq!(
        writes(),
        after_create + 1,
        "one write once the interval passed"
    );
    assert!(sessions.refresh(id.as_str()).await.expect("refresh"));
    assert_eq!(writes(), after_create + 1);
    sessions.destroy(id.as_str()).await.expect("destroy");
}

/// A session write the store refuses (here, data over its value limit) keeps the session id,
/// a bearer credential, out of the error and so out of every log line that records it. Skipped
/// where the limit is too large to reach in a test (over 32 MiB).
pub async fn session_write_failure_hides_id(h: &Harness) {
    let max = h.store().capabilities().max_value_bytes;
    if max > 32 << 20 {
        skip(
            "session_write_failure_hides_id",
            "values up to the store's limit are too large for a test",
        );
        return;
    }
    let sessions: SessionManager<Store, Value> = SessionManager::builder(h.store().clone()).build();
    let data = json!({"userId": unique_user("big"), "blob": "x".repeat(max)});
    let error = sessions
        .create(&data)
        .await
        .expect_err("over the value limit");
    assert!(matches!(error, Error::ValueTooLarge { .. }), "{error:?}");
    crate::secrets::assert_hides_session_id(&error, None);
}

/// Rotation moves the data to a new id and kills the old one; the index follows.
pub async fn session_rotate(h: &Harness) {
    let time = Time::of(h);
    let sessions = sessions(h, &time);
    let user = unique_user("rotor");
    let old = sessions
        .create_for(&user, "r@example.com", "user")
        .await
        .expect("create");
    let new = sessions
        .rotate(old.as_str())
        .await
        .expect("rotate")
        .expect("rotated");
    assert_ne!(old, new);
    assert_eq!(sessions.get(old.as_str()).await.expect("get"), None);
    assert_eq!(
        sessions
            .get(new.as_str())
            .await
            .expect("get")
            .expect("live")
            .email,
        "r@example.com"
    );
    assert_eq!(
        sessions.user_sessions(&user).await.expect("list"),
        vec![new]
    );
}

/// "Log out everywhere": every session of one user, and none of another whose id extends it.
pub async fn session_user_index(h: &Harness) {
    let time = Time::of(h);
    let sessions = sessions(h, &time);
    let user = unique_user("multi");
    let neighbour = format!("{user}:x");
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(
            sessions
                .create_for(&user, "m@example.com", "user")
                .await
                .expect("create"),
        );
    }
    let theirs = sessions
        .create_for(&neighbour, "n@example.com", "user")
        .await
        .expect("create");
    let mut listed = sessions.user_sessions(&user).await.expect("list");
    listed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    mine.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(listed, mine);
    sessions
        .destroy(mine[0].as_str())
        .await
        .expect("destroy one");
    assert_eq!(sessions.user_sessions(&user).await.expect("list").len(), 2);
    assert_eq!(sessions.destroy_user_sessions(&user).await.expect("all"), 2);
    for id in &mine {
        assert_eq!(sessions.get(id.as_str()).await.expect("get"), None);
    }
    assert!(
        sessions
            .user_sessions(&user)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(sessions.get(theirs.as_str()).await.expect("get").is_some());
    assert_eq!(
        sessions.user_sessions(&neighbour).await.expect("list"),
        vec![theirs]
    );

    let generic: SessionManager<Store, Value> = SessionManager::builder(h.store().clone())
        .clock(time.clock.clone())
        .build();
    let id = generic
        .create(&json!({"userId": user, "cart": [1, 2]}))
        .await
        .expect("create generic");
    assert_eq!(
        generic.get(id.as_str()).await.expect("get").expect("live")["cart"],
        json!([1, 2])
    );
    assert_eq!(generic.user_sessions(&user).await.expect("list"), vec![id]);
}

fn limiter(h: &Harness, time: &Time, limit: u64, window: Window) -> RateLimiter<Store> {
    RateLimiter::builder(h.store().clone(), limit, Duration::from_secs(60))
        .window(window)
        .clock(time.clock.clone())
        .build()
}

/// The TypeScript pattern's fixed window: keys, counts, `remaining`, `reset_at`, and a fresh
/// window after the boundary.
pub async fn ratelimit_fixed_window(h: &Harness) {
    let time = Time::of(h);
    let limiter = limiter(h, &time, 3, Window::Fixed);
    let id = unique_user("client");
    let now = time.now_ms() / 1000;
    let start = now - now % 60;
    for remaining in [2, 1, 0] {
        let r = limiter.check(&id).await.expect("check");
        assert!(r.allowed);
        assert_eq!(
            (r.remaining, r.limit, r.reset_at),
            (remaining, 3, from_unix_secs(start + 60))
        );
        let until_reset = ((start + 60) * 1000 - time.now_ms()).div_ceil(1000);
        assert_eq!(r.reset_after, Duration::from_secs(until_reset));
    }
    let rejected = limiter.check(&id).await.expect("check");
    assert!(!rejected.allowed);
    assert_eq!(
        (rejected.remaining, rejected.reset_at),
        (0, from_unix_secs(start + 60))
    );
    let key = format!("ratelimit:{id}:{start}");
    assert_eq!(
        h.store().get(&key).await.expect("read").as_deref(),
        Some(&b"3"[..]),
        "the stored count is what was admitted"
    );
    let peek = limiter.peek(&id).await.expect("peek");
    assert_eq!((peek.allowed, peek.remaining), (false, 0));

    time.skip(Duration::from_secs(60 - (time.now_ms() / 1000) % 60));
    let next = limiter.check(&id).await.expect("check");
    assert!(next.allowed);
    assert_eq!(
        (next.remaining, next.reset_at),
        (2, from_unix_secs(start + 120))
    );
}

/// A count written by the TypeScript pattern is continued; `peek` uses no quota.
pub async fn ratelimit_continues_seed_count(h: &Harness) {
    let time = Time::of(h);
    let limiter = limiter(h, &time, 10, Window::Fixed);
    let id = unique_user("shared");
    let now = time.now_ms() / 1000;
    let key = format!("ratelimit:{id}:{}", now - now % 60);
    h.store()
        .put(
            &key,
            "7".into(),
            PutOptions::new().ttl(Duration::from_secs(60)),
        )
        .await
        .expect("put");
    for _ in 0..3 {
        let peek = limiter.peek(&id).await.expect("peek");
        assert_eq!((peek.allowed, peek.remaining), (true, 3));
    }
    assert_eq!(limiter.check(&id).await.expect("check").remaining, 2);
    assert_eq!(
        h.store().get(&key).await.expect("read").as_deref(),
        Some(&b"8"[..])
    );
}

/// With limit L, many concurrent checks admit exactly L where the counter is atomic.
pub async fn ratelimit_exact_under_concurrency(h: &Harness) {
    let time = Time::of(h);
    let limiter = limiter(h, &time, 100, Window::Fixed);
    if !limiter.is_exact() {
        skip(
            "ratelimit_exact_under_concurrency",
            "the backend's counter is best-effort (Capabilities::atomic_counter is false)",
        );
        return;
    }
    let limiter = Arc::new(limiter);
    let id = Arc::new(unique_user("burst"));
    let tasks = (0..1000).map(|_| {
        let (limiter, id) = (Arc::clone(&limiter), Arc::clone(&id));
        async move { limiter.check(&id).await }
    });
    let admitted = concurrently(tasks)
        .await
        .into_iter()
        .filter(|r| r.as_ref().expect("check").allowed)
        .count();
    assert_eq!(admitted, 100);
    let now = time.now_ms() / 1000;
    let key = format!("ratelimit:{id}:{}", now - now % 60);
    assert_eq!(
        h.store().get(&key).await.expect("read").as_deref(),
        Some(&b"100"[..])
    );
}

/// The sliding window weighs the previous window by the share still inside the window.
pub async fn ratelimit_sliding_window(h: &Harness) {
    let time = Time::of(h);
    // Start exactly at a window boundary.
    time.skip(Duration::from_millis(60_000 - time.now_ms() % 60_000));
    let limiter = limiter(h, &time, 10, Window::Sliding);
    let id = unique_user("slide");
    for _ in 0..10 {
        assert!(limiter.check(&id).await.expect("check").allowed);
    }
    assert!(!limiter.check(&id).await.expect("check").allowed);
    // Half-way into the next window, half of the previous ten still count.
    time.skip(Duration::from_secs(90));
    let peek = limiter.peek(&id).await.expect("peek");
    assert_eq!((peek.allowed, peek.remaining), (true, 5));
    for _ in 0..5 {
        assert!(limiter.check(&id).await.expect("check").allowed);
    }
    let rejected = limiter.check(&id).await.expect("check");
    assert!(!rejected.allowed);
    // A window on, the previous window (five admitted) counts half.
    time.skip(Duration::from_secs(60));
    assert_eq!(limiter.peek(&id).await.expect("peek").remaining, 7);
}

/// An identifier too long for the store is a typed error, before any request.
pub async fn ratelimit_rejects_oversized_identifier(h: &Harness) {
    let time = Time::of(h);
    let limiter = limiter(h, &time, 10, Window::Fixed);
    let id = "i".repeat(h.store().capabilities().max_key_bytes);
    let err = limiter.check(&id).await.expect_err("too long");
    assert!(matches!(err, Error::KeyTooLong { .. }), "{err:?}");
    assert!(matches!(
        limiter.peek(&id).await,
        Err(Error::KeyTooLong { .. })
    ));
}

/// Counts calls to the store it wraps, to prove what a pattern does and does not send.
#[derive(Debug)]
struct Recorder {
    inner: Store,
    reads: AtomicUsize,
    writes: AtomicUsize,
    /// Calls that wrote a `session:` key.
    session_writes: AtomicUsize,
}

impl Recorder {
    fn new(inner: Store) -> Self {
        Self {
            inner,
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            session_writes: AtomicUsize::new(0),
        }
    }

    /// How many calls wrote a session's own key (not its user-index entry).
    fn session_writes(&self) -> usize {
        self.session_writes.load(Ordering::SeqCst)
    }

    /// Counts a write to `key`, then gives the store.
    fn write_to<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> &Store {
        if keys.into_iter().any(|key| key.starts_with("session:")) {
            self.session_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.write()
    }

    fn calls(&self) -> usize {
        self.reads.load(Ordering::SeqCst) + self.writes()
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn read(&self) -> &Store {
        self.reads.fetch_add(1, Ordering::SeqCst);
        &self.inner
    }

    fn write(&self) -> &Store {
        self.writes.fetch_add(1, Ordering::SeqCst);
        &self.inner
    }
}

#[cfg_attr(not(target_arch = "wasm32"), kvkit_core::backend::async_trait)]
#[cfg_attr(target_arch = "wasm32", kvkit_core::backend::async_trait(?Send))]
impl KvStore for Recorder {
    fn capabilities(&self) -> &kvkit_core::Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &str) -> kvkit_core::Result<Option<kvkit_core::Bytes>> {
        self.read().get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> kvkit_core::Result<Option<kvkit_core::Entry>> {
        self.read().get_with_metadata(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: kvkit_core::Bytes,
        options: PutOptions,
    ) -> kvkit_core::Result<()> {
        self.write_to([key]).put(key, value, options).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        value: kvkit_core::Bytes,
        options: PutOptions,
    ) -> kvkit_core::Result<bool> {
        self.write_to([key])
            .put_if_absent(key, value, options)
            .await
    }
    async fn delete(&self, key: &str) -> kvkit_core::Result<()> {
        self.write_to([key]).delete(key).await
    }
    async fn delete_if_version(
        &self,
        key: &str,
        version: &kvkit_core::Version,
    ) -> kvkit_core::Result<()> {
        self.write_to([key]).delete_if_version(key, version).await
    }
    async fn list(
        &self,
        options: kvkit_core::ListOptions,
    ) -> kvkit_core::Result<kvkit_core::ListPage> {
        self.read().list(options).await
    }
    async fn get_many(
        &self,
        keys: &[String],
    ) -> kvkit_core::Result<Vec<Option<kvkit_core::Bytes>>> {
        self.read().get_many(keys).await
    }
    async fn put_many(&self, items: Vec<kvkit_core::PutItem>) -> kvkit_core::Result<()> {
        self.write_to(items.iter().map(|i| i.key.as_str()))
            .put_many(items)
            .await
    }
    async fn delete_many(&self, keys: &[String]) -> kvkit_core::Result<()> {
        self.write_to(keys.iter().map(String::as_str))
            .delete_many(keys)
            .await
    }
    async fn increment(
        &self,
        key: &str,
        delta: i64,
        options: kvkit_core::CounterOptions,
    ) -> kvkit_core::Result<i64> {
        self.write_to([key]).increment(key, delta, options).await
    }
}

/// Every pattern case, for runners other than [`pattern_tests!`](crate::pattern_tests) (a Rust
/// Worker on `wasm32`, say).
///
/// ```
/// assert!(kvkit_testsuite::patterns::all().iter().any(|c| c.name == "cache_single_flight"));
/// ```
pub fn all() -> Vec<crate::Case> {
    crate::case_list!(
        cache_miss_hit_stale_miss,
        cache_stores_seed_envelope,
        cache_reads_seed_entry,
        cache_single_flight,
        cache_fetch_error_without_entry,
        cache_one_refresh_at_a_time,
        cache_stale_on_refresh_error,
        cache_negative_caching,
        cache_bad_entries_and_keys,
        session_lifecycle_and_format,
        session_reads_seed_session,
        session_rejects_bad_ids,
        session_expires,
        session_refresh_writes_at_most_once_per_interval,
        session_write_failure_hides_id,
        session_rotate,
        session_user_index,
        ratelimit_fixed_window,
        ratelimit_continues_seed_count,
        ratelimit_exact_under_concurrency,
        ratelimit_sliding_window,
        ratelimit_rejects_oversized_identifier,
    )
}

/// Stamps every pattern case into the calling test file as a separately named test, like
/// [`conformance_tests!`](crate::conformance_tests).
///
/// ```no_run
/// async fn harness() -> kvkit_testsuite::Harness {
///     kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new())
/// }
/// kvkit_testsuite::pattern_tests!(harness);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! pattern_tests {
    ($harness:expr) => {
        $crate::pattern_tests!(@all $harness;
            cache_miss_hit_stale_miss,
            cache_stores_seed_envelope,
            cache_reads_seed_entry,
            cache_single_flight,
            cache_fetch_error_without_entry,
            cache_one_refresh_at_a_time,
            cache_stale_on_refresh_error,
            cache_negative_caching,
            cache_bad_entries_and_keys,
            session_lifecycle_and_format,
            session_reads_seed_session,
            session_rejects_bad_ids,
            session_expires,
            session_refresh_writes_at_most_once_per_interval,
            session_write_failure_hides_id,
            session_rotate,
            session_user_index,
            ratelimit_fixed_window,
            ratelimit_continues_seed_count,
            ratelimit_exact_under_concurrency,
            ratelimit_sliding_window,
            ratelimit_rejects_oversized_identifier
        );
    };
    (@all $harness:expr; $($case:ident),+) => {
        $crate::pattern_tests!(@cases $harness; $($case),+);

        #[test]
        fn pattern_tests_list_every_case() {
            $crate::__assert_lists_every_case(&$crate::patterns::all(), &[$(stringify!($case)),+]);
        }
    };
    (@cases $harness:expr; $($case:ident),+) => {
        $(
            #[$crate::__private::tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "kvkit_testsuite::__private::tokio")]
            async fn $case() {
                let Some(harness) = $crate::IntoHarness::into_harness($harness().await) else {
                    $crate::skip(stringify!($case), "the backend is unavailable and was opted out");
                    return;
                };
                $crate::patterns::$case(&harness).await;
            }
        )+
    };
}
