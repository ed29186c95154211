//! The conformance suite every `kvkit` backend passes: one set of cases, generic over any
//! [`KvStore`], proving the contract written in the [`KvStore`] docs.
//!
//! A backend adds the whole suite to its tests with one line, each case a separately named test:
//!
//! ```no_run
//! async fn harness() -> kvkit_testsuite::Harness {
//!     kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new())
//! }
//! kvkit_testsuite::conformance_tests!(harness);
//! # fn main() {}
//! ```
//!
//! Every case works under its own random key prefix, so runs against a shared server never
//! collide, and cleans up after itself. Cases that need a capability the backend does not claim
//! (an atomic counter, say) are skipped and say so on standard error. Time-dependent cases move a
//! [`ManualClock`] when the harness has one, and otherwise wait for real time to pass.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = kvkit_core::ManualClock::new();
//! let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
//! let harness = kvkit_testsuite::Harness::manual(store, clock);
//! kvkit_testsuite::cases::overwrite_replaces_value_metadata_and_expiry(&harness).await;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::LocalBoxFuture;
use kvkit_core::{Clock, KvStore, ListOptions, ManualClock, SystemClock};

pub mod cases;
#[cfg(not(target_arch = "wasm32"))]
pub mod model;
pub mod patterns;
mod rt;
pub mod secrets;

#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod __private {
    pub use tokio;

    pub use crate::waiting::{Case, CaseFuture, Waiting};
}

/// One case of the suite, by name, runnable where the test macros are not: inside a Rust Worker
/// on `wasm32`, say, which runs [`cases::all`] and [`patterns::all`] against its KV binding.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
/// let case = kvkit_testsuite::cases::all().into_iter().find(|c| c.name == "get_missing_is_none").unwrap();
/// (case.run)(&harness).await;
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name: its function's in [`cases`] or [`patterns`].
    pub name: &'static str,
    /// Runs the case; it panics when the store breaks the contract.
    pub run: for<'a> fn(&'a Harness) -> LocalBoxFuture<'a, ()>,
}

/// Builds the list of cases of a module, each name once.
macro_rules! case_list {
    ($($case:ident),+ $(,)?) => {
        vec![$(
            $crate::Case {
                name: stringify!($case),
                run: |h| Box::pin($case(h)),
            },
        )+]
    };
}
pub(crate) use case_list;

/// Checks that a test macro stamps exactly the cases of a registry, so that neither list can
/// drift from the other.
#[doc(hidden)]
pub fn __assert_lists_every_case(registry: &[Case], stamped: &[&str]) {
    let mut registry: Vec<&str> = registry.iter().map(|c| c.name).collect();
    let mut stamped = stamped.to_vec();
    registry.sort_unstable();
    stamped.sort_unstable();
    assert_eq!(
        registry, stamped,
        "the registry and the test macro list different cases"
    );
}

