//! What the Durable Object store allows and guarantees. Plain Rust, compiled on every target, so
//! that a service can read the limits its Worker will have.

use kvkit_core::Capabilities;

/// The backend name in [`Capabilities::backend`] and in errors.
///
/// ```
/// assert_eq!(kvkit_durable::BACKEND, "cloudflare-durable-object");
/// ```
pub const BACKEND: &str = "cloudflare-durable-object";

/// The largest row SQLite-backed Durable Object storage takes: key, value and metadata
/// together (Cloudflare documents 2 MB for a string, BLOB or row).
const MAX_ROW_BYTES: usize = 2_000_000;

/// The longest key, in bytes.
const MAX_KEY_BYTES: usize = 2048;

/// The largest metadata, in bytes of JSON.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Room left in a row for its expiry, version and SQLite's own bookkeeping.
const ROW_OVERHEAD: usize = 1024;

/// The limits and guarantees of [`DurableKvStore`](crate): strongly consistent, with exact
/// counters, put-if-absent and conditional writes (each object runs one request at a time),
/// metadata kept as JSON text (so it round-trips exactly), millisecond TTLs, and sizes that fit
/// one SQLite row of a Durable Object: keys up to 2 KiB, metadata up to 16 KiB, and values up
/// to what is left of 2 MB.
///
/// ```
/// use kvkit_core::Consistency;
/// let caps = kvkit_durable::capabilities();
/// assert_eq!(caps.backend, kvkit_durable::BACKEND);
/// assert_eq!(caps.consistency, Consistency::Strong);
/// assert!(caps.atomic_counter && caps.atomic_put_if_absent && caps.conditional_writes);
/// assert!(caps.exact_metadata);
/// assert_eq!(caps.max_key_bytes, 2048);
/// assert!(caps.max_key_bytes + caps.max_value_bytes + caps.max_metadata_bytes < 2_000_000);
/// assert_eq!(caps.min_ttl, std::time::Duration::from_millis(1));
/// ```
pub fn capabilities() -> Capabilities {
    Capabilities::new(BACKEND)
        .with_max_key_bytes(MAX_KEY_BYTES)
        .with_max_metadata_bytes(MAX_METADATA_BYTES)
        .with_max_value_bytes(MAX_ROW_BYTES - MAX_KEY_BYTES - MAX_METADATA_BYTES - ROW_OVERHEAD)
}
