//! The shared conformance and pattern suites on a file database: with a manual clock, and once
//! with the system clock.

mod common;

use bytes::Bytes;
use common::TempDir;
use kvkit_core::{
    Capabilities, CounterOptions, Entry, KvStore, ListOptions, ListPage, ManualClock, PutItem,
    PutOptions, Result, Version,
};
use kvkit_sqlite::SqliteStore;
use kvkit_testsuite::Harness;

/// A store on a file in a directory of its own, removed when the store is dropped.
#[derive(Debug)]
struct FileStore {
    store: SqliteStore,
    _dir: TempDirGuard,
}

/// The directory, shown in `Debug` by path.
struct TempDirGuard(TempDir);

impl std::fmt::Debug for TempDirGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.path())
    }
}

#[kvkit_core::backend::async_trait]
impl KvStore for FileStore {
    fn capabilities(&self) -> &Capabilities {
        self.store.capabilities()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.store.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.store.get_with_metadata(key).await
    }
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        self.store.put(key, value, options).await
    }
    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.store.put_if_absent(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.store.delete(key).await
    }
    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.store.delete_if_version(key, version).await
    }
    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.store.list(options).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.store.get_many(keys).await
    }
    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        self.store.put_many(items).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.store.delete_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.store.increment(key, delta, options).await
    }
}

async fn file_store(clock: Option<ManualClock>) -> FileStore {
    let dir = TempDir::new();
    let mut builder = SqliteStore::builder().path(dir.path().join("kv.db"));
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let store = builder.open().await.expect("a SQLite store");
    FileStore {
        store,
        _dir: TempDirGuard(dir),
    }
}

async fn manual_clock() -> Harness {
    let clock = ManualClock::new();
    Harness::manual(file_store(Some(clock.clone())).await, clock)
}

kvkit_testsuite::conformance_tests!(manual_clock);

mod patterns {
    kvkit_testsuite::pattern_tests!(super::manual_clock);
}

mod system_clock {
    async fn harness() -> kvkit_testsuite::Harness {
        kvkit_testsuite::Harness::real_time(super::file_store(None).await)
    }

    kvkit_testsuite::conformance_tests!(harness);

    mod patterns {
        kvkit_testsuite::pattern_tests!(super::harness);
    }
}

mod small_limits {
    use super::*;

    /// Limits small enough that the property test often goes over them.
    async fn harness() -> Harness {
        let caps = Capabilities::new("sqlite")
            .with_max_key_bytes(64)
            .with_max_value_bytes(32)
            .with_max_metadata_bytes(24);
        let clock = ManualClock::new();
        let store = SqliteStore::builder()
            .in_memory()
            .capabilities(caps)
            .clock(clock.clone())
            .open()
            .await
            .expect("a SQLite store");
        Harness::manual(store, clock)
    }

    #[test]
    fn model_based_random_operations() {
        kvkit_testsuite::model::run(harness);
    }
}
