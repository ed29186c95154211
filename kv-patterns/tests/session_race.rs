//! A refresh racing a destroy never writes the session back on a store with conditional writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kvkit_core::{
    Bytes, Capabilities, CounterOptions, Entry, KvStore, ListOptions, ListPage, ManualClock,
    PutItem, PutOptions, Result, Version,
};
use kvkit_memory::MemoryStore;
use kvkit_patterns::SessionManager;

/// A memory store that, once armed, deletes a session just before the next write to it: a
/// destroy landing between a refresh's read and its write.
#[derive(Debug)]
struct DestroyBeforeWrite {
    inner: MemoryStore,
    armed: AtomicBool,
}

impl DestroyBeforeWrite {
    async fn interfere(&self, key: &str) {
        if key.starts_with("session:") && self.armed.swap(false, Ordering::SeqCst) {
            self.inner.delete(key).await.expect("the racing destroy");
        }
    }
}

#[kvkit_core::backend::async_trait]
impl KvStore for DestroyBeforeWrite {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.get_with_metadata(key).await
    }
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.interfere(key).await;
        self.inner.put(key, value, options).await
    }
    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.inner.put_if_absent(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.inner.delete_if_version(key, version).await
    }
    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.inner.get_many(keys).await
    }
    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        for item in &items {
            self.interfere(&item.key).await;
        }
        self.inner.put_many(items).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.inner.increment(key, delta, options).await
    }
}

#[tokio::test]
async fn a_refresh_racing_a_destroy_does_not_resurrect_the_session() {
    let clock =
        ManualClock::at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    let store = Arc::new(DestroyBeforeWrite {
        inner: MemoryStore::builder().clock(clock.clone()).build(),
        armed: AtomicBool::new(false),
    });
    let sessions = SessionManager::<_>::builder(store.clone())
        .clock(clock.clone())
        .refresh_interval(Duration::from_secs(60))
        .build();
    let id = sessions
        .create_for("u1", "ada@example.com", "admin")
        .await
        .expect("create");
    clock.advance(Duration::from_secs(120));
    store.armed.store(true, Ordering::SeqCst);
    // The refresh reads the session, the session is destroyed, then the refresh writes.
    let seen = sessions
        .get_and_refresh(id.as_str())
        .await
        .expect("refresh");
    assert!(seen.is_some(), "the request saw the session it read");
    assert!(!store.armed.load(Ordering::SeqCst), "the destroy ran");
    assert_eq!(
        sessions.get(id.as_str()).await.expect("get"),
        None,
        "the destroyed session was written back"
    );
}
