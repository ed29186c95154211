//! Real servers for tests and benchmarks: Debian's `redis-server`, started on free loopback ports
//! (alone, or as a 3-master cluster), and stopped when the process that started them exits.
//!
//! Rules every test follows:
//! - `KV_TEST_REDIS_URL` (and `KV_TEST_REDIS_CLUSTER_URLS`, comma-separated) point at servers
//!   that are already running; nothing is started then.
//! - Otherwise a missing `redis-server` binary fails the test with a message saying how to
//!   install it, unless `KV_TEST_SKIP_REDIS=1` opts out (CI never does).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why no server is available.
const INSTALL_HINT: &str = "redis-server was not found on PATH. Install it with \
`apt-get install redis-server` (or run `cargo xtask test`, which installs it), point \
KV_TEST_REDIS_URL at a running server, or set KV_TEST_SKIP_REDIS=1 to skip the Redis tests";

/// Whether the user opted out of tests that need Redis.
///
/// ```
/// // Unset in a normal run.
/// let _ = kv_testsuite::servers::skip_redis();
/// ```
pub fn skip_redis() -> bool {
    std::env::var("KV_TEST_SKIP_REDIS").is_ok_and(|v| v == "1" || v == "true")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A free TCP port on 127.0.0.1.
///
/// ```
/// assert!(kv_testsuite::servers::free_port() > 0);
/// ```
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Sends one inline command and returns the first line of the reply.
fn command(port: u16, cmd: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `redis-server` process on 127.0.0.1, killed when this value is dropped or the test
/// process exits (it runs under a tiny shell that kills it when our end of its stdin closes).
///
/// ```no_run
/// let server = kv_testsuite::servers::RedisServer::start(&[]).expect("redis-server on PATH");
/// println!("{}", server.url());
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    tls: bool,
    guard: Option<Child>,
}

impl RedisServer {
    /// Starts a server with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`) on a
    /// free port and a fresh data directory. `None` when the user opted out with
    /// `KV_TEST_SKIP_REDIS=1`; panics with install instructions when the binary is missing.
    pub fn start(args: &[&str]) -> Option<Self> {
        let mut server = Self::prepare(args)?;
        server.spawn();
        Some(server)
    }

    /// Checks for the binary and picks a port and a data directory, without starting.
    fn prepare(args: &[&str]) -> Option<Self> {
        if !on_path("redis-server") {
            if skip_redis() {
                return None;
            }
            panic!("{INSTALL_HINT}");
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kv-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a data directory");
        Some(Self {
            port,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls: false,
            guard: None,
        })
    }

    /// Starts a server that only speaks TLS, with a certificate for `127.0.0.1` signed by a
    /// throwaway CA (made with the `openssl` command); [`RedisServer::tls_ca_pem`] returns the CA
    /// to trust and [`RedisServer::url`] a `rediss://` URL.
    pub fn start_tls() -> Option<Self> {
        let mut server = Self::prepare(&[])?;
        let dir = server.dir.clone();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running openssl (Debian package openssl)");
            assert!(status.success(), "openssl {args:?} failed");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=kv-test-ca",
            "-days",
            "2",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        let extensions = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                          keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
        std::fs::write(dir.join("ext.cnf"), extensions).expect("writing certificate extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        server.tls = true;
        server.spawn();
        Some(server)
    }

    /// The PEM of the CA that signed a [`RedisServer::start_tls`] server's certificate.
    pub fn tls_ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.crt")).expect("reading the test CA")
    }

    fn spawn(&mut self) {
        // The shell starts redis-server, then blocks reading stdin; when the pipe closes (we
        // drop it, or this process dies) it kills the server.
        let script = r#"redis-server "$@" & pid=$!; read _; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null"#;
        let port = self.port.to_string();
        let listen: Vec<&str> = if self.tls {
            vec![
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.crt",
                "--tls-auth-clients",
                "no",
            ]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(&listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--dir"])
            .arg(&self.dir)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.guard = Some(child);
        let dir = self.dir.clone();
        let (port, tls) = (self.port, self.tls);
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(20),
            || {
                if tls {
                    Command::new("redis-cli")
                        .args([
                            "--tls",
                            "--cacert",
                            "ca.crt",
                            "-p",
                            &port.to_string(),
                            "PING",
                        ])
                        .current_dir(&dir)
                        .output()
                        .is_ok_and(|out| out.stdout.starts_with(b"PONG"))
                } else {
                    command(port, "PING").is_some_and(|reply| reply.starts_with("+PONG"))
                }
            },
        );
    }

    /// Kills the server at once (`kill -9`), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.guard.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data directory and arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL of a Redis server shared by every test of this process: `KV_TEST_REDIS_URL` when set,
/// otherwise one server started on first use. `None` when opted out.
///
/// ```no_run
/// if let Some(url) = kv_testsuite::servers::shared_redis_url() {
///     println!("testing against {url}");
/// }
/// ```
pub fn shared_redis_url() -> Option<String> {
    if let Ok(url) = std::env::var("KV_TEST_REDIS_URL") {
        return Some(url);
    }
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| RedisServer::start(&[]))
        .as_ref()
        .map(RedisServer::url)
}

/// A Redis Cluster of masters without replicas, each a [`RedisServer`] on its own port.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers and joins them with `redis-cli --cluster create`.
    /// `None` when opted out; panics with install instructions when the binaries are missing.
    pub fn start(masters: usize) -> Option<Self> {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "no",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running redis-cli --cluster create (package redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            let port = node.port();
            wait_until("the cluster to be ready", Duration::from_secs(30), || {
                command(port, "CLUSTER INFO").is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
        Some(Self { nodes })
    }

    /// The URLs of its nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// The node URLs of a cluster shared by every test of this process:
/// `KV_TEST_REDIS_CLUSTER_URLS` (comma-separated) when set, otherwise a 3-master cluster started
/// on first use. `None` when opted out.
///
/// ```no_run
/// if let Some(urls) = kv_testsuite::servers::shared_redis_cluster_urls() {
///     assert!(!urls.is_empty());
/// }
/// ```
pub fn shared_redis_cluster_urls() -> Option<Vec<String>> {
    if let Ok(urls) = std::env::var("KV_TEST_REDIS_CLUSTER_URLS") {
        return Some(urls.split(',').map(str::to_owned).collect());
    }
    static CLUSTER: OnceLock<Option<RedisCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| RedisCluster::start(3))
        .as_ref()
        .map(RedisCluster::urls)
}
