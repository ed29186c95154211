//! Sending one REST call: the request counter, retries with backoff, and turning Cloudflare's
//! answers into `kvkit_core::Error`s.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kvkit_core::{Error, Result};
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::wire::{ApiMessage, Envelope};
use crate::{BACKEND, RetryPolicy};

/// The code Cloudflare answers a read of a missing key with.
pub(crate) const KEY_NOT_FOUND: i64 = 10009;

/// Longest excerpt of a non-JSON error body an error message repeats.
const BODY_EXCERPT: usize = 200;

/// The keys a bulk write still could not apply after its retries (Cloudflare's
/// `unsuccessful_keys`): the `source` of the [`Error::Backend`] that `put_many` or `delete_many`
/// returns, so callers can downcast to it and retry or report them. Keys can be credentials, so
/// neither its `Display` nor its `Debug` shows them, only how many there are.
///
/// ```
/// let unapplied = kvkit_cloudflare::UnappliedKeys::new(vec!["session:secret".into()]);
/// assert_eq!(unapplied.keys(), ["session:secret"]);
/// assert_eq!(unapplied.to_string(), "1 keys not applied");
/// assert!(!format!("{unapplied:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct UnappliedKeys {
    keys: Vec<String>,
}

impl UnappliedKeys {
    /// The keys that were not applied.
    ///
    /// ```
    /// assert!(kvkit_cloudflare::UnappliedKeys::new(vec![]).keys().is_empty());
    /// ```
    pub fn new(keys: Vec<String>) -> Self {
        Self { keys }
    }

    /// The keys, as the request named them.
    ///
    /// ```
    /// let unapplied = kvkit_cloudflare::UnappliedKeys::new(vec!["a".into(), "b".into()]);
    /// assert_eq!(unapplied.keys().len(), 2);
    /// ```
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

impl fmt::Display for UnappliedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} keys not applied", self.keys.len())
    }
}

impl fmt::Debug for UnappliedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnappliedKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl std::error::Error for UnappliedKeys {}

/// A failed REST call as Cloudflare described it: the HTTP status and the `errors` of the
/// envelope. Kept as the `source` of [`Error::Backend`], so callers can downcast to it.
///
/// ```
/// let err = kvkit_cloudflare::ApiError::new(403, vec![(10000, "Authentication error".into())]);
/// assert_eq!(err.status(), 403);
/// assert_eq!(err.codes().collect::<Vec<_>>(), [10000]);
/// assert_eq!(err.to_string(), "HTTP 403, Cloudflare error 10000: Authentication error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: u16,
    errors: Vec<(i64, String)>,
}

impl ApiError {
    /// An error for HTTP `status` with Cloudflare's `(code, message)` pairs.
    ///
    /// ```
    /// let err = kvkit_cloudflare::ApiError::new(500, vec![]);
    /// assert_eq!(err.to_string(), "HTTP 500");
    /// ```
    pub fn new(status: u16, errors: Vec<(i64, String)>) -> Self {
        Self { status, errors }
    }

    /// The HTTP status.
    ///
    /// ```
    /// assert_eq!(kvkit_cloudflare::ApiError::new(429, vec![]).status(), 429);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Cloudflare's error codes (10009: key not found, 10013: namespace not found, 10000:
    /// authentication error, …).
    ///
    /// ```
    /// let err = kvkit_cloudflare::ApiError::new(404, vec![(10013, "namespace not found".into())]);
    /// assert!(err.codes().any(|c| c == 10013));
    /// ```
    pub fn codes(&self) -> impl Iterator<Item = i64> + '_ {
        self.errors.iter().map(|(code, _)| *code)
    }

    /// Cloudflare's `(code, message)` pairs.
    ///
    /// ```
    /// let err = kvkit_cloudflare::ApiError::new(400, vec![(10001, "bad".into())]);
    /// assert_eq!(err.errors(), [(10001, "bad".to_string())]);
    /// ```
    pub fn errors(&self) -> &[(i64, String)] {
        &self.errors
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (i, (code, message)) in self.errors.iter().enumerate() {
            let sep = if i == 0 { ", " } else { "; " };
            write!(f, "{sep}Cloudflare error {code}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Reads Cloudflare's errors out of a response body, whatever it holds: the envelope's
/// `errors`, or for a body that is not JSON (a proxy's HTML page, say) a short excerpt of it.
fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    let errors = match serde_json::from_slice::<Envelope<serde_json::Value>>(body) {
        Ok(envelope) => envelope
            .errors
            .into_iter()
            .map(|ApiMessage { code, message }| (code, message))
            .collect(),
        Err(_) if body.is_empty() => Vec::new(),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text
                .chars()
                .take(BODY_EXCERPT)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            vec![(0, format!("non-JSON body: {}", excerpt.trim()))]
        }
    };
    ApiError::new(status.as_u16(), errors)
}

/// The seconds of a `retry-after` header (Cloudflare sends whole seconds).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// How a call ended, for the retry loop.
enum Outcome {
    Done(Response),
    Retry {
        error: Error,
        wait: Option<Duration>,
    },
}

/// The HTTP side of a store: the client, the credentials, the retry policy and the counter.
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) auth: HeaderValue,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) requests: AtomicU64,
}

