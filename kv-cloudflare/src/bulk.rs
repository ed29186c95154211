//! The batch operations: `get_many` over `bulk/get`, `put_many` and `delete_many` over `bulk` and
//! `bulk/delete` in requests under Cloudflare's count and size limits, keys Cloudflare did not
//! apply (`unsuccessful_keys`) retried, then reported.

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::try_join_all;
use kvkit_core::backend::cloudflare::last_per_key;
use kvkit_core::{Clock, Error, PutItem, Result, SystemClock};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::client::{is_bad_request, unexpected};
use crate::expiry::expiry_param;
use crate::wire::{BulkGet, BulkOutcome, BulkValues, REPLACEMENT};
use crate::{BACKEND, CloudflareStore, UnappliedKeys};

/// A bulk request body must stay under 100 MB; we keep a margin for the JSON around values.
const MAX_BULK_BYTES: usize = 95_000_000;

impl CloudflareStore {
    /// `get_many`: one `POST bulk/get` for the distinct keys, values that came back inexact (or
    /// every key, if Cloudflare refuses the bulk read) read again one by one.
    pub(crate) async fn get_many_in_bulk(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let caps = &self.inner.caps;
        caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut unique: Vec<&str> = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            if seen.insert(key.as_str()) {
                unique.push(key);
            }
        }
        let mut values = match self.bulk_get("get_many", &unique, false).await {
            Ok(values) => values,
            // Cloudflare refuses bulk reads of values it cannot return as text: read each alone.
            Err(e) if is_bad_request(&e) => {
                let found = try_join_all(unique.iter().map(|key| self.get_value(key))).await?;
                let found: std::collections::HashMap<&str, Option<Bytes>> = unique
                    .iter()
                    .copied()
                    .zip(found)
                    .map(|(key, found)| (key, found.map(|(value, _)| value)))
                    .collect();
                return Ok(keys.iter().map(|k| found[k.as_str()].clone()).collect());
            }
            Err(e) => return Err(e),
        };
        let mut texts: std::collections::HashMap<&str, Option<String>> =
            std::collections::HashMap::with_capacity(unique.len());
        for key in &unique {
            let text = match values.remove(*key) {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text),
                other => return Err(unexpected("get_many", other)),
            };
            texts.insert(key, text);
        }
        // Values that were not UTF-8 came back with replacement characters: read them exactly.
        let inexact: Vec<&str> = unique
            .iter()
            .copied()
            .filter(|k| texts[k].as_ref().is_some_and(|t| t.contains(REPLACEMENT)))
            .collect();
        let exact = try_join_all(inexact.iter().map(|key| self.get_value(key))).await?;
        let exact: std::collections::HashMap<&str, Option<Bytes>> = inexact
            .into_iter()
            .zip(exact)
            .map(|(key, found)| (key, found.map(|(value, _)| value)))
            .collect();
        Ok(keys
            .iter()
            .map(|key| match exact.get(key.as_str()) {
                Some(value) => value.clone(),
                None => texts[key.as_str()].clone().map(Bytes::from),
            })
            .collect())
    }

    /// `put_many`: the last write of each key, as `PUT bulk` items (text, or base64 when not
    /// UTF-8), in requests under the count and size limits.
    pub(crate) async fn put_many_in_bulk(&self, items: Vec<PutItem>) -> Result<()> {
        let writes = items
            .into_iter()
            .map(|item| {
                let w = self.check_write(item.key, item.value, &item.options)?;
                Ok((w.key.clone(), w))
            })
            .collect::<Result<Vec<_>>>()?;
        if writes.is_empty() {
            return Ok(());
        }
        let now = SystemClock.now();
        let base64 = base64::engine::general_purpose::STANDARD;
        let items: Vec<(String, Value, usize)> = last_per_key(writes)
            .into_iter()
            .map(|(key, w)| {
                let mut item = Map::new();
                item.insert("key".into(), Value::String(key.clone()));
                let size = match std::str::from_utf8(&w.value) {
                    Ok(text) => {
                        item.insert("value".into(), Value::String(text.to_owned()));
                        // JSON escapes can grow control characters sixfold.
                        text.len() + text.bytes().filter(|b| *b < 0x20).count() * 5
                    }
                    Err(_) => {
                        let encoded = base64.encode(&w.value);
                        let size = encoded.len();
                        item.insert("value".into(), Value::String(encoded));
                        item.insert("base64".into(), Value::Bool(true));
                        size
                    }
                };
                if let Some((name, secs)) = expiry_param(w.checked.expiry, now) {
                    item.insert(name.into(), json!(secs));
                }
                let meta_len = w.checked.metadata_json.as_ref().map_or(0, String::len);
                if let Some(metadata) = w.checked.metadata_json {
                    // Validated JSON (check_put serialized it), so it parses back.
                    let metadata = serde_json::from_str(&metadata).unwrap_or(Value::Null);
                    item.insert("metadata".into(), metadata);
                }
                (
                    key.clone(),
                    Value::Object(item),
                    size + key.len() * 6 + meta_len + 100,
                )
            })
            .collect();
        let client = &self.inner.http.client;
        self.bulk_send("put_many", "bulk", items, |url, body| {
            client
                .put(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
        })
        .await
    }

    /// `delete_many`: each key once, in `POST bulk/delete` requests under the count and size
    /// limits.
    pub(crate) async fn delete_many_in_bulk(&self, keys: &[String]) -> Result<()> {
        let caps = &self.inner.caps;
        keys.iter().try_for_each(|key| caps.check_key(key))?;
        let items: Vec<(String, ())> = keys.iter().map(|k| (k.clone(), ())).collect();
        let items: Vec<(String, Value, usize)> = last_per_key(items)
            .into_iter()
            .map(|(key, ())| {
                let size = key.len() * 6 + 4;
                (key.clone(), Value::String(key), size)
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let client = &self.inner.http.client;
        self.bulk_send("delete_many", "bulk/delete", items, |url, body| {
            client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
        })
        .await
    }

    /// `POST bulk/get` as text for `keys` (at most 100, no duplicates).
    pub(crate) async fn bulk_get(
        &self,
        operation: &'static str,
        keys: &[&str],
        with_metadata: bool,
    ) -> Result<Map<String, Value>> {
        let body = serde_json::to_vec(&BulkGet {
            keys: keys.to_vec(),
            kind: "text",
            with_metadata,
        })
        .map_err(|e| Error::backend(BACKEND, format!("{operation}: encoding"), false, e))?;
        let body = Bytes::from(body);
        let url = self.url("bulk/get");
        let client = &self.inner.http.client;
        let envelope = self
            .http()
            .json::<BulkValues>(operation, || {
                client
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        Ok(envelope.result.map(|r| r.values).unwrap_or_default())
    }

    /// Sends bulk requests of `items` (JSON values) in chunks under the count and size limits,
    /// retrying `unsuccessful_keys`, and reports keys that still failed.
    async fn bulk_send(
        &self,
        operation: &'static str,
        path: &str,
        items: Vec<(String, Value, usize)>,
        request: impl Fn(&str, Bytes) -> reqwest::RequestBuilder,
    ) -> Result<()> {
        let mut pending = items;
        let mut round: u32 = 0;
        loop {
            let mut failed: Vec<String> = Vec::new();
            for chunk in chunks(&pending, self.inner.bulk_batch) {
                let body: Vec<&Value> = chunk.iter().map(|(_, item, _)| item).collect();
                let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| {
                    Error::backend(BACKEND, format!("encoding a {operation}"), false, e)
                })?);
                let url = self.url(path);
                let envelope = self
                    .http()
                    .json::<BulkOutcome>(operation, || request(&url, body.clone()))
                    .await?;
                failed.extend(envelope.result.unwrap_or_default().unsuccessful_keys);
            }
            if failed.is_empty() {
                return Ok(());
            }
            if round >= self.inner.http.retry.max_retries {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "{operation}: Cloudflare did not apply {} keys (see the source for which)",
                        failed.len()
                    ),
                    true,
                    UnappliedKeys::new(failed),
                ));
            }
            tokio::time::sleep(self.inner.http.retry.backoff(round)).await;
            round += 1;
            let failed: std::collections::HashSet<String> = failed.into_iter().collect();
            pending.retain(|(key, _, _)| failed.contains(key));
        }
    }
}

/// Splits bulk items into requests of at most `max_items` and about `MAX_BULK_BYTES`.
fn chunks<T>(items: &[(String, T, usize)], max_items: usize) -> Vec<&[(String, T, usize)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, _, size)) in items.iter().enumerate() {
        if i > start && (i - start >= max_items || bytes + size > MAX_BULK_BYTES) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_chunks_respect_count_and_size() {
        let items: Vec<(String, (), usize)> = (0..25).map(|i| (i.to_string(), (), 10)).collect();
        let sizes: Vec<usize> = chunks(&items, 10).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<(String, (), usize)> = (0..5)
            .map(|i| (i.to_string(), (), MAX_BULK_BYTES / 2))
            .collect();
        let sizes: Vec<usize> = chunks(&big, 10).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(chunks::<()>(&[], 10).is_empty());
    }
}