/// The cases that wait for real time to pass, run together in the background so that their waits
/// overlap (on Cloudflare each waits a minute) however few threads the test harness runs.
#[cfg(not(target_arch = "wasm32"))]
mod waiting {
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Condvar, Mutex};

    /// One case, ready to run.
    pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A case's name and how to start it.
    pub type Case = (&'static str, fn() -> CaseFuture);

    /// The outcomes of the waiting cases, filled in as they finish.
    #[derive(Debug, Default)]
    pub struct Waiting {
        outcomes: Mutex<HashMap<&'static str, Result<(), String>>>,
        finished: Condvar,
    }

    impl Waiting {
        /// Starts every case on a runtime of its own, in the background.
        pub fn start(cases: Vec<Case>) -> Arc<Self> {
            let waiting = Arc::new(Self::default());
            let record = waiting.clone();
            std::thread::spawn(move || {
                let names: Vec<&'static str> = cases.iter().map(|(name, _)| *name).collect();
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        for name in names {
                            record.finish(name, Err(format!("no tokio runtime: {e}")));
                        }
                        return;
                    }
                };
                runtime.block_on(async {
                    let tasks = cases.into_iter().map(|(name, case)| {
                        let record = record.clone();
                        tokio::spawn(async move {
                            let outcome =
                                tokio::spawn(case())
                                    .await
                                    .map_err(|e| match e.try_into_panic() {
                                        Ok(payload) => payload
                                            .downcast_ref::<String>()
                                            .cloned()
                                            .or_else(|| {
                                                payload
                                                    .downcast_ref::<&str>()
                                                    .map(|s| (*s).to_owned())
                                            })
                                            .unwrap_or_else(|| "the case panicked".to_owned()),
                                        Err(e) => e.to_string(),
                                    });
                            record.finish(name, outcome);
                        })
                    });
                    futures_util::future::join_all(tasks).await;
                });
            });
            waiting
        }

        fn finish(&self, name: &'static str, outcome: Result<(), String>) {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            outcomes.insert(name, outcome);
            self.finished.notify_all();
        }

        /// Blocks until `case` has finished, and fails the same way it did.
        pub fn wait(&self, case: &str) {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(outcome) = outcomes.remove(case) {
                    if let Err(message) = outcome {
                        panic!("{message}");
                    }
                    return;
                }
                outcomes = self
                    .finished
                    .wait(outcomes)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// How a harness lets time pass.
#[derive(Debug, Clone)]
enum Time {
    Manual(ManualClock),
    Real,
}

/// A store under test, with the means to let time pass for it.
///
/// ```
/// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
/// assert_eq!(harness.store().capabilities().backend, "memory");
/// ```
#[derive(Debug, Clone)]
pub struct Harness {
    store: Arc<dyn KvStore>,
    time: Time,
}

impl Harness {
    /// A store that reads the system clock: time-dependent cases wait for real time to pass.
    ///
    /// ```
    /// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
    /// assert!(harness.manual_clock().is_none());
    /// ```
    pub fn real_time(store: impl KvStore) -> Self {
        Self {
            store: Arc::new(store),
            time: Time::Real,
        }
    }

    /// A store whose time is `clock`: time-dependent cases advance it instead of waiting.
    ///
    /// ```
    /// let clock = kvkit_core::ManualClock::new();
    /// let store = kvkit_memory::MemoryStore::builder().clock(clock.clone()).build();
    /// let harness = kvkit_testsuite::Harness::manual(store, clock.clone());
    /// assert_eq!(harness.now(), kvkit_core::Clock::now(&clock));
    /// ```
    pub fn manual(store: impl KvStore, clock: ManualClock) -> Self {
        Self {
            store: Arc::new(store),
            time: Time::Manual(clock),
        }
    }

    /// The store under test.
    ///
    /// ```
    /// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
    /// let store = harness.store();
    /// assert_eq!(store.capabilities().backend, "memory");
    /// ```
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The store's current time.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let at = UNIX_EPOCH + Duration::from_millis(7);
    /// let harness = kvkit_testsuite::Harness::manual(kvkit_memory::MemoryStore::new(), kvkit_core::ManualClock::at(at));
    /// assert_eq!(harness.now(), at);
    /// ```
    pub fn now(&self) -> SystemTime {
        match &self.time {
            Time::Manual(clock) => clock.now(),
            Time::Real => SystemClock.now(),
        }
    }

    /// Lets `by` pass: moves the manual clock, or sleeps.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let harness = kvkit_testsuite::Harness::manual(kvkit_memory::MemoryStore::new(), kvkit_core::ManualClock::at(UNIX_EPOCH));
    /// harness.advance(Duration::from_secs(5)).await;
    /// assert_eq!(harness.now(), UNIX_EPOCH + Duration::from_secs(5));
    /// # }
    /// ```
    pub async fn advance(&self, by: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(by),
            Time::Real => rt::sleep(by).await,
        }
    }

    /// The manual clock the store reads, when the harness has one.
    ///
    /// ```
    /// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
    /// assert!(harness.manual_clock().is_none());
    /// ```
    pub fn manual_clock(&self) -> Option<&ManualClock> {
        match &self.time {
            Time::Manual(clock) => Some(clock),
            Time::Real => None,
        }
    }

    /// The TTL the time-dependent cases use: the backend's minimum, but at least 300 ms when
    /// real time must pass (so a slow machine still reads the key before it expires).
    ///
    /// ```
    /// let harness = kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new());
    /// assert_eq!(harness.short_ttl(), std::time::Duration::from_millis(300));
    /// ```
    pub fn short_ttl(&self) -> Duration {
        let min = self.store.capabilities().min_ttl;
        match self.time {
            Time::Manual(_) => min.max(Duration::from_millis(1)),
            Time::Real => min.max(Duration::from_millis(300)),
        }
    }
}

