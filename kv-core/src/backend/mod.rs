//! For backend and wrapper authors: what implementing [`KvStore`](crate::KvStore) takes beyond
//! the trait, kept out of the crate root that applications import.
//!
//! - [`async_trait`](macro@async_trait): the trait's methods are `async`; implement it under this attribute.
//! - [`Capabilities`](crate::Capabilities)' `check_*` methods validate input before any I/O;
//!   [`CheckedPut`] is what [`check_put`](crate::Capabilities::check_put) returns.
//! - [`parse_counter`], [`add_to_counter`] and [`add_to_count`]: the one counter format every
//!   backend shares.
//! - [`cursor`]: cursors bound to the prefix they were issued for.
//! - Unix-time conversions ([`unix_ms`], [`from_unix_ms`], …): the API speaks
//!   [`SystemTime`](std::time::SystemTime), stores speak integers.
//! - [`cloudflare`]: Cloudflare KV's profile, shared by the memory store's
//!   `cloudflare_limits()`, the REST backend and the Worker binding backend.
//!
//! ```
//! use kvkit_core::backend::{add_to_counter, cursor, parse_counter};
//! assert_eq!(parse_counter(b"41"), Some(41));
//! assert_eq!(add_to_counter("hits", b"41", 1).unwrap(), 42);
//! let next = cursor::encode("user:", "user:7");
//! assert_eq!(cursor::decode(&next, "user:").unwrap(), "user:7");
//! ```

pub mod cloudflare;
pub mod cursor;

pub use async_trait::async_trait;

pub use crate::capabilities::{
    CheckedPut, add_to_count, add_to_counter, parse_counter, stable_hash,
};
pub use crate::time::{from_unix_ms, from_unix_secs, rfc3339, unix_ms, unix_secs_ceil};
