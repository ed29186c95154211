//! Every wrapper passes the whole conformance suite over the memory backend.

use std::time::Duration;

use kvkit_core::ManualClock;
use kvkit_layers::{Metered, Namespaced, Observed, Resilient, RetryPolicy, Traced};
use kvkit_memory::MemoryStore;
use kvkit_testsuite::Harness;

fn memory() -> (MemoryStore, ManualClock) {
    let clock = ManualClock::new();
    (MemoryStore::builder().clock(clock.clone()).build(), clock)
}

mod namespaced {
    use super::*;
    async fn harness() -> Harness {
        let (store, clock) = memory();
        Harness::manual(Namespaced::new(store, "tenant-a/"), clock)
    }
    kvkit_testsuite::conformance_tests!(harness);
}

mod resilient {
    use super::*;
    async fn harness() -> Harness {
        let (store, clock) = memory();
        let store = Resilient::new(store)
            .timeout(Duration::from_secs(5))
            .retry(RetryPolicy::new().max_attempts(3));
        Harness::manual(store, clock)
    }
    kvkit_testsuite::conformance_tests!(harness);
}

mod traced_and_metered {
    use super::*;
    async fn harness() -> Harness {
        let (store, clock) = memory();
        Harness::manual(Traced::new(Metered::new(store)).hash_keys(true), clock)
    }
    kvkit_testsuite::conformance_tests!(harness);
}

mod all_stacked {
    use super::*;
    async fn harness() -> Harness {
        let (store, clock) = memory();
        let store = Metered::new(Traced::new(Resilient::new(Namespaced::new(
            Namespaced::new(store, "outer/"),
            "inner/",
        ))));
        Harness::manual(store, clock)
    }
    kvkit_testsuite::conformance_tests!(harness);
}

mod observed {
    use super::*;
    async fn harness() -> Harness {
        let (store, clock) = memory();
        Harness::manual(Observed::new(store).hash_keys(true), clock)
    }
    kvkit_testsuite::conformance_tests!(harness);
}
