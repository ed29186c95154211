//! Where background work (a stale cache entry's refresh) runs.

use std::fmt::Debug;

/// Background work: a future that runs to completion on its own.
#[cfg(not(target_arch = "wasm32"))]
pub type Task = futures_util::future::BoxFuture<'static, ()>;
/// Background work: a future that runs to completion on its own.
#[cfg(target_arch = "wasm32")]
pub type Task = futures_util::future::LocalBoxFuture<'static, ()>;

/// `Send` on native targets, and nothing on `wasm32`, where Workers' futures are not `Send`.
///
/// The patterns' bounds on fetchers and their futures use it, so the same code compiles for a
/// tokio service and a Rust Worker.
///
/// ```
/// fn needs<T: kvkit_patterns::MaybeSend>(_: T) {}
/// needs(42);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` on native targets, and nothing on `wasm32`, where Workers' futures are not `Send`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// Runs background [`Task`]s.
///
/// The default on native targets is [`TokioSpawner`]. Implement it to run refreshes elsewhere:
/// on a dedicated runtime, or in a Worker's `wait_until`.
///
/// ```
/// use kvkit_patterns::{Spawn, Task};
///
/// #[derive(Debug)]
/// struct Inline;
/// impl Spawn for Inline {
///     fn spawn(&self, task: Task) -> bool {
///         futures_util::FutureExt::now_or_never(task).is_some()
///     }
/// }
/// assert!(Inline.spawn(Box::pin(async {})));
/// ```
pub trait Spawn: Send + Sync + Debug + 'static {
    /// Starts `task` in the background. Returns `false` when it could not be started (the
    /// caller then skips the background work; it never panics).
    fn spawn(&self, task: Task) -> bool;
}

/// Spawns on the tokio runtime the caller runs on.
///
/// Outside a runtime it declines (returns `false`) instead of panicking.
///
/// ```
/// use kvkit_patterns::{Spawn, TokioSpawner};
/// assert!(!TokioSpawner.spawn(Box::pin(async {})));
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// runtime.block_on(async { assert!(TokioSpawner.spawn(Box::pin(async {}))) });
/// ```
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSpawner;

#[cfg(not(target_arch = "wasm32"))]
impl Spawn for TokioSpawner {
    fn spawn(&self, task: Task) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                drop(handle.spawn(task));
                true
            }
            Err(_) => false,
        }
    }
}

/// Spawns on the JavaScript event loop of the `wasm32` host (a Worker's isolate), with
/// `wasm_bindgen_futures::spawn_local`. The default on `wasm32`.
///
/// In a Worker, work still running when the response is returned may be cancelled; to keep the
/// invocation alive until it ends, spawn through the invocation's `wait_until` instead
/// (`kvkit_worker::WaitUntil`).
///
/// ```ignore
/// use kvkit_patterns::{LocalSpawner, Spawn};
/// assert!(LocalSpawner.spawn(Box::pin(async {})));
/// ```
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalSpawner;

#[cfg(target_arch = "wasm32")]
impl Spawn for LocalSpawner {
    fn spawn(&self, task: Task) -> bool {
        wasm_bindgen_futures::spawn_local(task);
        true
    }
}
