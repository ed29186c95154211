//! The Cloudflare Workers KV backend of `kvkit`: the whole [`KvStore`] contract over Cloudflare's
//! REST API (v4), so a Rust service reads and writes the same namespace as its Workers.
//!
//! ```no_run
//! use kvkit_core::{KvStore, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! // Account, namespace and token from CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_KV_NAMESPACE_ID and
//! // CLOUDFLARE_API_TOKEN, the namespace set on the builder (`CloudflareStore::builder()`
//! // starts empty and never reads the environment).
//! let store = kvkit_cloudflare::CloudflareBuilder::from_env()
//!     .namespace_id("0f2ac74b498b48028cb68387c421e279")
//!     .build()?;
//! store.put("user:1", "Ada".into(), PutOptions::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # How the contract maps onto the API
//!
//! | operation | REST call(s) |
//! |---|---|
//! | `get` | `GET values/{key}`: raw bytes; 404 with code 10009 is `None` |
//! | `get_with_metadata` | `POST bulk/get` with `withMetadata` (value, metadata and expiration in one read); a value that is not UTF-8 is then read exactly with `GET values/{key}`; if Cloudflare refuses the bulk read (400), `GET values/{key}` and `GET metadata/{key}` |
//! | `put` | `PUT values/{key}`: the raw bytes, or multipart (`value` and `metadata` parts) when there is metadata; the expiry as the `expiration` / `expiration_ttl` query parameter |
//! | `delete` | `DELETE values/{key}` |
//! | `list` | `GET keys?prefix=&limit=&cursor=`: Cloudflare's cursor from `result_info` (empty means last page) inside ours |
//! | `get_many` | one `POST bulk/get` for up to 100 keys (values that are not UTF-8 re-read one by one; every key read alone if Cloudflare refuses the bulk read with a 400) |
//! | `put_many` / `delete_many` | `PUT bulk` / `POST bulk/delete`, 1,000 items a request by default (at most 10,000 and under 100 MB); `unsuccessful_keys` retried, then reported |
//! | `increment`, `put_if_absent` | a read, then a write: see below |
//!
//! Keys are percent-encoded in paths (every byte outside `A-Z a-z 0-9 - . _ ~`, so `/` is `%2F`),
//! and prefixes and cursors in query strings. Cloudflare's limits ([`Capabilities::cloudflare`]:
//! keys of 1 to 512 bytes other than `.` and `..`, values up to 25 MiB, metadata up to 1024 bytes
//! of JSON, TTLs of at least 60 s, absolute expirations at least 60 s away and, since workerd
//! takes expirations as 32-bit seconds, no later than 2038-01-19T03:14:07Z) are
//! checked before any request, with the same typed [`Error`]s as every other backend.
//!
//! Cloudflare counts `expiration_ttl` from its clock's current whole second, which would end a key
//! up to a second early. So a TTL is sent as `expiration_ttl` plus the part of the current second
//! already gone (rounded up to one second): the key lives at least its TTL, and its expiration is
//! reported as write time + TTL rounded up to a second, as the contract says.
//!
//! # Trade-offs
//!
//! - **Best-effort counter and put-if-absent.** KV has no atomic operation, so
//!   [`increment`](KvStore::increment) reads the counter and writes the sum, and
//!   [`put_if_absent`](KvStore::put_if_absent) checks for the key (`GET metadata/{key}`) and then
//!   writes it. Concurrent increments of one counter can be lost, and several concurrent
//!   put-if-absent calls can all win; [`Capabilities::atomic_counter`] and
//!   [`Capabilities::atomic_put_if_absent`] say `false`. Route such writes through one Worker with
//!   a Durable Object when they must be exact. An increment keeps the counter's metadata and
//!   expiration, except that Cloudflare refuses expirations under 60 s away: an increment in the
//!   last minute of a counter's life moves its expiry to 60 s from now.
//! - **Eventual consistency.** A write is visible at once where it was made, but other
//!   Cloudflare locations (and so other clients) can read the old value, or a cached "not found",
//!   for 60 s or more; listings lag the same way. [`Capabilities::consistency`] is
//!   [`Consistency::Eventual`](kvkit_core::Consistency::Eventual).
//! - **Metadata passes through JavaScript.** JSON `null` metadata is no metadata (it reads back
//!   as `None`), and numbers are IEEE doubles, so integers beyond ±2⁵³ change
//!   ([`Capabilities::exact_metadata`] is `false`).
//! - **Batch reads are text.** `bulk/get` returns values as text, so a value that is not valid
//!   UTF-8 comes back with replacement characters; every value holding U+FFFD is then read again
//!   exactly, alone (for `get_with_metadata`, a write between the two reads can pair the new
//!   value with the old metadata). A value starting with a UTF-8 byte-order mark loses it in
//!   `get_many`.
//! - **REST is an admin path, not a hot path.** Every call is an HTTPS round trip to Cloudflare's
//!   API (tens of milliseconds), and the API allows 1,200 requests per 5 minutes per token across
//!   all of Cloudflare's API, after which every call gets HTTP 429 for five minutes; a key takes
//!   at most one write a second. Use the batch operations: 10,000 writes cost 10 requests, a
//!   100-key read one. [`CloudflareStore::request_count`] counts the requests really sent.
//!
//! # Failures
//!
//! A 429 is retried after its `retry-after`; a 5xx, a timeout or a lost connection is retried
//! with jittered exponential backoff, both within the [`RetryPolicy`]. What remains is a typed
//! error: [`Error::RateLimited`], [`Error::Timeout`], or a retryable [`Error::Backend`]. A 401 or
//! 403 is [`Error::PermissionDenied`] with Cloudflare's error code and message. Other failures
//! are [`Error::Backend`] whose `source` is an [`ApiError`] carrying the status and Cloudflare's
//! error codes. The API token never appears in `Debug` output, logs or errors.
//!
//! # Testing without Cloudflare
//!
//! `kv-cloudflare/emulator/` serves this REST API from a Worker running in workerd (Cloudflare's
//! runtime, through Miniflare) on a real KV binding, so limits, expiry, ordering and cursors are
//! Cloudflare's own. The tests start it on a free loopback port; point
//! [`CloudflareBuilder::base_url`] at it (see `kvkit_test_servers::CfEmulator`).

mod builder;
mod bulk;
mod client;
mod entry;
mod expiry;
mod store;
mod wire;

#[cfg(doc)]
use kvkit_core::{Capabilities, Error, KvStore};

pub use builder::{CloudflareBuilder, RetryPolicy};
pub use client::{ApiError, UnappliedKeys};
pub use store::CloudflareStore;

/// The backend name in [`Capabilities`] and in errors.
const BACKEND: &str = "cloudflare";
/// Cloudflare's API, where production requests go.
///
/// ```
/// let store = kvkit_cloudflare::CloudflareStore::builder()
///     .account_id("a").namespace_id("n").api_token("t").build()?;
/// assert!(store.value_url("k").starts_with(kvkit_cloudflare::DEFAULT_BASE_URL));
/// # Ok::<(), kvkit_core::Error>(())
/// ```
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The most items one bulk write or delete may carry, the most [`CloudflareBuilder::bulk_batch`]
/// accepts.
///
/// ```
/// let builder = kvkit_cloudflare::CloudflareStore::builder().bulk_batch(kvkit_cloudflare::MAX_BULK_ITEMS + 1);
/// assert!(format!("{builder:?}").contains("bulk_batch: 10000"));
/// ```
pub const MAX_BULK_ITEMS: usize = 10_000;
