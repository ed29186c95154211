//! The pattern cases on the memory store, with the patterns and the store on one manual clock.

use kvkit::ManualClock;
use kvkit::memory::MemoryStore;
use kvkit_testsuite::Harness;

async fn harness() -> Harness {
    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    Harness::manual(store, clock)
}

async fn cloudflare_limits() -> Harness {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .cloudflare_limits()
        .build();
    Harness::manual(store, clock)
}

kvkit_testsuite::pattern_tests!(harness);

/// The same cases under Cloudflare's limits (60 s minimum TTL, 512-byte keys).
mod with_cloudflare_limits {
    kvkit_testsuite::pattern_tests!(super::cloudflare_limits);
}
