//! Request shapes, retries and error mapping, checked against a local HTTP listener that records
//! every raw request and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvkit_cloudflare::{ApiError, CloudflareStore, RetryPolicy};
use kvkit_core::backend::from_unix_secs;
use kvkit_core::{Error, Expiry, KvStore, ListOptions, PutItem, PutOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "s3cr3t-t0ken";
const NS_PATH: &str = "/client/v4/accounts/acct/storage/kv/namespaces/ns";

/// One request as it arrived.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Never answer (to provoke a timeout).
    hang: bool,
    /// Answer only a request whose target ends with this (for requests sent concurrently).
    only_for: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
            hang: false,
            only_for: None,
        }
    }

    fn ok(result: Value) -> Self {
        Self::json(
            200,
            json!({"success": true, "errors": [], "messages": [], "result": result}),
        )
    }

    fn error(status: u16, code: i64, message: &str) -> Self {
        Self::json(
            status,
            json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
        )
    }

    fn raw(status: u16, body: &[u8]) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/html".into())],
            body: body.to_vec(),
            hang: false,
            only_for: None,
        }
    }

    fn only_for(mut self, target_suffix: &'static str) -> Self {
        self.only_for = Some(target_suffix);
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Clone, Default)]
struct Server {
    seen: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Server {
    /// Listens on a free loopback port and answers with `script`, in order, then with an empty
    /// success.
    async fn start(script: Vec<Reply>) -> (Self, String) {
        let server = Self {
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
        let accept = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(accept.clone().connection(stream));
            }
        });
        (server, base)
    }

    async fn connection(self, mut stream: TcpStream) {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at;
                }
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut start = lines.next().unwrap_or_default().split(' ');
            let method = start.next().unwrap_or_default().to_owned();
            let target = start.next().unwrap_or_default().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + 4 + length {
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end + 4..head_end + 4 + length].to_vec();
            buf.drain(..head_end + 4 + length);
            let reply = {
                let mut script = self.script.lock().unwrap();
                let at = script
                    .iter()
                    .position(|r| r.only_for.is_none_or(|suffix| target.ends_with(suffix)));
                at.and_then(|at| script.remove(at))
                    .unwrap_or_else(|| Reply::ok(json!({})))
            };
            self.seen.lock().unwrap().push(Recorded {
                method,
                target,
                headers,
                body,
            });
            if reply.hang {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            let mut out = format!(
                "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
                reply.status,
                reply.body.len()
            );
            for (name, value) in &reply.headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&reply.body);
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

fn store(base: &str, retry: RetryPolicy) -> CloudflareStore {
    CloudflareStore::builder()
        .base_url(base)
        .account_id("acct")
        .namespace_id("ns")
        .api_token(TOKEN)
        .timeout(Duration::from_millis(500))
        .retry(retry)
        .build()
        .expect("store")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new()
        .max_retries(3)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_secs(2))
}

#[tokio::test]
async fn odd_keys_are_percent_encoded_in_paths_with_the_token_in_a_header() {
    let (server, base) = Server::start(vec![Reply {
        status: 200,
        headers: vec![("expiration", "1900000000".into())],
        body: b"v".to_vec(),
        hang: false,
        only_for: None,
    }])
    .await;
    let store = store(&base, fast_retries());
    let value = store.get("a/b c%?#é+").await.expect("get");
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].target,
        format!("{NS_PATH}/values/a%2Fb%20c%25%3F%23%C3%A9%2B")
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(store.request_count(), 1);
}

