//! What the tests share: a store that fails.

use kvkit_core::{
    Bytes, Capabilities, CounterOptions, Entry, Error, KvStore, ListOptions, ListPage, PutItem,
    PutOptions,
};

/// A store whose every call fails with the error its `error` makes.
#[derive(Debug)]
pub(crate) struct Failing {
    capabilities: Capabilities,
    error: fn() -> Error,
}

impl Failing {
    /// A store whose every call fails with `error()`.
    pub(crate) fn with(error: fn() -> Error) -> Self {
        Self {
            capabilities: Capabilities::new("failing"),
            error,
        }
    }

    /// A store that is down.
    pub(crate) fn down() -> Self {
        Self::with(|| Error::backend("down", "connection refused", true, "refused"))
    }
}

#[kvkit_core::backend::async_trait]
impl KvStore for Failing {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    async fn get(&self, _: &str) -> kvkit_core::Result<Option<Bytes>> {
        Err((self.error)())
    }
    async fn get_with_metadata(&self, _: &str) -> kvkit_core::Result<Option<Entry>> {
        Err((self.error)())
    }
    async fn put(&self, _: &str, _: Bytes, _: PutOptions) -> kvkit_core::Result<()> {
        Err((self.error)())
    }
    async fn put_if_absent(&self, _: &str, _: Bytes, _: PutOptions) -> kvkit_core::Result<bool> {
        Err((self.error)())
    }
    async fn delete(&self, _: &str) -> kvkit_core::Result<()> {
        Err((self.error)())
    }
    async fn delete_if_version(&self, _: &str, _: &kvkit_core::Version) -> kvkit_core::Result<()> {
        Err((self.error)())
    }
    async fn list(&self, _: ListOptions) -> kvkit_core::Result<ListPage> {
        Err((self.error)())
    }
    async fn get_many(&self, _: &[String]) -> kvkit_core::Result<Vec<Option<Bytes>>> {
        Err((self.error)())
    }
    async fn put_many(&self, _: Vec<PutItem>) -> kvkit_core::Result<()> {
        Err((self.error)())
    }
    async fn delete_many(&self, _: &[String]) -> kvkit_core::Result<()> {
        Err((self.error)())
    }
    async fn increment(&self, _: &str, _: i64, _: CounterOptions) -> kvkit_core::Result<i64> {
        Err((self.error)())
    }
}
