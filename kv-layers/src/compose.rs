//! [`Layered`]: the wrappers as methods, so a stack reads top to bottom.

use kvkit_core::KvStore;

use crate::{Metered, Namespaced, Observed, Traced};
#[cfg(not(target_arch = "wasm32"))]
use crate::{Resilient, TwoTier};

/// Wraps any store in the layers of this crate, one method call each.
///
/// ```
/// use std::time::Duration;
/// use kvkit_core::{KvStore, PutOptions};
/// use kvkit_layers::{Layered, RetryPolicy};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let store = kvkit_memory::MemoryStore::new()
///     .namespaced("billing/")
///     .resilient()
///     .timeout(Duration::from_millis(250))
///     .retry(RetryPolicy::new().max_attempts(3))
///     .metered()
///     .traced()
///     .two_tier()
///     .max_staleness(Duration::from_millis(500));
/// store.put("invoice:7", "paid".into(), PutOptions::new()).await?;
/// assert_eq!(store.get("invoice:7").await?.as_deref(), Some(&b"paid"[..]));
/// # Ok(()) }
/// ```
pub trait Layered: KvStore + Sized {
    /// Puts every key under `prefix`: [`Namespaced`].
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let memory = kvkit_memory::MemoryStore::new();
    /// let store = memory.clone().namespaced("app/");
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(memory.get_text("app/k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    fn namespaced(self, prefix: impl Into<String>) -> Namespaced<Self> {
        Namespaced::new(self, prefix)
    }

    /// A span per operation: [`Traced`].
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new().traced();
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// assert_eq!(store.capabilities().backend, "memory");
    /// # Ok(()) }
    /// ```
    fn traced(self) -> Traced<Self> {
        Traced::new(self)
    }

    /// Counts and latencies through the `metrics` facade: [`Metered`].
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new().metered();
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    fn metered(self) -> Metered<Self> {
        Metered::new(self)
    }

    /// Spans and metrics in one layer: [`Observed`].
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new().observed();
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    fn observed(self) -> Observed<Self> {
        Observed::new(self)
    }

    /// Timeouts and retries: [`Resilient`] (configure it with its own methods).
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new()
    ///     .resilient()
    ///     .timeout(std::time::Duration::from_secs(1));
    /// assert!(format!("{store:?}").contains("timeout: Some(1s)"));
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// # Ok(()) }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    fn resilient(self) -> Resilient<Self> {
        Resilient::new(self)
    }

    /// A local tier in front: [`TwoTier`] (configure it with its own methods).
    ///
    /// ```
    /// use kvkit_core::{KvStore, KvStoreExt};
    /// use kvkit_layers::Layered;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let store = kvkit_memory::MemoryStore::new().two_tier().max_entries(1000);
    /// store.put_text("k", "v", Default::default()).await?;
    /// assert_eq!(store.get_text("k").await?.as_deref(), Some("v"));
    /// assert_eq!(store.cached_entries(), 1, "the read filled the local tier");
    /// # Ok(()) }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    fn two_tier(self) -> TwoTier<Self> {
        TwoTier::new(self)
    }
}

impl<S: KvStore + Sized> Layered for S {}