#[tokio::test]
async fn missing_keys_are_none_but_a_missing_namespace_is_an_error() {
    let (_server, base) = Server::start(vec![
        Reply::error(404, 10009, "get: 'key not found'"),
        Reply::error(404, 10013, "get: 'namespace not found'"),
    ])
    .await;
    let store = store(&base, fast_retries());
    assert_eq!(store.get("k").await.expect("get"), None);
    let err = store.get("k").await.expect_err("namespace not found");
    let api = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<ApiError>())
        .expect("an ApiError source");
    assert_eq!(api.codes().collect::<Vec<_>>(), [10013]);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn puts_send_raw_bodies_or_multipart_and_the_expiry_as_a_query_parameter() {
    let (server, base) = Server::start(vec![]).await;
    let store = store(&base, fast_retries());
    let binary = Bytes::from_static(&[0xff, 0x00, b'\r', b'\n', 0x80]);
    store
        .put("raw", binary.clone(), PutOptions::new())
        .await
        .expect("raw put");
    store
        .put(
            "meta",
            binary.clone(),
            PutOptions::new()
                .ttl(Duration::from_secs(120))
                .metadata(json!({"v": 1})),
        )
        .await
        .expect("multipart put");
    store
        .put(
            "at",
            "x".into(),
            PutOptions::new().expire_at(from_unix_secs(2_000_000_000)),
        )
        .await
        .expect("put with expiration");
    let seen = server.requests();
    assert_eq!(seen.len(), 3);

    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].target, format!("{NS_PATH}/values/raw"));
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(seen[0].body, binary);

    let (path, query) = seen[1].target.split_once('?').expect("a query");
    assert_eq!(path, format!("{NS_PATH}/values/meta"));
    assert!(
        query == "expiration_ttl=120" || query == "expiration_ttl=121",
        "{query}"
    );
    let content_type = seen[1].header("content-type").expect("content type");
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart");
    let mut expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"value\"; filename=\"value\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    expected.extend_from_slice(&binary);
    expected.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
             Content-Type: application/json\r\n\r\n{{\"v\":1}}\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(seen[1].body, expected);

    assert_eq!(
        seen[2].target,
        format!("{NS_PATH}/values/at?expiration=2000000000")
    );
}

#[tokio::test]
async fn listing_query_encodes_prefix_and_cursor_and_cuts_small_pages() {
    let page = |keys: std::ops::Range<u32>, cursor: &str| {
        let keys: Vec<Value> = keys
            .map(|i| json!({"name": format!("a/b c&{i:02}")}))
            .collect();
        Reply::json(
            200,
            json!({"success": true, "errors": [], "messages": [], "result": keys,
                   "result_info": {"count": 10, "cursor": cursor}}),
        )
    };
    let (server, base) = Server::start(vec![
        page(0..10, "cf+cursor/1="),
        page(0..10, "cf+cursor/1="),
        page(10..12, ""),
    ])
    .await;
    let store = store(&base, fast_retries());
    let first = store
        .list(ListOptions::new().prefix("a/b c&").limit(7))
        .await
        .expect("list");
    assert_eq!(first.keys.len(), 7);
    assert!(!first.list_complete);
    let second = store
        .list(
            ListOptions::new()
                .prefix("a/b c&")
                .limit(7)
                .cursor(first.cursor),
        )
        .await
        .expect("second page");
    // The rest of the same API page, then on to Cloudflare's cursor.
    let names: Vec<&str> = second.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a/b c&07", "a/b c&08", "a/b c&09"]);
    let third = store
        .list(
            ListOptions::new()
                .prefix("a/b c&")
                .limit(7)
                .cursor(second.cursor),
        )
        .await
        .expect("third page");
    assert_eq!(third.keys.len(), 2);
    assert!(third.list_complete);
    let seen = server.requests();
    assert_eq!(
        seen[0].target,
        format!("{NS_PATH}/keys?limit=10&prefix=a%2Fb%20c%26")
    );
    assert_eq!(seen[1].target, seen[0].target);
    assert_eq!(
        seen[2].target,
        format!("{NS_PATH}/keys?limit=10&prefix=a%2Fb%20c%26&cursor=cf%2Bcursor%2F1%3D")
    );
}

#[tokio::test]
async fn batches_use_the_bulk_endpoints_and_retry_unsuccessful_keys() {
    let (server, base) = Server::start(vec![
        Reply::ok(json!({"values": {"a": "1", "b": null}})),
        Reply::ok(json!({"successful_key_count": 999, "unsuccessful_keys": ["k0001"]})),
        Reply::ok(json!({"successful_key_count": 1000, "unsuccessful_keys": []})),
        Reply::ok(json!({"successful_key_count": 500, "unsuccessful_keys": []})),
        Reply::ok(json!({"successful_key_count": 1, "unsuccessful_keys": []})),
        Reply::ok(json!({"successful_key_count": 3, "unsuccessful_keys": []})),
    ])
    .await;
    let store = store(&base, fast_retries());
    let values = store
        .get_many(&["a".into(), "b".into(), "a".into()])
        .await
        .expect("get_many");
    assert_eq!(values, vec![Some("1".into()), None, Some("1".into())]);
    let mut items: Vec<PutItem> = (0..2500)
        .map(|i| PutItem::new(format!("k{i:04}"), format!("v{i}")))
        .collect();
    items.push(
        PutItem::new("bin", vec![0xffu8, 0x00])
            .options(PutOptions::new().metadata(json!({"m": true}))),
    );
    store.put_many(items).await.expect("put_many");
    store
        .delete_many(&["x".into(), "y/z".into(), "x".into(), "w".into()])
        .await
        .expect("delete_many");
    let seen = server.requests();
    assert_eq!(
        seen.len(),
        6,
        "one bulk get, three bulk writes and a retry, one bulk delete"
    );

    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("POST", &*format!("{NS_PATH}/bulk/get"))
    );
    assert_eq!(
        seen[0].json(),
        json!({"keys": ["a", "b"], "type": "text", "withMetadata": false})
    );

    for write in &seen[1..5] {
        assert_eq!(
            (write.method.as_str(), write.target.as_str()),
            ("PUT", &*format!("{NS_PATH}/bulk"))
        );
    }
    let sizes: Vec<usize> = seen[1..4]
        .iter()
        .map(|r| r.json().as_array().expect("array").len())
        .collect();
    assert_eq!(sizes, [1000, 1000, 501]);
    assert_eq!(seen[1].json()[0], json!({"key": "k0000", "value": "v0"}));
    assert_eq!(
        seen[3].json()[500],
        json!({"key": "bin", "value": "/wA=", "base64": true, "metadata": {"m": true}})
    );
    assert_eq!(
        seen[4].json(),
        json!([{"key": "k0001", "value": "v1"}]),
        "the retry"
    );

    assert_eq!(
        (seen[5].method.as_str(), seen[5].target.as_str()),
        ("POST", &*format!("{NS_PATH}/bulk/delete"))
    );
    // Each key once, in the order of its first appearance (as on the binding backend).
    assert_eq!(seen[5].json(), json!(["x", "y/z", "w"]));
}

