//! The conformance suite on the memory backend: with a manual clock, with the system clock, and
//! with Cloudflare's limits.

use kvkit_core::ManualClock;
use kvkit_memory::MemoryStore;
use kvkit_testsuite::Harness;

async fn manual_clock() -> Harness {
    let clock = ManualClock::new();
    Harness::manual(MemoryStore::builder().clock(clock.clone()).build(), clock)
}

kvkit_testsuite::conformance_tests!(manual_clock);

mod system_clock {
    async fn harness() -> kvkit_testsuite::Harness {
        kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new())
    }

    kvkit_testsuite::conformance_tests!(harness);
}

mod cloudflare_limits {
    use super::*;

    async fn harness() -> Harness {
        let clock = ManualClock::new();
        let store = MemoryStore::builder()
            .cloudflare_limits()
            .clock(clock.clone())
            .build();
        Harness::manual(store, clock)
    }

    kvkit_testsuite::conformance_tests!(harness);
}

mod small_limits {
    use super::*;

    /// Limits small enough that the property test often goes over them.
    async fn harness() -> Harness {
        let caps = kvkit_core::Capabilities::new("memory")
            .with_max_key_bytes(64)
            .with_max_value_bytes(32)
            .with_max_metadata_bytes(24);
        let clock = ManualClock::new();
        let store = MemoryStore::builder()
            .capabilities(caps)
            .clock(clock.clone())
            .build();
        Harness::manual(store, clock)
    }

    #[test]
    fn model_based_random_operations() {
        kvkit_testsuite::model::run(harness);
    }
}