/// A per-test key namespace, so that tests never share keys.
///
/// ```
/// let a = kvkit_testsuite::Namespace::new();
/// let b = kvkit_testsuite::Namespace::new();
/// assert_ne!(a.key("x"), b.key("x"));
/// assert!(a.key("x").starts_with(a.prefix()));
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// A fresh random prefix such as `kvtest-3f2a…/`.
    ///
    /// ```
    /// assert!(kvkit_testsuite::Namespace::new().prefix().starts_with("kvtest-"));
    /// ```
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The OS's randomness (the Web Crypto API on wasm32); a clash with another process's
        // prefix would need the same 64 random bits.
        let random =
            getrandom::u64().unwrap_or_else(|_| kvkit_core::backend::unix_ms(SystemClock.now()));
        Self {
            prefix: format!("kvtest-{random:016x}-{n}/"),
        }
    }

    /// The prefix every key of this namespace starts with.
    ///
    /// ```
    /// assert!(kvkit_testsuite::Namespace::new().prefix().ends_with('/'));
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` under this namespace.
    ///
    /// ```
    /// let ns = kvkit_testsuite::Namespace::new();
    /// assert_eq!(ns.key("a"), format!("{}a", ns.prefix()));
    /// ```
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Deletes every key under this namespace.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = kvkit_memory::MemoryStore::new();
    /// kvkit_testsuite::Namespace::new().clean(&store).await;
    /// # }
    /// ```
    pub async fn clean(&self, store: &dyn KvStore) {
        loop {
            let page = store
                .list(ListOptions::new().prefix(self.prefix.clone()))
                .await
                .expect("listing a test namespace to clean it");
            let keys: Vec<String> = page.keys.into_iter().map(|k| k.name).collect();
            if keys.is_empty() && page.list_complete {
                return;
            }
            store
                .delete_many(&keys)
                .await
                .expect("deleting a test namespace");
        }
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

/// What a harness function may return: a [`Harness`], or `None` when the backend is unavailable
/// and the user opted out of testing it (every case then reports itself skipped).
pub trait IntoHarness {
    /// The harness, if there is one.
    ///
    /// ```
    /// use kvkit_testsuite::IntoHarness;
    /// assert!(None::<kvkit_testsuite::Harness>.into_harness().is_none());
    /// ```
    fn into_harness(self) -> Option<Harness>;
}

impl IntoHarness for Harness {
    fn into_harness(self) -> Option<Harness> {
        Some(self)
    }
}

impl IntoHarness for Option<Harness> {
    fn into_harness(self) -> Option<Harness> {
        self
    }
}

/// Says, visibly even when the test harness captures output, that a case was skipped and why.
///
/// ```
/// kvkit_testsuite::skip("counter_exact_under_concurrency", "the counter is best-effort");
/// ```
pub fn skip(case: &str, reason: &str) {
    // Written to the process's stderr directly, which libtest does not capture.
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "kvkit-testsuite: SKIPPED {case}: {reason}"
        );
    }
    skipped()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(case.to_owned(), reason.to_owned());
}