#[tokio::test]
async fn keys_a_bulk_write_could_not_apply_are_reported_without_printing_them() {
    let secret = "session:0f8c2a2e-7d1b-4b3a-9a55-2f1c6e9d8b77";
    let unsuccessful =
        || Reply::ok(json!({"successful_key_count": 1, "unsuccessful_keys": [secret]}));
    let (_server, base) = Server::start((0..4).map(|_| unsuccessful()).collect()).await;
    let store = store(&base, fast_retries());
    let err = store
        .put_many(vec![PutItem::new("plain", "1"), PutItem::new(secret, "2")])
        .await
        .expect_err("the key never applied");
    assert!(err.is_retryable());
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    let mut unapplied = None;
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        unapplied = unapplied.or_else(|| cause.downcast_ref::<kvkit_cloudflare::UnappliedKeys>());
        source = cause.source();
    }
    assert!(!shown.contains("0f8c2a2e"), "{shown}");
    assert!(shown.contains("1 keys"), "{shown}");
    assert_eq!(unapplied.expect("the keys, as the source").keys(), [secret]);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after_and_server_errors_back_off() {
    let (server, base) = Server::start(vec![
        Reply::error(429, 971, "Please wait").header("retry-after", "1"),
        Reply::raw(503, b"<html>busy</html>"),
        Reply {
            status: 200,
            headers: vec![],
            body: b"ok".to_vec(),
            hang: false,
            only_for: None,
        },
    ])
    .await;
    let store = store(&base, fast_retries());
    let started = Instant::now();
    assert_eq!(
        store.get("k").await.expect("get").as_deref(),
        Some(&b"ok"[..])
    );
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.request_count(), 3, "every try is counted");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn exhausted_retries_give_typed_errors() {
    let (_server, base) = Server::start(vec![
        Reply::error(429, 971, "Please wait").header("retry-after", "300"),
        Reply::raw(502, b"<html>bad gateway</html>"),
        Reply::raw(502, b"<html>bad gateway</html>"),
        Reply::raw(400, b"\xff\xfe not json at all"),
    ])
    .await;
    let store = store(&base, fast_retries().max_retries(1));
    match store.get("k").await {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(300)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    let err = store.get("k").await.expect_err("502 twice");
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains("bad gateway"));
    let err = store.get("k").await.expect_err("400");
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store.request_count(),
        4,
        "a retry-after beyond the budget is not waited for"
    );
}