impl Http {
    /// Sends the request `build` makes (again on each retry) and returns the response when it
    /// is a success, or a 404 when `not_found_ok`; every other answer becomes an [`Error`].
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        not_found_ok: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut attempt: u32 = 0;
        loop {
            let outcome = self.attempt(operation, not_found_ok, &build).await?;
            let (error, wait) = match outcome {
                Outcome::Done(response) => return Ok(response),
                Outcome::Retry { error, wait } => (error, wait),
            };
            if attempt >= self.retry.max_retries {
                return Err(error);
            }
            let delay = match wait {
                // Cloudflare said how long; waiting longer than our budget allows is giving up.
                Some(wait) if wait > self.retry.max_backoff => return Err(error),
                Some(wait) => wait,
                None => self.retry.backoff(attempt),
            };
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        operation: &'static str,
        not_found_ok: bool,
        build: &impl Fn() -> RequestBuilder,
    ) -> Result<Outcome> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match build()
            .header("authorization", self.auth.clone())
            .send()
            .await
        {
            Ok(response) => response,
            // A request that cannot even be built (a malformed base URL) fails the same way
            // every time.
            Err(e) if e.is_builder() => {
                return Err(Error::backend(
                    BACKEND,
                    format!("{operation}: invalid request"),
                    false,
                    e.without_url(),
                ));
            }
            Err(e) => {
                let error = if e.is_timeout() {
                    Error::Timeout {
                        backend: BACKEND,
                        operation,
                        after: self.timeout,
                    }
                } else {
                    // Connection refused or reset, DNS, TLS. Without the URL, which holds the
                    // key (a session id, say); the token travels in a header.
                    Error::backend(
                        BACKEND,
                        format!("{operation}: request failed"),
                        true,
                        e.without_url(),
                    )
                };
                return Ok(Outcome::Retry { error, wait: None });
            }
        };
        let status = response.status();
        if status.is_success() || (not_found_ok && status == StatusCode::NOT_FOUND) {
            return Ok(Outcome::Done(response));
        }
        let wait = retry_after(response.headers().get(RETRY_AFTER));
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) if e.is_timeout() => {
                let error = Error::Timeout {
                    backend: BACKEND,
                    operation,
                    after: self.timeout,
                };
                return Ok(Outcome::Retry { error, wait: None });
            }
            Err(_) => Default::default(),
        };
        let api = api_error(status, &body);
        match status.as_u16() {
            401 | 403 => Err(Error::PermissionDenied {
                backend: BACKEND,
                message: format!("{operation}: {api}"),
            }),
            429 => Ok(Outcome::Retry {
                error: Error::RateLimited {
                    backend: BACKEND,
                    retry_after: wait,
                },
                wait,
            }),
            500..=599 => Ok(Outcome::Retry {
                error: Error::backend(BACKEND, format!("{operation} failed"), true, api),
                wait: None,
            }),
            _ => Err(Error::backend(
                BACKEND,
                format!("{operation} failed"),
                false,
                api,
            )),
        }
    }

    /// Sends a call answered with a JSON envelope and returns its `result` (and the envelope,
    /// for `result_info`).
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Envelope<T>> {
        let response = self.send(operation, false, build).await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.body_error(operation, e))?;
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            Error::backend(
                BACKEND,
                format!(
                    "{operation}: unexpected response ({})",
                    api_error(status, &body)
                ),
                false,
                e,
            )
        })?;
        if !envelope.success {
            return Err(Error::backend(
                BACKEND,
                format!("{operation} failed"),
                false,
                api_error(status, &body),
            ));
        }
        Ok(envelope)
    }

    /// Whether a 404 response is Cloudflare's "key not found" (and not, say, a missing
    /// namespace, which must not read as an absent key).
    pub(crate) async fn is_key_not_found(
        &self,
        operation: &'static str,
        response: Response,
    ) -> Result<()> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.body_error(operation, e))?;
        let api = api_error(status, &body);
        if api.codes().any(|code| code == KEY_NOT_FOUND) {
            Ok(())
        } else {
            Err(Error::backend(
                BACKEND,
                format!("{operation} failed"),
                false,
                api,
            ))
        }
    }

    /// An error while reading a response body.
    pub(crate) fn body_error(&self, operation: &'static str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                backend: BACKEND,
                operation,
                after: self.timeout,
            }
        } else {
            Error::backend(
                BACKEND,
                format!("{operation}: reading the response failed"),
                true,
                e.without_url(),
            )
        }
    }
}

/// Whether Cloudflare answered 400 Bad Request.
pub(crate) fn is_bad_request(error: &Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<ApiError>())
        .is_some_and(|api| api.status() == 400)
}

/// An error for a response holding `got` where something else was expected, with at most
/// 100 characters of it.
pub(crate) fn unexpected(operation: &'static str, got: Option<Value>) -> Error {
    let shown = got.map(|v| v.to_string()).unwrap_or_default();
    Error::backend(
        BACKEND,
        format!("{operation}: unexpected value in the response"),
        false,
        std::io::Error::other(shown.chars().take(100).collect::<String>()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_any_shape_never_panic() {
        let json = br#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#;
        let err = api_error(StatusCode::FORBIDDEN, json);
        assert_eq!(err.errors(), [(10000, "Authentication error".to_string())]);
        for body in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"\xff\xfe\x00",
            b"{\"errors\": 5}",
            b"null",
        ] {
            let err = api_error(StatusCode::BAD_GATEWAY, body);
            assert_eq!(err.status(), 502);
        }
        let long = "x".repeat(10_000);
        assert!(
            api_error(StatusCode::BAD_GATEWAY, long.as_bytes())
                .to_string()
                .len()
                < 300
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(retry_after(Some(&h("3"))), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some(&h("0.5"))),
            Some(Duration::from_millis(500))
        );
        assert_eq!(retry_after(Some(&h("soon"))), None);
        assert_eq!(retry_after(Some(&h("-1"))), None);
        assert_eq!(retry_after(None), None);
    }
}
