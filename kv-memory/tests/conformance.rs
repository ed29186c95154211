//! The conformance suite on the memory backend: with a manual clock, with the system clock, and
//! with Cloudflare's limits.

use kv_core::ManualClock;
use kv_memory::MemoryStore;
use kv_testsuite::Harness;

async fn manual_clock() -> Harness {
    let clock = ManualClock::new();
    Harness::manual(MemoryStore::builder().clock(clock.clone()).build(), clock)
}

kv_testsuite::conformance_tests!(manual_clock);

mod system_clock {
    async fn harness() -> kv_testsuite::Harness {
        kv_testsuite::Harness::real_time(kv_memory::MemoryStore::new())
    }

    kv_testsuite::conformance_tests!(harness);
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

    kv_testsuite::conformance_tests!(harness);
}

mod small_limits {
    use super::*;

    /// Limits small enough that the property test often goes over them.
    async fn harness() -> Harness {
        let caps = kv_core::Capabilities::new("memory")
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
        kv_testsuite::model::run(harness);
    }
}