#[tokio::test]
async fn auth_failures_are_permission_errors_with_cloudflare_code_and_never_show_the_token() {
    let (server, base) = Server::start(vec![
        Reply::error(401, 10000, "Authentication error"),
        Reply::error(403, 10000, "Authentication error"),
    ])
    .await;
    let store = store(&base, fast_retries());
    for _ in 0..2 {
        let err = store
            .put("k", "v".into(), PutOptions::new())
            .await
            .expect_err("denied");
        match &err {
            Error::PermissionDenied { message, .. } => {
                assert!(message.contains("10000"), "{message}");
                assert!(message.contains("Authentication error"), "{message}");
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
        assert!(!err.to_string().contains(TOKEN));
        assert!(!format!("{err:?}").contains(TOKEN));
    }
    assert_eq!(
        server.requests().len(),
        2,
        "permission errors are not retried"
    );
    assert!(!format!("{store:?}").contains(TOKEN));
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let hang = Reply {
        status: 200,
        headers: vec![],
        body: vec![],
        hang: true,
        only_for: None,
    };
    let (server, base) = Server::start(vec![hang.clone(), hang]).await;
    let store = store(&base, fast_retries().max_retries(1));
    match store.get("k").await {
        Err(Error::Timeout {
            operation, after, ..
        }) => {
            assert_eq!((operation, after), ("get", Duration::from_millis(500)));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn cloudflare_limits_are_refused_before_any_request() {
    let (server, base) = Server::start(vec![]).await;
    let store = store(&base, fast_retries());
    let opts = PutOptions::new;
    assert!(matches!(store.get("").await, Err(Error::EmptyKey)));
    assert!(matches!(
        store.delete("..").await,
        Err(Error::ReservedKey { .. })
    ));
    assert!(matches!(
        store.get(&"k".repeat(513)).await,
        Err(Error::KeyTooLong { max: 512, .. })
    ));
    assert!(matches!(
        store
            .put("k", Bytes::from(vec![0u8; 25 * 1024 * 1024 + 1]), opts())
            .await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(matches!(
        store
            .put("k", "v".into(), opts().metadata(json!("m".repeat(1023))))
            .await,
        Err(Error::MetadataTooLarge { .. })
    ));
    assert!(matches!(
        store
            .put("k", "v".into(), opts().ttl(Duration::from_secs(59)))
            .await,
        Err(Error::TtlTooShort { .. })
    ));
    let now = std::time::SystemTime::now();
    assert!(matches!(
        store
            .put(
                "k",
                "v".into(),
                opts().expire_at(now + Duration::from_secs(30))
            )
            .await,
        Err(Error::ExpirationNotInFuture { .. })
    ));
    assert!(matches!(
        store
            .put(
                "k",
                "v".into(),
                opts().expiry(Some(Expiry::At(from_unix_secs(1 << 31))))
            )
            .await,
        Err(Error::ExpiryTooFar { .. })
    ));
    assert!(matches!(
        store.list(ListOptions::new().limit(1001)).await,
        Err(Error::InvalidListLimit { .. })
    ));
    assert!(matches!(
        store
            .list(ListOptions::new().cursor(Some("made-up".into())))
            .await,
        Err(Error::InvalidCursor { .. })
    ));
    let keys: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    assert!(matches!(
        store.get_many(&keys).await,
        Err(Error::BatchTooLarge { .. })
    ));
    assert!(server.requests().is_empty());
    assert_eq!(store.request_count(), 0);
}

#[test]
fn missing_configuration_is_a_clear_error() {
    let err = CloudflareStore::builder()
        .account_id("a")
        .api_token(TOKEN)
        .build();
    // `builder()` never reads the environment, whatever it holds.
    let err = err.expect_err("no namespace");
    assert_eq!(err.kind(), kvkit_core::ErrorKind::Configuration);
    assert!(err.to_string().contains("namespace_id"), "{err}");
    assert!(
        err.to_string().contains("CLOUDFLARE_KV_NAMESPACE_ID"),
        "{err}"
    );
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn a_malformed_base_url_fails_at_once_without_retrying() {
    let store = store("not a url", fast_retries());
    let err = store.get("k").await.expect_err("no URL");
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.request_count(), 1);
}

#[tokio::test]
async fn refused_bulk_reads_fall_back_to_single_reads() {
    let refused = || {
        Reply::error(
            400,
            10001,
            "At least one of the requested keys corresponds to a non-text value",
        )
    };
    let value = |body: &[u8]| Reply {
        status: 200,
        headers: vec![("expiration", "1900000000".into())],
        body: body.to_vec(),
        hang: false,
        only_for: None,
    };
    let (server, base) = Server::start(vec![
        refused(),
        value(&[0xff]).only_for("/values/bin"),
        Reply::error(404, 10009, "get: 'key not found'").only_for("/values/gone"),
        refused(),
        value(&[0xfe]).only_for("/values/bin"),
        Reply::ok(json!({"m": 1})).only_for("/metadata/bin"),
    ])
    .await;
    let store = store(&base, fast_retries());
    let values = store
        .get_many(&["bin".into(), "gone".into()])
        .await
        .expect("get_many");
    assert_eq!(values, vec![Some(Bytes::from_static(&[0xff])), None]);
    let entry = store
        .get_with_metadata("bin")
        .await
        .expect("get_with_metadata")
        .expect("present");
    assert_eq!(entry.value, Bytes::from_static(&[0xfe]));
    assert_eq!(entry.metadata, Some(json!({"m": 1})));
    assert_eq!(entry.expiration, Some(from_unix_secs(1_900_000_000)));
    let targets: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(targets.len(), 6);
    assert_eq!(targets[0], format!("POST {NS_PATH}/bulk/get"));
    assert_eq!(targets[3], format!("POST {NS_PATH}/bulk/get"));
    let mut singles = targets[4..].to_vec();
    singles.sort();
    assert_eq!(
        singles,
        [
            format!("GET {NS_PATH}/metadata/bin"),
            format!("GET {NS_PATH}/values/bin"),
        ]
    );
}

#[tokio::test]
async fn failed_session_writes_never_show_the_session_id() {
    use kvkit_patterns::{Session, SessionId, SessionManager};
    use kvkit_testsuite::secrets::assert_hides_session_id;

    let session = Session {
        user_id: "u1".into(),
        email: "ada@example.com".into(),
        role: "admin".into(),
        created_at: std::time::UNIX_EPOCH,
    };
    let id = SessionId::generate().expect("id");
    // Nothing listens: reqwest's error would name the URL, and the URL holds the key.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/client/v4", closed.local_addr().expect("addr"));
    drop(closed);
    let sessions = SessionManager::<_, Session>::new(store(&base, fast_retries().max_retries(0)));
    let error = sessions.destroy(id.as_str()).await.expect_err("refused");
    assert_eq!(
        error.kind(),
        kvkit_core::ErrorKind::Unavailable,
        "{error:?}"
    );
    assert_hides_session_id(&error, Some(id.as_str()));
    let error = sessions.create(&session).await.expect_err("refused");
    assert_hides_session_id(&error, None);
    // Cloudflare answers, but refuses the write.
    let (_server, base) = Server::start(vec![
        Reply::raw(503, b"<html>unavailable</html>"),
        Reply::error(403, 10000, "Authentication error"),
    ])
    .await;
    let sessions = SessionManager::<_, Session>::new(store(&base, fast_retries().max_retries(0)));
    for _ in 0..2 {
        let error = sessions.destroy(id.as_str()).await.expect_err("refused");
        assert_hides_session_id(&error, Some(id.as_str()));
    }
}
