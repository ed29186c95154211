//! The main job as users run it: the `kv-demo` binary with its default settings (no `KV_URL`),
//! killed and started again. Sessions and rate-limit counters live in the SQLite store beside
//! the product database, so a restart keeps the user logged in and the client's count.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// A running `kv-demo` process, killed when dropped.
struct Running {
    child: Child,
    base: String,
}

impl Running {
    /// Starts the binary in `dir` (its working directory, where the default files go) and
    /// waits until it answers.
    async fn start(dir: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", kvkit_test_servers::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_kv-demo"))
            .current_dir(dir)
            .env_remove("KV_URL")
            .env_remove("KV_DEMO_DB")
            .env("KV_DEMO_ADDR", &addr)
            .env("KV_DEMO_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the kv-demo binary starts");
        let running = Self {
            child,
            base: format!("http://{addr}"),
        };
        // Poll readiness; the bound is only how long to wait before giving up, not an assertion
        // about speed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(format!("{}/me", running.base)).await.is_ok() {
                return running;
            }
            assert!(Instant::now() < deadline, "kv-demo never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kv-demo-restart-{}-{}",
        std::process::id(),
        kvkit_testsuite::Namespace::new()
            .prefix()
            .trim_end_matches('/')
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn remaining(response: &reqwest::Response) -> (u64, u64) {
    let number = |name: &str| -> u64 {
        response.headers()[name]
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("a number")
    };
    (number("x-ratelimit-remaining"), number("x-ratelimit-reset"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_rate_limits_survive_a_restart_of_the_main_job() {
    let dir = temp_dir();
    let http = reqwest::Client::new();

    let first = Running::start(&dir).await;
    let login = http
        .post(format!("{}/login", first.base))
        .header("content-type", "application/json")
        .body(r#"{"email":"ada@example.com"}"#)
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let before = http
        .get(format!("{}/products/1", first.base))
        .send()
        .await
        .expect("product");
    assert_eq!(before.status(), StatusCode::OK);
    let before = remaining(&before);
    first.kill();

    assert!(
        dir.join("kv-demo.kv.sqlite3").is_file(),
        "the default store is a SQLite file beside the product database"
    );

    let second = Running::start(&dir).await;
    let me = http
        .get(format!("{}/me", second.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::OK, "the session survived");
    let me: serde_json::Value = me.json().await.expect("JSON");
    assert_eq!(me["email"], "ada@example.com");
    let after = http
        .get(format!("{}/products/1", second.base))
        .send()
        .await
        .expect("product");
    let after = remaining(&after);
    // In the same window the count carried on: three requests since, the readiness check (the
    // first request the new process answered), /me and this one. A new minute may have begun
    // in between, and then the window starts afresh.
    if after.1 == before.1 {
        assert_eq!(after.0, before.0 - 3, "the count carried over the restart");
    }
    second.kill();
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}