/// Why `case` skipped itself (see [`skip`]), if it did since the last call; for runners that
/// report each case's outcome themselves.
///
/// ```
/// kvkit_testsuite::skip("some_case", "no atomic counter");
/// assert_eq!(kvkit_testsuite::take_skip("some_case").as_deref(), Some("no atomic counter"));
/// assert_eq!(kvkit_testsuite::take_skip("some_case"), None);
/// ```
pub fn take_skip(case: &str) -> Option<String> {
    skipped()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(case)
}

fn skipped() -> &'static Mutex<HashMap<String, String>> {
    static SKIPPED: std::sync::OnceLock<Mutex<HashMap<String, String>>> =
        std::sync::OnceLock::new();
    SKIPPED.get_or_init(Mutex::default)
}

/// Stamps every conformance case, and the model-based property test, into the calling test
/// file as separately named tests.
///
/// The cases that wait for real time to pass (expiry, counter windows) all start together in
/// the background when the first of them runs, so their waits overlap whatever `--test-threads`
/// says: against Cloudflare's 60 s minimum TTL the suite waits about a minute, not four.
///
/// `$harness` names an `async fn() -> Harness` (or any expression callable that way) that makes
/// the store under test. The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as
/// a dev-dependency.
///
/// ```no_run
/// async fn harness() -> kvkit_testsuite::Harness {
///     kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new())
/// }
/// kvkit_testsuite::conformance_tests!(harness);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@all $harness; [
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
            validation_batch_too_large
        ]; [
            ttl_expiry_hides_key_everywhere,
            absolute_expiration,
            counter_basics,
            counter_now_agrees_with_increment,
            counter_keeps_metadata_and_expiration,
            put_if_absent_basics
        ]);
    };
    (@all $harness:expr; [$($case:ident),+]; [$($waiting:ident),+]) => {
        $crate::conformance_tests!(@cases $harness; $($case),+);
        $crate::conformance_tests!(@waiting $harness; $($waiting),+);

        #[test]
        fn model_based_random_operations() {
            $crate::model::run(|| async { $crate::IntoHarness::into_harness($harness().await) });
        }

        #[test]
        fn conformance_tests_list_every_case() {
            $crate::__assert_lists_every_case(
                &$crate::cases::all(),
                &[$(stringify!($case),)+ $(stringify!($waiting),)+],
            );
        }
    };
    (@waiting $harness:expr; $($case:ident),+) => {
        /// Starts the cases that wait for real time, all at once, when the first of them runs.
        fn __kv_testsuite_waiting() -> &'static $crate::__private::Waiting {
            static WAITING: ::std::sync::OnceLock<::std::sync::Arc<$crate::__private::Waiting>> =
                ::std::sync::OnceLock::new();
            WAITING.get_or_init(|| {
                $crate::__private::Waiting::start(::std::vec![$(
                    (stringify!($case), || -> $crate::__private::CaseFuture {
                        ::std::boxed::Box::pin(async {
                            let Some(harness) = $crate::IntoHarness::into_harness($harness().await) else {
                                $crate::skip(stringify!($case), "the backend is unavailable and was opted out");
                                return;
                            };
                            $crate::cases::$case(&harness).await;
                        })
                    }),
                )+])
            })
        }
        $(
            #[test]
            fn $case() {
                __kv_testsuite_waiting().wait(stringify!($case));
            }
        )+
    };
    (@cases $harness:expr; $($case:ident),+) => {
        $(
            #[$crate::__private::tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "kvkit_testsuite::__private::tokio")]
            async fn $case() {
                let Some(harness) = $crate::IntoHarness::into_harness($harness().await) else {
                    $crate::skip(stringify!($case), "the backend is unavailable and was opted out");
                    return;
                };
                $crate::cases::$case(&harness).await;
            }
        )+
    };
}
