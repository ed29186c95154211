//! [`WaitUntil`]: background work that keeps the Worker invocation alive until it ends.

use std::fmt;
use std::sync::Arc;

use kvkit_patterns::{Spawn, Task};

/// Runs background work (a stale cache entry's refresh) through the invocation's
/// `ctx.wait_until`, so the Worker is not stopped before the work ends even when the response
/// has already been sent.
///
/// The default spawner of the patterns on `wasm32`, `kvkit_patterns::LocalSpawner`, runs the work
/// on the event loop too, but nothing keeps the invocation alive for it.
///
/// ```ignore
/// # fn handler(store: kvkit_worker::WorkerKvStore, ctx: worker::Context) {
/// let cache = kvkit_patterns::Cache::builder(store)
///     .spawner(kvkit_worker::WaitUntil::new(ctx))
///     .build();
/// assert!(format!("{cache:?}").contains("WorkerKvStore"));
/// # }
/// ```
#[derive(Clone)]
pub struct WaitUntil {
    ctx: Arc<worker::Context>,
}

impl WaitUntil {
    /// Spawns through `ctx`, the invocation's context.
    ///
    /// ```ignore
    /// # fn handler(ctx: worker::Context) {
    /// let spawner = kvkit_worker::WaitUntil::new(ctx);
    /// spawner.context().wait_until(async { /* runs after the response is sent */ });
    /// # }
    /// ```
    pub fn new(ctx: worker::Context) -> Self {
        Self { ctx: Arc::new(ctx) }
    }

    /// The invocation's context, for the handler's own use.
    ///
    /// ```ignore
    /// # fn handler(spawner: kvkit_worker::WaitUntil) {
    /// spawner.context().wait_until(async {});
    /// # }
    /// ```
    pub fn context(&self) -> &worker::Context {
        &self.ctx
    }
}

impl fmt::Debug for WaitUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitUntil").finish_non_exhaustive()
    }
}

impl Spawn for WaitUntil {
    fn spawn(&self, task: Task) -> bool {
        self.ctx.wait_until(task);
        true
    }
}
