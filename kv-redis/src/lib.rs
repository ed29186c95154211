//! The Redis backend of `kvkit`: the whole [`KvStore`](kvkit_core::KvStore) contract on a single
//! Redis server, a Sentinel-managed primary with replicas, or a Redis Cluster, over one
//! multiplexed connection (or [several](RedisBuilder::connections)) that reconnects by itself
//! and follows failovers (see [High availability](#high-availability)).
//!
//! ```no_run
//! use kvkit_core::{KvStore, PutOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kvkit_core::Result<()> {
//! let store = kvkit_redis::RedisStore::builder("redis://127.0.0.1:6379")
//!     .namespace("myapp:")
//!     .connect()
//!     .await?;
//! store.put("user:1", "Ada".into(), PutOptions::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # How data is laid out
//!
//! Under a namespace `ns` (default `kv:`), a key `k` is stored as:
//!
//! | Redis key | type | holds |
//! |---|---|---|
//! | `ns` `v:` `k` | string | the value, with the entry's expiry as a Redis TTL (millisecond precision) |
//! | `ns` `i` | sorted set | every key name, all with score 0: the ordered index |
//! | `ns` `x` | sorted set | the keys that expire, scored by their expiry time in unix ms |
//!
//! A value without metadata is stored as it is, so counters are plain decimal strings that
//! `INCRBY` understands and a `get` is one `GET`, as fast as the raw crate. A value with metadata
//! (or one that happens to begin with the frame marker) is framed: the 4-byte marker
//! `ff 4b 56 01`, the metadata's JSON length as a big-endian `u32`, the JSON, then the value.
//! Value and metadata therefore change together in one `SET`. A value may be up to 512 MiB less
//! the frame header and the largest metadata (64 KiB), so that any framed value fits one Redis
//! argument (`proto-max-bulk-len`, 512 MB by default); a larger one is refused before any I/O.
//!
//! It needs Redis 7.0 or later (`PEXPIRETIME`, functions); Debian's `redis-server` 7.0 is what
//! the tests run.
//!
//! A put is one `MULTI`/`EXEC` round trip: `SET` with the expiry, `ZADD` to the index, and for an
//! expiring key `ZADD` to the expiry index. Put-if-absent is `SET NX` and the index updates in one
//! Lua script, so it is atomic.
//!
//! An entry's [`Version`](kvkit_core::Version) is the SHA-1 of its stored bytes (value and
//! metadata) and its `PEXPIRETIME`, computed by the client on `get_with_metadata` and by the
//! server in the Lua scripts of `put(…, PutOptions::new().if_version(v))` and
//! `delete_if_version`, which compare and write in one atomic step: no extra key per entry, and a
//! `get` stays one `GET`. A key rewritten with exactly the same value, metadata and expiry keeps
//! its version.
//!
//! # Counters: one short call, a second one to create
//!
//! An increment of an existing counter is one round trip: a short Lua routine given only the
//! value key and the delta (no argument at all for the usual delta of 1) runs `EXISTS`, then
//! `INCRBY`, leaving the counter's expiry and index entries as they are. When the key is absent
//! (or expired), that routine changes nothing and answers so, and a second script creates the
//! counter: `INCRBY`, the expiry, and both index entries, or a plain `INCRBY` if another client
//! created it meanwhile. Each call is atomic, so an increment that fails or is interrupted
//! between the two never leaves a counter without its expiry or missing from the listing, and a
//! counter that exists is always indexed.
//!
//! The short routine runs as a Redis function (`FCALL`): the store loads its library, named
//! `kv_` and a hash of its code (so stores of different versions never replace each other's), on
//! first use and again whenever a server lacks it (on a cluster, on every primary). Where the
//! server refuses functions (an ACL without `FCALL` or `FUNCTION`, or a Redis-compatible server
//! without them), the store runs the same code as a script (`EVALSHA`) from then on.
//!
//! The trade-off: a counter's first increment (for a rate limiter, the first request of each
//! window) takes two round trips, so that every other increment carries no index keys or expiry
//! arguments, and Redis charges for every argument a script receives. The short routine, run as
//! a function without the delta, costs `redis-server` about a third less CPU time per increment
//! than one script doing both (which needs three keys and four arguments); a `MULTI`/`EXEC` of
//! `SET NX PX`, `INCRBY` and the index `ZADD` would cost the server nearly as much as that script,
//! and the client more. The measurements are in the Redis section of
//! [`BENCHMARKS.md`](https://github.com/kvkit-rs/kvkit/blob/main/BENCHMARKS.md).
//!
//! # Listing without scanning: the trade-off
//!
//! Redis `SCAN` is unordered and walks the whole keyspace, so listing uses the `ns i` sorted set
//! instead: `ZRANGE … BYLEX` from the prefix (or after the cursor) returns keys in byte order in
//! O(log n + limit), however many other keys the database holds, and a prefix holding `*`, `?` or
//! `[` is matched literally. The cost is on writes of new keys, which also enter the index, and
//! on memory: the index takes roughly 40-60 bytes of Redis memory per key.
//!
//! A page takes two round trips per shard: the store reads the next names from the index, then
//! one Lua script, given the value key of each, reads their expiries (`PEXPIRETIME`) and the
//! metadata from the frame header (`GETRANGE`, so large values are never copied), atomically.
//! Every script touches only the keys its call declares, as Redis requires, so a script cannot
//! read names from the index and then open their values itself.
//!
//! An overwrite relies on the existing key being indexed already, so the index keys must never
//! be evicted: run Redis with `maxmemory-policy noeviction` or a `volatile-*` policy (the index
//! sorted sets have no TTL), not `allkeys-*`.
//!
//! Redis expires values on its own, so the index can hold names of keys that have expired. A
//! listing skips them and removes them as it meets them (reading further names until its page is
//! full, looking at no more than 1000 or twice the limit), and one in sixteen expiring writes
//! also sweeps up to 32 entries from both indexes that are due by the store's clock (found
//! through `ns x`, settled by a script against the server's own expiry), so dead names cannot
//! pile up even if nothing ever lists them. Keys written to these Redis keys by anything other
//! than this store are not indexed.
//!
//! # Redis Cluster
//!
//! [`RedisStore::cluster`] spreads keys over 16 shards (configurable), each with its own hash
//! tag: key `k` of shard `s` lives under `{h:s}ns v:k`, where `h` is the namespace's
//! [`stable_hash`](kvkit_core::backend::stable_hash) in hex, next to its shard's two indexes, so every
//! transaction and script touches one slot. The tag holds no part of the namespace, so any
//! namespace works, even one holding `{` or `}` (which would otherwise end the tag early and
//! spread a key's value and indexes over different slots). A listing reads a page from every
//! shard at once and merges them; a batch runs one transaction per shard.
//!
//! # High availability
//!
//! **Sentinel.** A `redis+sentinel://[user:password@]host:port[,host:port…]/service-name[/db]`
//! URL (`rediss+sentinel://` for TLS to the sentinels and the servers, trusting
//! [`tls_root_certificates`](RedisBuilder::tls_root_certificates) if set) names the sentinels
//! (port 26379 if omitted) and the service they monitor; the user, password and database are the
//! servers' (the sentinels are asked without credentials). The store asks the sentinels for the
//! primary, checks that it answers as one, and keeps a multiplexed connection to it (one per
//! [`connections`](RedisBuilder::connections)). After a
//! lost connection, an answer that the server is no longer the primary (`READONLY`,
//! `MASTERDOWN`, `LOADING`), or a call cut short by the timeout (a server frozen or cut off by
//! the network keeps its connections open), the next call asks the sentinels again: the store
//! follows a failover by itself. Calls made until the sentinels have promoted a replica fail
//! with a retryable error; the store retries none itself, since a write that failed may have
//! been applied. [`read_from_replicas`](RedisBuilder::read_from_replicas) sends plain reads to a
//! replica (stale reads: see there). `RedisInvalidator` (feature `layers`) needs the servers'
//! own URLs.
//!
//! **Cluster with replicas.** The cluster client follows `MOVED` and `ASK`, retries `TRYAGAIN`
//! twice and reloads the slot map after a failover; what still reaches the caller while a master
//! is replaced or slots move (`CLUSTERDOWN`, `TRYAGAIN`, `MOVED` inside a transaction, a lost
//! connection) is a retryable [`Unavailable`](kvkit_core::ErrorKind::Unavailable) error; only
//! after a lost connection may the write have been applied.
//!
//! **Replica acknowledgement.** Redis replicates asynchronously: a primary that fails can take
//! the writes of its last moments with it, though it acknowledged them.
//! [`wait_for_replicas(n, timeout)`](RedisBuilder::wait_for_replicas) sends `WAIT n timeout` with
//! every write, in the same round trip; a write fewer replicas confirmed in time fails with
//! [`Error::NotReplicated`](kvkit_core::Error::NotReplicated) (retryable, and it **may still
//! have been applied**). A write that succeeded is on `n` replicas, and Sentinel and Cluster
//! promote the most up-to-date one. It is not strong consistency: a write that failed may
//! survive, a read from another replica may not see it yet, and the housekeeping writes of
//! listings and sweeps (dropping names of expired keys) are not waited for.
//!
//! What it costs and buys, measured with `kv-bench redis-ha` (the scenarios of this crate's
//! `tests/ha.rs`, on one 2-core machine, 8 callers writing and reading without pause; Sentinel
//! `down-after-milliseconds` 1000, `cluster-node-timeout` 2000; details in
//! [`BENCHMARKS.md`](https://github.com/kvkit-rs/kvkit/blob/main/BENCHMARKS.md)):
//!
//! | | measured |
//! |---|---|
//! | Sentinel: primary killed, until callers meet no more errors | 2.3 s (median of 3; worst 2.4 s) |
//! | Sentinel: primary frozen (as a network partition leaves it) | 3.2 s (worst 3.2 s) |
//! | Cluster, a replica per master: master killed | 4.0 s (worst 4.5 s) |
//! | acknowledged writes lost, with `wait_for_replicas(1, 500 ms)` | 0 (of 149,000 acknowledged, 9 failovers) |
//! | acknowledged writes lost, without | 0 (of 386,000 acknowledged, 9 failovers) |
//! | resharding under load (3 rounds of 6 slots, 1.9 s each): errors past a 10-try retry budget | 0 (319 retried) |
//! | puts per second through Sentinel, `WAIT 1` ÷ none: 1 caller; 16 on 1 connection; 16 on 16 | 0.73; 0.14; 0.22 |
//!
//! On loopback the replicas keep up so closely that killing a primary lost no acknowledged write
//! even without `WAIT`; across a network, and under heavier load, they lag more, and `WAIT` is
//! what bounds the loss. Its price: a replication round trip per write and, since Redis runs a
//! connection's commands in order and `WAIT` holds the ones behind it, one multiplexed
//! connection then carries about one write per replication round trip however many callers
//! share it ([`connections`](RedisBuilder::connections) opens more, which helped only a little
//! on the 2-core test machine, where the replicas compete for the same CPU); and writes stop
//! while fewer than `n` replicas are up (on a cluster, until a replica of each new master is
//! back). Use it for the writes that must survive a failover, on a store of their own if others
//! need the throughput.
//!
//! # Failures
//!
//! Every operation is bounded by a timeout (default 2 s): while Redis is unreachable, calls fail
//! with a retryable [`Error`](kvkit_core::Error)
//! ([`Error::is_retryable`](kvkit_core::Error::is_retryable)) instead of hanging, and the
//! connection comes back by itself once Redis does. Passwords in URLs never appear in `Debug` or
//! errors.

mod builder;
mod conditional;
mod connection;
mod counters;
mod errors;
mod framing;
#[cfg(feature = "layers")]
mod invalidator;
mod layout;
mod listing;
mod replication;
mod scripts;
mod sentinel;
mod store;
mod sweep;
mod writes;

pub use builder::{RedisBuilder, redact_url};
#[cfg(feature = "layers")]
pub use invalidator::RedisInvalidator;
pub use store::RedisStore;
