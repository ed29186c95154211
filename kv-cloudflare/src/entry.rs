//! One key's entry: a validated write sent as `PUT values/{key}`, the exact value from
//! `GET values/{key}`, and value, metadata and expiration read together (one `POST bulk/get`, or
//! `GET values/{key}` and `GET metadata/{key}` when Cloudflare refuses it).

use std::time::SystemTime;

use bytes::Bytes;
use kvkit_core::backend::CheckedPut;
use kvkit_core::{Clock, Entry, Error, PutOptions, Result, SystemClock};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::client::{is_bad_request, unexpected};
use crate::expiry::expiry_param;
use crate::wire::{self, REPLACEMENT, encode_component};
use crate::{BACKEND, CloudflareStore};

/// A write, validated and ready to send.
pub(crate) struct Write {
    pub(crate) key: String,
    pub(crate) value: Bytes,
    pub(crate) checked: CheckedPut,
}

impl CloudflareStore {
    /// Checks a write against the store's capabilities now, ready to send.
    pub(crate) fn check_write(
        &self,
        key: String,
        value: Bytes,
        options: &PutOptions,
    ) -> Result<Write> {
        let checked = self
            .inner
            .caps
            .check_put(&key, value.len(), options, SystemClock.now())?;
        Ok(Write {
            key,
            value,
            checked,
        })
    }

    /// `PUT values/{key}`, raw or multipart, with the expiry as a query parameter.
    pub(crate) async fn send_put(
        &self,
        key: &str,
        value: Bytes,
        metadata_json: Option<&str>,
        expiry: Option<(&'static str, u64)>,
    ) -> Result<()> {
        let mut url = self.value_url(key);
        if let Some((name, secs)) = expiry {
            url.push_str(&format!("?{name}={secs}"));
        }
        let (content_type, body) = match metadata_json {
            None => ("application/octet-stream".to_owned(), value),
            Some(json) => wire::multipart(&value, json),
        };
        let client = &self.inner.http.client;
        self.http()
            .json::<Value>("put", || {
                client
                    .put(&url)
                    .header(CONTENT_TYPE, &content_type)
                    .body(body.clone())
            })
            .await?;
        Ok(())
    }

    pub(crate) async fn put_checked(&self, w: Write) -> Result<()> {
        let expiry = expiry_param(w.checked.expiry, SystemClock.now());
        self.send_put(&w.key, w.value, w.checked.metadata_json.as_deref(), expiry)
            .await
    }

    /// `GET values/{key}`: the exact bytes and the `expiration` header, or `None`.
    pub(crate) async fn get_value(&self, key: &str) -> Result<Option<(Bytes, Option<SystemTime>)>> {
        let url = self.value_url(key);
        let client = &self.inner.http.client;
        let response = self.http().send("get", true, || client.get(&url)).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            self.http().is_key_not_found("get", response).await?;
            return Ok(None);
        }
        let expiration = response
            .headers()
            .get("expiration")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let value = response
            .bytes()
            .await
            .map_err(|e| self.http().body_error("get", e))?;
        Ok(Some((value, wire::expiration_of(expiration))))
    }

    /// Value, metadata and expiration of `key` in one bulk read, the value re-read exactly when
    /// the text read could not carry it.
    pub(crate) async fn read_entry(&self, key: &str) -> Result<Option<Entry>> {
        let mut values = match self.bulk_get("get_with_metadata", &[key], true).await {
            Ok(values) => values,
            // Cloudflare refuses bulk reads of values it cannot return as text: read the value
            // and the metadata one by one.
            Err(e) if is_bad_request(&e) => return self.read_entry_apart(key).await,
            Err(e) => return Err(e),
        };
        let mut found = match values.remove(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(found)) => found,
            other => return Err(unexpected("get_with_metadata", other)),
        };
        let metadata = wire::metadata_of(found.remove("metadata"));
        let expiration = wire::expiration_of(found.get("expiration").and_then(Value::as_f64));
        let text = match found.remove("value") {
            Some(Value::String(text)) => text,
            other => return Err(unexpected("get_with_metadata", other)),
        };
        if !text.contains(REPLACEMENT) {
            return Ok(Some(Entry::new(Bytes::from(text), metadata, expiration)));
        }
        // Not UTF-8 (or a genuine U+FFFD): the raw read is exact; its expiration is fresher.
        Ok(self
            .get_value(key)
            .await?
            .map(|(value, expiration)| Entry::new(value, metadata, expiration)))
    }

    /// `GET values/{key}` and `GET metadata/{key}`, at once.
    async fn read_entry_apart(&self, key: &str) -> Result<Option<Entry>> {
        let url = self.url(&format!("metadata/{}", encode_component(key)));
        let client = &self.inner.http.client;
        let metadata = async {
            let response = self
                .http()
                .send("get_with_metadata", true, || client.get(&url))
                .await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                self.http()
                    .is_key_not_found("get_with_metadata", response)
                    .await?;
                return Ok(None);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| self.http().body_error("get_with_metadata", e))?;
            let envelope: wire::Envelope<Value> = serde_json::from_slice(&body).map_err(|e| {
                Error::backend(BACKEND, "get_with_metadata: unexpected response", false, e)
            })?;
            Ok(Some(wire::metadata_of(envelope.result)))
        };
        let (value, metadata) =
            futures_util::future::try_join(self.get_value(key), metadata).await?;
        Ok(match (value, metadata) {
            (Some((value, expiration)), Some(metadata)) => {
                Some(Entry::new(value, metadata, expiration))
            }
            // Deleted (or written) between the two reads: absent is a state it was in.
            _ => None,
        })
    }
}
