//! End-to-end tests: the built `kv` binary against a real Redis (and `memory:` for error paths).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use kvkit_test_servers::{free_port, shared_redis_url};
use kvkit_testsuite::Namespace;
use serde_json::{Value, json};

/// Runs `kv --url URL ARGS...` (no `--url` when `url` is `None`), feeding `stdin`.
fn kv(url: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv"));
    command.env_remove("KV_URL");
    if let Some(url) = url {
        command.args(["--url", url]);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the kv binary");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("writing stdin");
    child.wait_with_output().expect("waiting for kv")
}

/// Runs `kv` and insists that it succeeded; returns its standard output.
fn ok(url: &str, args: &[&str]) -> Vec<u8> {
    let out = kv(Some(url), args, b"");
    assert!(
        out.status.success(),
        "kv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Standard output (or error) as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// The URL of database `db` of the same server as `url`.
fn with_db(url: &str, db: u8) -> String {
    let base = url.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = base.strip_suffix('/').unwrap_or(url);
    format!("{base}/{db}")
}

/// Seconds since the unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A fresh path in the temporary directory.
fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kv-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir.join(format!(
        "{}-{name}",
        Namespace::new().prefix().trim_end_matches('/')
    ))
}

/// The JSON lines of `bytes`, parsed.
fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The shared Redis, or `None` (test skipped) when the user opted out with KV_TEST_SKIP_REDIS=1.
fn redis() -> Option<String> {
    let url = shared_redis_url();
    if url.is_none() {
        eprintln!("skipped: KV_TEST_SKIP_REDIS=1");
    }
    url
}

#[test]
fn a_missing_url_says_how_to_give_one() {
    let out = kv(None, &["get", "k"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--url") && err.contains("KV_URL"), "{err}");
}

#[test]
fn the_url_can_come_from_kv_url() {
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .env("KV_URL", "memory:")
        .args(["get", "k"])
        .output()
        .expect("running kv");
    assert_eq!(
        out.status.code(),
        Some(1),
        "memory: opens, the key is absent"
    );
}

#[test]
fn bad_urls_ttls_and_metadata_are_refused_clearly() {
    let out = kv(Some("ftp://h"), &["get", "k"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no backend for URL scheme"));

    for ttl in ["0", "5x", "1h30m"] {
        let out = kv(Some("memory:"), &["put", "k", "v", "--ttl", ttl], b"");
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}");
        assert!(text(&out.stderr).contains("invalid TTL"), "--ttl {ttl}");
    }
    let out = kv(
        Some("memory:"),
        &["put", "k", "v", "--metadata", "{oops"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--metadata"));

    let out = kv(
        Some("memory:"),
        &["put", "k", "v", "--ttl", "60", "--expire-at", "1"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "--ttl and --expire-at conflict");

    let out = kv(Some("memory:"), &["put", "k", "v", "--expire-at", "1"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("expiration 1970-01-01T00:00:01Z is not far enough in the future"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn passwords_are_never_printed() {
    let url = format!("redis://:hunter2secret@127.0.0.1:{}/0", free_port());
    let out = kv(Some(&url), &["get", "k"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("cannot open redis://:***@127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

#[test]
fn a_missing_key_exits_with_1() {
    for json in [false, true] {
        let args: &[&str] = if json {
            &["get", "absent", "--json"]
        } else {
            &["get", "absent"]
        };
        let out = kv(Some("memory:"), args, b"");
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert!(text(&out.stderr).contains("key \"absent\" not found"));
    }
    let Some(url) = redis() else { return };
    let out = kv(Some(&url), &["get", &Namespace::new().key("absent")], b"");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn put_get_list_and_delete_with_ttl_metadata_and_json() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let (a, b, c) = (ns.key("a"), ns.key("b"), ns.key("c"));

    ok(
        &url,
        &[
            "put",
            &a,
            "hello",
            "--ttl",
            "5m",
            "--metadata",
            r#"{"by":"ops","n":1}"#,
        ],
    );
    assert_eq!(ok(&url, &["get", &a]), b"hello");
    let entry = &json_lines(&ok(&url, &["get", &a, "--json"]))[0];
    assert_eq!(entry["key"], a.as_str());
    assert_eq!(entry["value"], "hello");
    assert_eq!(entry["metadata"], json!({"by": "ops", "n": 1}));
    assert!(entry.get("base64").is_none());
    let expiration = entry["expiration"].as_u64().expect("an expiration");
    assert!((now_secs() + 295..=now_secs() + 301).contains(&expiration));

    // A value from standard input, bytes as-is (not UTF-8, so base64 in JSON).
    let bytes = [0xff, 0x00, b'\n', 0xfe];
    let out = kv(Some(&url), &["put", &b], &bytes);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ok(&url, &["get", &b]), bytes);
    let entry = &json_lines(&ok(&url, &["get", &b, "--json"]))[0];
    assert_eq!(entry["value"], "/wAK/g==");
    assert_eq!(entry["base64"], true);
    assert_eq!(entry["metadata"], Value::Null);
    assert_eq!(entry["expiration"], Value::Null);

    let at = now_secs() + 3600;
    ok(&url, &["put", &c, "", "--expire-at", &at.to_string()]);
    assert_eq!(ok(&url, &["get", &c]), b"");

    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    assert_eq!(names, format!("{a}\n{b}\n{c}\n"));
    let first = text(&ok(
        &url,
        &["list", "--prefix", ns.prefix(), "--limit", "2"],
    ));
    assert_eq!(first, format!("{a}\n{b}\n"));
    let listed = json_lines(&ok(&url, &["list", "--prefix", ns.prefix(), "--json"]));
    assert_eq!(
        listed,
        [
            json!({"name": a, "expiration": expiration, "metadata": {"by": "ops", "n": 1}}),
            json!({"name": b, "expiration": null, "metadata": null}),
            json!({"name": c, "expiration": at, "metadata": null}),
        ]
    );

    ok(&url, &["delete", &a, &b, &ns.key("never-written")]);
    assert_eq!(kv(Some(&url), &["get", &a], b"").status.code(), Some(1));
    assert_eq!(kv(Some(&url), &["get", &b], b"").status.code(), Some(1));
    assert_eq!(
        text(&ok(&url, &["list", "--prefix", ns.prefix()])),
        format!("{c}\n")
    );
}

#[test]
fn list_follows_cursors_past_one_page() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let lines: String = (0..1205)
        .map(|i| {
            format!(
                "{}\n",
                json!({"key": ns.key(&format!("{i:04}")), "value": "x"})
            )
        })
        .collect();
    let file = temp_file("many.jsonl");
    std::fs::write(&file, lines).expect("writing the import file");
    ok(
        &url,
        &[
            "import",
            file.to_str().expect("UTF-8 path"),
            "--batch-size",
            "1000",
        ],
    );
    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    assert_eq!(names.lines().count(), 1205);
    assert_eq!(names.lines().last(), Some(ns.key("1204").as_str()));
    let some = text(&ok(
        &url,
        &["list", "--prefix", ns.prefix(), "--limit", "1001"],
    ));
    assert_eq!(some.lines().count(), 1001);
}

#[test]
fn a_sqlite_file_keeps_keys_between_runs_and_imports_an_export() {
    let file = temp_file("kv.db");
    let url = format!("sqlite:{}", file.display());
    ok(
        &url,
        &["put", "user:1", "ada", "--metadata", r#"{"role":"admin"}"#],
    );
    ok(&url, &["put", "user:2", "grace", "--ttl", "1h"]);
    // Each command is its own process: the second one reads what the first one wrote.
    assert_eq!(text(&ok(&url, &["get", "user:1"])), "ada");
    assert_eq!(
        text(&ok(&url, &["list", "--prefix", "user:"])),
        "user:1\nuser:2\n"
    );

    let export = ok(&url, &["export", "--prefix", "user:"]);
    let copy = temp_file("copy.db");
    let copy_url = format!("sqlite:{}", copy.display());
    let out = kv(Some(&copy_url), &["import", "-"], &export);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = json_lines(&ok(&copy_url, &["export"]));
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["metadata"], json!({"role": "admin"}));
    assert!(
        records[1]["expiration"]
            .as_u64()
            .is_some_and(|at| at > now_secs())
    );
}

#[test]
fn export_then_import_into_another_database_copies_everything() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let at = now_secs() + 7200;
    for i in 0..250 {
        let key = ns.key(&format!("k{i:03}"));
        let value = format!("value {i}");
        match i % 3 {
            0 => ok(&url, &["put", &key, &value]),
            1 => ok(
                &url,
                &[
                    "put",
                    &key,
                    &value,
                    "--metadata",
                    &json!({"i": i}).to_string(),
                    "--ttl",
                    "1h",
                ],
            ),
            _ => ok(&url, &["put", &key, &value, "--expire-at", &at.to_string()]),
        };
    }
    let binary = ns.key("binary");
    let out = kv(Some(&url), &["put", &binary], &[0, 159, 146, 150]);
    assert!(out.status.success());
    ok(&url, &["put", "kv-cli-outside-the-prefix", "x"]);

    let exported = ok(&url, &["export", "--prefix", ns.prefix()]);
    let records = json_lines(&exported);
    assert_eq!(
        records.len(),
        251,
        "every key under the prefix, nothing else"
    );
    let blob = records
        .iter()
        .find(|r| r["key"] == binary.as_str())
        .expect("exported");
    assert_eq!(blob["value"], "AJ+Slg==");
    assert_eq!(blob["base64"], true);
    let with_meta = records
        .iter()
        .find(|r| r["key"] == ns.key("k001").as_str())
        .expect("k001");
    assert_eq!(with_meta["metadata"], json!({"i": 1}));
    assert!(with_meta["expiration"].as_u64().expect("ttl kept") > now_secs() + 3500);

    let file = temp_file("export.jsonl");
    std::fs::write(&file, &exported).expect("writing the export");
    let other = with_db(&url, 3);
    let out = kv(
        Some(&other),
        &[
            "import",
            file.to_str().expect("UTF-8 path"),
            "--batch-size",
            "64",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "no progress output off a terminal");
    assert!(!PathBuf::from(format!("{}.progress", file.display())).exists());

    let copied = ok(&other, &["export", "--prefix", ns.prefix()]);
    assert_eq!(
        text(&copied),
        text(&exported),
        "same keys, values, metadata, expirations"
    );
    assert_eq!(ok(&other, &["get", &binary]), [0, 159, 146, 150]);
    let untouched = kv(Some(&url), &["get", &ns.key("k000")], b"");
    assert_eq!(untouched.stdout, b"value 0", "the source keeps its keys");
}

#[test]
fn import_resumes_after_the_checkpoint() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let lines: String = (1..=10)
        .map(|i| {
            format!(
                "{}\n",
                json!({"key": ns.key(&format!("k{i:02}")), "value": format!("v{i}")})
            )
        })
        .collect();
    let file = temp_file("resume.jsonl");
    std::fs::write(&file, lines).expect("writing the import file");
    let path = file.to_str().expect("UTF-8 path");
    let checkpoint = format!("{path}.progress");

    // A crashed run committed 6 lines: resuming writes only lines 7 to 10.
    std::fs::write(&checkpoint, "6\n").expect("writing the checkpoint");
    ok(&url, &["import", path, "--resume", "--batch-size", "3"]);
    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    let expected: String = (7..=10)
        .map(|i| format!("{}\n", ns.key(&format!("k{i:02}"))))
        .collect();
    assert_eq!(names, expected);
    assert!(!PathBuf::from(&checkpoint).exists(), "removed when done");

    // A checkpoint elsewhere, and one past the end of the file.
    let custom = temp_file("custom.progress");
    std::fs::write(&custom, "9").expect("writing the checkpoint");
    let custom = custom.to_str().expect("UTF-8 path");
    ok(&url, &["import", path, "--resume", "--checkpoint", custom]);
    assert!(!PathBuf::from(custom).exists());
    let k01 = kv(Some(&url), &["get", &ns.key("k01")], b"");
    assert_eq!(k01.status.code(), Some(1), "lines 1 to 9 skipped again");
    std::fs::write(&checkpoint, "11").expect("writing the checkpoint");
    let out = kv(Some(&url), &["import", path, "--resume"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the file has only 10"));

    // Without --resume, the checkpoint is ignored (with a note) and every line is written.
    let out = kv(Some(&url), &["import", path], b"");
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("pass --resume"));
    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    assert_eq!(names.lines().count(), 10);
    assert!(!PathBuf::from(&checkpoint).exists());
}

#[test]
fn import_reports_bad_lines_and_keys_and_writes_the_rest() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let past = now_secs() - 10;
    let lines = [
        json!({"key": ns.key("good1"), "value": "1", "metadata": {"m": true}}).to_string(),
        "{not json".to_owned(),
        json!({"key": ns.key("expired"), "value": "x", "expiration": past}).to_string(),
        String::new(),
        json!({"key": ns.key("bad64"), "value": "!!", "base64": true}).to_string(),
        json!({"key": ns.key("typo"), "value": "x", "expiry": 5}).to_string(),
        json!({"key": "", "value": "x"}).to_string(),
        json!({"key": ns.key("good2"), "value": "2"}).to_string(),
    ];
    let mut input = lines.join("\n").into_bytes();
    input.extend_from_slice(b"\n\xff\xfe\n");
    let out = kv(Some(&url), &["import", "-"], &input);
    assert_eq!(out.status.code(), Some(3), "finished, with failures");
    let err = text(&out.stderr);
    assert!(
        err.contains("line 2: malformed record (column 2): key must be a string"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "line 3: key {:?}: expiration {} is not far enough in the future",
            ns.key("expired"),
            kvkit::backend::rfc3339(kvkit::backend::from_unix_secs(past))
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("line 5: key {:?}", ns.key("bad64"))),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("line 6: malformed record (column ")
                && l.contains("unknown field `expiry`")),
        "{err}"
    );
    assert!(
        err.contains("line 7: key \"\": key must not be empty"),
        "{err}"
    );
    assert!(err.contains("line 9: malformed record: not UTF-8"), "{err}");
    assert!(err.contains("6 of 8 records failed"), "{err}");
    assert!(!err.contains("line 4"), "blank lines are not records");

    let names = text(&ok(&url, &["list", "--prefix", ns.prefix(), "--json"]));
    let listed: Vec<Value> = names
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            json!({"name": ns.key("good1"), "expiration": null, "metadata": {"m": true}}),
            json!({"name": ns.key("good2"), "expiration": null, "metadata": null}),
        ]
    );
}

#[test]
fn import_errors_name_the_file() {
    let out = kv(
        Some("memory:"),
        &["import", "/nonexistent/kv-cli.jsonl"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("reading /nonexistent/kv-cli.jsonl"));
    let out = kv(Some("memory:"), &["import", "-", "--resume"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("standard input cannot be resumed"));
}

/// A child process that is killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already reaped when the test got that far; a failure to kill then is expected.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_import_resumes_where_its_checkpoint_says() {
    let Some(url) = redis() else { return };
    let ns = Namespace::new();
    let lines: Vec<String> = (1..=10)
        .map(|i| json!({"key": ns.key(&format!("k{i:02}")), "value": format!("v{i}")}).to_string())
        .collect();
    let fifo = temp_file("interrupted.fifo");
    let checkpoint = temp_file("interrupted.progress");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());

    // The first import reads from a pipe that delivers four lines, then stalls; it commits the
    // first batch of three and is killed while line 4 waits for a full batch.
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(["--url", &url, "import", "--batch-size", "3", "--checkpoint"])
            .arg(&checkpoint)
            .arg(&fifo)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running kv import"),
    );
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("opening the pipe");
    writeln!(pipe, "{}", lines[..4].join("\n")).expect("writing four lines");
    pipe.flush().expect("flushing the pipe");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&checkpoint).ok().as_deref() != Some("3\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after the first batch"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.0.kill().expect("killing the import");
    child.0.wait().expect("reaping the import");
    drop(pipe);
    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    assert_eq!(
        names.lines().count(),
        3,
        "only the committed batch: {names}"
    );

    // Mark a committed key, then resume from the whole file: lines 1 to 3 are not written again.
    ok(&url, &["put", &ns.key("k01"), "changed since"]);
    let file = temp_file("interrupted.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("writing the import file");
    let out = kv(
        Some(&url),
        &[
            "import",
            file.to_str().expect("UTF-8 path"),
            "--resume",
            "--checkpoint",
            checkpoint.to_str().expect("UTF-8 path"),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names = text(&ok(&url, &["list", "--prefix", ns.prefix()]));
    assert_eq!(names.lines().count(), 10);
    assert_eq!(ok(&url, &["get", &ns.key("k01")]), b"changed since");
    assert_eq!(ok(&url, &["get", &ns.key("k04")]), b"v4");
    assert!(!checkpoint.exists());
    std::fs::remove_file(&fifo).expect("removing the pipe");
}

/// A Cloudflare namespace by URL (here the REST emulator on workerd), with the token from the
/// environment as the CLI documents.
#[test]
fn cloudflare_by_url() {
    let Some(api) = kvkit_test_servers::shared_cf_url() else {
        kvkit_testsuite::skip("cloudflare_by_url", "KV_TEST_SKIP_CF=1");
        return;
    };
    let url = format!(
        "cloudflare://{}/{}?base_url={api}",
        kvkit_test_servers::CF_EMULATOR_ACCOUNT_ID,
        kvkit_test_servers::CF_EMULATOR_NAMESPACE_ID
    );
    let key = Namespace::new().key("cf");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kv"))
            .env_remove("KV_URL")
            .env(
                "CLOUDFLARE_API_TOKEN",
                kvkit_test_servers::CF_EMULATOR_TOKEN,
            )
            .args(["--url", &url])
            .args(args)
            .output()
            .expect("running the kv binary")
    };
    let put = run(&[
        "put",
        &key,
        "from the cli",
        "--metadata",
        r#"{"via":"cli"}"#,
    ]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = run(&["get", &key, "--json"]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(
        (&got["value"], &got["metadata"]),
        (&json!("from the cli"), &json!({"via": "cli"}))
    );
    assert!(run(&["delete", &key]).status.success());
    let missing = run(&["get", &key]);
    assert_eq!(missing.status.code(), Some(1));

    let without_token = Command::new(env!("CARGO_BIN_EXE_kv"))
        .env_remove("KV_URL")
        .env_remove("CLOUDFLARE_API_TOKEN")
        .args(["--url", &url, "get", &key])
        .output()
        .expect("running the kv binary");
    assert_eq!(without_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without_token.stderr).contains("CLOUDFLARE_API_TOKEN"));
}
