//! `get`, `put`, `delete` and `list`: one store call (or one listing) each.

use std::io::{self, BufWriter, Read, Write};
use std::time::Duration;

use kvkit::backend::{from_unix_secs, unix_secs_ceil};
use kvkit::{Bytes, KvStore, ListOptions, PutOptions};
use serde::Serialize;
use serde_json::Value;

use crate::cli::ListArgs;
use crate::error::CliError;
use crate::record::Record;

/// Writes `bytes` to standard output and flushes.
fn print(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// `kv get KEY [--json]`.
pub(crate) async fn get(store: &dyn KvStore, key: String, json: bool) -> Result<(), CliError> {
    if json {
        let entry = store
            .get_with_metadata(&key)
            .await?
            .ok_or_else(|| CliError::NotFound(key.clone()))?;
        let expiration = entry.expiration.map(unix_secs_ceil);
        let record = Record::new(key, &entry.value, entry.metadata, expiration);
        print(format!("{}\n", record.to_line()).as_bytes())
    } else {
        let value = store
            .get(&key)
            .await?
            .ok_or_else(|| CliError::NotFound(key.clone()))?;
        print(&value)
    }
}

/// `kv put KEY [VALUE] [--ttl D | --expire-at S] [--metadata JSON]`.
pub(crate) async fn put(
    store: &dyn KvStore,
    key: String,
    value: Option<String>,
    ttl: Option<Duration>,
    expire_at: Option<u64>,
    metadata: Option<Value>,
) -> Result<(), CliError> {
    let value = match value {
        Some(value) => Bytes::from(value),
        None => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(CliError::Stdin)?;
            Bytes::from(buf)
        }
    };
    let mut options = PutOptions::new();
    if let Some(ttl) = ttl {
        options = options.ttl(ttl);
    }
    if let Some(at) = expire_at {
        options = options.expire_at(from_unix_secs(at));
    }
    if let Some(metadata) = metadata {
        options = options.metadata(metadata);
    }
    Ok(store.put(&key, value, options).await?)
}

/// `kv delete KEY...`.
pub(crate) async fn delete(store: &dyn KvStore, keys: Vec<String>) -> Result<(), CliError> {
    Ok(store.delete_many(&keys).await?)
}

/// One line of `kv list --json`.
#[derive(Serialize)]
struct ListedKey<'a> {
    /// The key.
    name: &'a str,
    /// When it expires, in unix seconds (rounded up).
    expiration: Option<u64>,
    /// Its JSON metadata.
    metadata: Option<&'a Value>,
}

/// `kv list [--prefix P] [--limit N] [--json]`: every key, page after page, up to `limit`.
pub(crate) async fn list(store: &dyn KvStore, args: ListArgs) -> Result<(), CliError> {
    let page_size = u64::try_from(store.capabilities().max_list_limit).unwrap_or(u64::MAX);
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut cursor = None;
    while remaining > 0 {
        let limit = usize::try_from(remaining.min(page_size)).unwrap_or(usize::MAX);
        let page = store
            .list(
                ListOptions::new()
                    .prefix(args.prefix.clone())
                    .limit(limit)
                    .cursor(cursor),
            )
            .await?;
        for key in page.keys.into_iter().take(limit) {
            let line = if args.json {
                serde_json::to_string(&ListedKey {
                    name: &key.name,
                    expiration: key.expiration.map(unix_secs_ceil),
                    metadata: key.metadata.as_ref(),
                })
                .expect("strings and JSON values serialize")
            } else {
                key.name
            };
            writeln!(out, "{line}").map_err(CliError::Stdout)?;
            remaining -= 1;
        }
        if page.list_complete {
            break;
        }
        cursor = page.cursor;
    }
    out.flush().map_err(CliError::Stdout)
}
