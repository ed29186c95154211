//! Real servers for tests and benchmarks: Debian's `redis-server`, started on free loopback ports
//! (alone, as a cluster with or without replicas, or as a Sentinel-managed primary with replicas
//! and three sentinels), and the Cloudflare KV REST emulator (a Worker on workerd,
//! through Miniflare, from `kv-cloudflare/emulator`), all stopped when the process that started
//! them exits.
//!
//! Rules every test follows:
//! - `KV_TEST_REDIS_URL` (and `KV_TEST_REDIS_CLUSTER_URLS`, comma-separated) point at servers
//!   that are already running; nothing is started then. `KV_TEST_CF_URL` does the same for the
//!   Cloudflare emulator (its API base URL, `http://127.0.0.1:PORT/client/v4`, started with the
//!   default ids and token).
//! - Otherwise a missing `redis-server` binary (or `node`, or the emulator's `node_modules`)
//!   fails the test with a message saying how to install it, unless `KV_TEST_SKIP_REDIS=1` (or
//!   `KV_TEST_SKIP_CF=1`) opts out (CI never does).
//!
//! It also drives Rust Workers in those emulators over HTTP: [`worker_client`],
//! [`assert_worker_cases_pass`] (every case of `kvkit-testsuite` inside a Worker) and
//! [`burst_within_one_minute`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod sentinel;
mod workers;

pub use sentinel::{RedisSentinels, SENTINEL_SERVICE};
pub use workers::{assert_worker_cases_pass, burst_within_one_minute, worker_client};

/// Why no server is available.
const INSTALL_HINT: &str = "redis-server was not found on PATH. Install it with \
`apt-get install redis-server` (or run `cargo xtask test`, which installs it), point \
KV_TEST_REDIS_URL at a running server, or set KV_TEST_SKIP_REDIS=1 to skip the Redis tests";

/// Whether the user opted out of tests that need Redis.
///
/// ```
/// // True only when KV_TEST_SKIP_REDIS is `1` or `true`.
/// let opted_out = matches!(std::env::var("KV_TEST_SKIP_REDIS").as_deref(), Ok("1" | "true"));
/// assert_eq!(kvkit_test_servers::skip_redis(), opted_out);
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
/// assert!(kvkit_test_servers::free_port() > 0);
/// ```
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Sends one inline command and returns the first line of the reply.
fn command(port: u16, cmd: &str) -> Option<String> {
    command_as(port, None, cmd)
}

/// Sends one inline command, after `AUTH password` if given, and returns what one read of the
/// reply gets (enough for the short replies these helpers read).
fn command_as(port: u16, password: Option<&str>, cmd: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = vec![0u8; 16384];
    if let Some(password) = password {
        stream
            .write_all(format!("AUTH {password}\r\n").as_bytes())
            .ok()?;
        let n = stream.read(&mut buf).ok()?;
        if !buf[..n].starts_with(b"+OK") {
            return None;
        }
    }
    stream.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The value after `field` in a reply listing fields and values (`INFO`'s `field:value` lines,
/// or a RESP array of field and value bulk strings, as `SENTINEL MASTER` answers).
fn field<'a>(reply: &'a str, field: &str) -> Option<&'a str> {
    let lines: Vec<&str> = reply.lines().collect();
    lines.iter().enumerate().find_map(|(i, line)| {
        if let Some(value) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
            return Some(value);
        }
        // In RESP, the value's `$len` line follows the field's line.
        (*line == field)
            .then(|| lines.get(i + 2).copied())
            .flatten()
    })
}

/// Runs one command with `redis-cli` (arguments passed as they are, without a shell) and
/// returns its output: replies one per line, as `redis-cli` prints them when not on a terminal.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("running redis-cli (package redis-tools)");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes a throwaway CA (`ca.crt`) and a certificate for `127.0.0.1` it signed (`server.crt`,
/// `server.key`) in `dir`, with the `openssl` command.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
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
}

/// Whether the master on `port` serves `slot`, by its own `CLUSTER NODES` line.
fn serves(port: u16, slot: u16) -> bool {
    let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
    let mine = nodes
        .lines()
        .find(|line| line.contains("myself"))
        .expect("the node's own line");
    // id, address, flags, master, ping, pong, epoch, link state, then slots and ranges.
    mine.split(' ').skip(8).any(|range| {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
    })
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
/// let server = kvkit_test_servers::RedisServer::start(&[]).expect("redis-server on PATH");
/// println!("{}", server.url());
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// Arguments before the listening options: a configuration file, and `--sentinel`.
    leading: Vec<String>,
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
            leading: Vec::new(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls: false,
            guard: None,
        })
    }

    /// Starts a server that only speaks TLS, with a certificate for `127.0.0.1` signed by a
    /// throwaway CA (made with the `openssl` command); [`RedisServer::tls_ca_pem`] returns the CA
    /// to trust and [`RedisServer::url`] a `rediss://` URL.
    pub fn start_tls() -> Option<Self> {
        let mut server = Self::prepare_tls(&[], None)?;
        server.spawn();
        Some(server)
    }

    /// Like [`RedisServer::prepare`], for a TLS-only server: with the CA and certificate in
    /// `certificates` (another TLS server's directory) copied in, or new ones.
    fn prepare_tls(args: &[&str], certificates: Option<&Path>) -> Option<Self> {
        let mut server = Self::prepare(args)?;
        match certificates {
            Some(from) => {
                for file in ["ca.crt", "server.crt", "server.key"] {
                    std::fs::copy(from.join(file), server.dir.join(file))
                        .expect("copying the test certificates");
                }
            }
            None => make_certificates(&server.dir),
        }
        server.tls = true;
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
            .args(&self.leading)
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
                        // A server with a password answers NOAUTH: it is up.
                        .is_ok_and(|out| {
                            out.stdout.starts_with(b"PONG") || out.stdout.starts_with(b"NOAUTH")
                        })
                } else {
                    // A server with a password answers NOAUTH: it is up.
                    command(port, "PING").is_some_and(|reply| {
                        reply.starts_with("+PONG") || reply.starts_with("-NOAUTH")
                    })
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
/// if let Some(url) = kvkit_test_servers::shared_redis_url() {
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

/// A Redis Cluster of masters, with or without replicas, each node a [`RedisServer`] on its own
/// port (`cluster-node-timeout` 2 s, so a replica takes over a dead master within a few seconds).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers and joins them with `redis-cli --cluster create`.
    /// `None` when opted out; panics with install instructions when the binaries are missing.
    pub fn start(masters: usize) -> Option<Self> {
        Self::start_with_replicas(masters, 0)
    }

    /// Starts `masters` masters with `replicas` replicas each, joined with `redis-cli --cluster
    /// create --cluster-replicas`, and waits until every replica is in sync. `None` when opted
    /// out; panics with install instructions when the binaries are missing.
    ///
    /// ```no_run
    /// let cluster = kvkit_test_servers::RedisCluster::start_with_replicas(3, 1).expect("not opted out");
    /// assert_eq!(cluster.urls().len(), 6);
    /// assert_eq!(cluster.master_ports().len(), 3);
    /// ```
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Option<Self> {
        let count = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(RedisServer::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "no",
                // A replica syncs at once, not after the default 5 s wait for others to join it.
                "--repl-diskless-sync-delay",
                "0",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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
        let cluster = Self { nodes };
        cluster.wait_for_replicas(replicas);
        Some(cluster)
    }

    /// Waits until every master has `replicas` replicas connected and every replica's link to
    /// its master is up.
    fn wait_for_replicas(&self, replicas: usize) {
        for node in &self.nodes {
            let port = node.port();
            wait_until("the replicas to sync", Duration::from_secs(30), || {
                command(port, "INFO replication").is_some_and(|info| match field(&info, "role") {
                    Some("master") => info.matches("state=online").count() == replicas,
                    Some("slave") => field(&info, "master_link_status") == Some("up"),
                    _ => false,
                })
            });
        }
    }

    /// The ports of the nodes that are up and masters now.
    pub fn master_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .filter(|&port| {
                command(port, "INFO replication")
                    .is_some_and(|info| field(&info, "role") == Some("master"))
            })
            .collect()
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
    }

    /// Kills the node on `port` (`kill -9`), as a crash would.
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Starts the node on `port` again, with its data directory and cluster configuration: a
    /// master that lost its slots comes back as a replica of the one that took over.
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
    }

    /// Waits until the cluster serves every slot again without the node on `port` (killed): a
    /// replica took over its slots. Panics after `timeout`.
    pub fn wait_for_failover(&self, port: u16, timeout: Duration) {
        let live: Vec<u16> = self
            .nodes
            .iter()
            .map(RedisServer::port)
            .filter(|&p| p != port)
            .collect();
        wait_until("a replica to take over", timeout, || {
            live.iter().all(|&p| {
                command(p, "CLUSTER INFO").is_some_and(|info| {
                    field(&info, "cluster_state") == Some("ok")
                        && field(&info, "cluster_slots_ok") == Some("16384")
                })
            }) && command(live[0], "CLUSTER NODES").is_some_and(|nodes| {
                nodes.lines().any(|line| {
                    let fields: Vec<&str> = line.split(' ').collect();
                    // id, address, flags, master, ping, pong, epoch, link state, then slots.
                    fields
                        .get(1)
                        .is_some_and(|a| a.starts_with(&format!("127.0.0.1:{port}@")))
                        && fields.len() <= 8
                })
            })
        });
    }

    /// Waits until the node on `port` (restarted) is a replica in sync with its master.
    pub fn wait_for_replica(&self, port: u16, timeout: Duration) {
        wait_until("the node to sync as a replica", timeout, || {
            command(port, "INFO replication").is_some_and(|info| {
                field(&info, "role") == Some("slave")
                    && field(&info, "master_link_status") == Some("up")
            })
        });
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        let port = self.master_ports()[0];
        let reply = redis_cli(port, &["CLUSTER", "KEYSLOT", key]);
        reply.trim().parse().expect("a slot number")
    }

    /// The port of the master serving `slot`.
    pub fn slot_owner(&self, slot: u16) -> u16 {
        self.master_ports()
            .into_iter()
            .find(|&port| serves(port, slot))
            .expect("a master serving the slot")
    }

    /// Moves `slot` from the master serving it to the master on `to`, step by step as Redis
    /// documents it: `CLUSTER SETSLOT … IMPORTING` on the target, `… MIGRATING` on the source,
    /// `MIGRATE` of its keys in batches until none is left, then `CLUSTER SETSLOT … NODE` on
    /// every master. Clients meanwhile get `ASK` and `TRYAGAIN` answers for the slot.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.slot_owner(slot);
        let id = |port: u16| redis_cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
        let set_slot = |port: u16, args: &[&str]| {
            let reply = redis_cli(port, &[&["CLUSTER", "SETSLOT", &slot], args].concat());
            assert_eq!(reply.trim(), "OK", "CLUSTER SETSLOT {slot} {args:?}");
        };
        set_slot(to, &["IMPORTING", &from_id]);
        set_slot(from, &["MIGRATING", &to_id]);
        loop {
            let keys = redis_cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            // NOKEY: the keys were deleted meanwhile.
            let reply = redis_cli(from, &migrate);
            assert!(matches!(reply.trim(), "OK" | "NOKEY"), "MIGRATE: {reply}");
        }
        let others = self.master_ports().into_iter().filter(|&port| port != to);
        for port in std::iter::once(to).chain(others) {
            set_slot(port, &["NODE", &to_id]);
        }
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
/// if let Some(urls) = kvkit_test_servers::shared_redis_cluster_urls() {
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

/// Why the Cloudflare emulator cannot start.
const CF_INSTALL_HINT: &str = "Install Node.js 18 or later with npm (`apt-get install nodejs npm`), \
then run `npm ci` in kv-cloudflare/emulator (`cargo xtask test` does both), point KV_TEST_CF_URL at \
a running emulator, or set KV_TEST_SKIP_CF=1 to skip the Cloudflare tests";

/// The account id the emulator serves unless told otherwise.
pub const CF_EMULATOR_ACCOUNT_ID: &str = "emulator-account";
/// The namespace id the emulator serves unless told otherwise.
pub const CF_EMULATOR_NAMESPACE_ID: &str = "emulator-namespace";
/// The API token the emulator accepts unless told otherwise.
pub const CF_EMULATOR_TOKEN: &str = "test-token";

/// Whether the user opted out of tests that need the Cloudflare emulator.
///
/// ```
/// // True only when KV_TEST_SKIP_CF is `1` or `true`.
/// let opted_out = matches!(std::env::var("KV_TEST_SKIP_CF").as_deref(), Ok("1" | "true"));
/// assert_eq!(kvkit_test_servers::skip_cf(), opted_out);
/// ```
pub fn skip_cf() -> bool {
    std::env::var("KV_TEST_SKIP_CF").is_ok_and(|v| v == "1" || v == "true")
}

/// The emulator's directory: `kv-cloudflare/emulator` in this workspace.
///
/// ```
/// assert!(kvkit_test_servers::cf_emulator_dir().ends_with("emulator"));
/// ```
pub fn cf_emulator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("kv-cloudflare")
        .join("emulator")
}

/// Whether an emulator can start: `true` when `node` and the emulator's packages (in `dir`) are
/// installed, `false` when they are not and the user opted out with `KV_TEST_SKIP_CF=1`;
/// otherwise their absence panics, saying which is missing and how to install it.
fn can_start_node(dir: &Path) -> bool {
    if !on_path("node") || !dir.join("node_modules").join("miniflare").is_dir() {
        if skip_cf() {
            return false;
        }
        if on_path("node") {
            panic!("the Cloudflare emulator's packages are not installed. {CF_INSTALL_HINT}");
        }
        panic!("node was not found on PATH. {CF_INSTALL_HINT}");
    }
    true
}

/// Spawns `command`, a Node.js server (the KV emulator or the workerd one) that prints a JSON
/// line with its `url` once it listens, and returns that URL and the process. It stops when its
/// standard input closes ([`stop_node`]): when the value holding it is dropped, or this process
/// exits, however it exits. Panics, naming `what`, when no such line comes within a minute.
fn start_node(command: &mut Command, what: &str) -> (String, Child) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting node");
    let stdout = child.stdout.take().expect("the emulator's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let _ = tx.send((read.map(|_| line), reader));
    });
    let (line, mut stdout) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((Ok(line), stdout)) if !line.trim().is_empty() => (line, stdout),
        _ => {
            let _ = child.kill();
            panic!("{what} did not start (its errors are above)");
        }
    };
    let ready: serde_json::Value =
        serde_json::from_str(&line).expect("the emulator's ready line is JSON");
    let url = ready["url"]
        .as_str()
        .expect("url in the ready line")
        .to_owned();
    // What the Workers print after that (a Rust Worker's panic message, say) goes to the
    // test's standard error, and never fills the pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::stderr()));
    (url, child)
}

/// Stops a server [`start_node`] started, by closing its standard input, and waits for it to
/// exit (having written everything it keeps). Stopping it again does nothing more.
fn stop_node(child: &mut Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Options of a [`CfEmulator`]: the token it accepts, a read-only token, and extra Workers that
/// share its KV namespace.
///
/// ```no_run
/// let emulator = kvkit_test_servers::CfEmulator::builder()
///     .read_only_token("reader")
///     .worker("seed", "/path/to/seed.js")
///     .start()
///     .expect("node on PATH");
/// println!("{}", emulator.worker_url("seed"));
/// ```
#[derive(Debug, Clone)]
pub struct CfEmulatorBuilder {
    token: String,
    read_only_token: Option<String>,
    workers: Vec<(String, PathBuf)>,
    binding: String,
}

impl CfEmulatorBuilder {
    /// The token with read and write access (default [`CF_EMULATOR_TOKEN`]).
    ///
    /// ```
    /// let builder = kvkit_test_servers::CfEmulator::builder().token("my-token");
    /// assert!(format!("{builder:?}").contains(r#"token: "my-token""#));
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// A second token that may only read: writes with it get HTTP 403, as a Cloudflare token
    /// without the "Workers KV Storage Write" permission.
    ///
    /// ```
    /// let builder = kvkit_test_servers::CfEmulator::builder().read_only_token("reader");
    /// assert!(format!("{builder:?}").contains(r#"read_only_token: Some("reader")"#));
    /// ```
    pub fn read_only_token(mut self, token: impl Into<String>) -> Self {
        self.read_only_token = Some(token.into());
        self
    }

    /// Runs the Worker in `script` (an ES module) beside the API, with the same KV namespace
    /// bound as [`CfEmulatorBuilder::binding`]; requests to `/workers/{name}/…` go to it (the path
    /// it sees keeps that prefix). Use it to run a TypeScript Worker's logic, transcribed to
    /// JavaScript, against the namespace a Rust store writes to.
    ///
    /// ```
    /// let builder = kvkit_test_servers::CfEmulator::builder().worker("seed", "tests/seed.js");
    /// assert!(format!("{builder:?}").contains(r#"("seed", "tests/seed.js")"#));
    /// ```
    pub fn worker(mut self, name: impl Into<String>, script: impl Into<PathBuf>) -> Self {
        self.workers.push((name.into(), script.into()));
        self
    }

    /// The binding name of the namespace in extra Workers (default `KV`).
    ///
    /// ```
    /// let builder = kvkit_test_servers::CfEmulator::builder().binding("CACHE");
    /// assert!(format!("{builder:?}").contains(r#"binding: "CACHE""#));
    /// ```
    pub fn binding(mut self, name: impl Into<String>) -> Self {
        self.binding = name.into();
        self
    }

    /// Starts the emulator on a free loopback port. `None` when the user opted out with
    /// `KV_TEST_SKIP_CF=1`; panics with install instructions when `node` or the emulator's
    /// `node_modules` is missing.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::builder().start().expect("not opted out");
    /// assert!(emulator.url().starts_with("http://127.0.0.1:"));
    /// ```
    pub fn start(self) -> Option<CfEmulator> {
        let dir = cf_emulator_dir();
        if !can_start_node(&dir) {
            return None;
        }
        let mut command = Command::new("node");
        command
            .arg(dir.join("main.js"))
            .args(["--port", "0", "--token", &self.token])
            .args(["--account", CF_EMULATOR_ACCOUNT_ID])
            .args(["--namespace", CF_EMULATOR_NAMESPACE_ID])
            .args(["--binding", &self.binding]);
        if let Some(token) = &self.read_only_token {
            command.args(["--read-only-token", token]);
        }
        for (name, script) in &self.workers {
            command
                .arg("--worker")
                .arg(format!("{name}={}", script.display()));
        }
        command.current_dir(&dir);
        let (url, child) = start_node(&mut command, "the Cloudflare emulator");
        Some(CfEmulator {
            url,
            token: self.token,
            child,
        })
    }
}

/// The Cloudflare KV REST emulator (`kv-cloudflare/emulator`: a Worker serving the REST API on
/// a real KV binding in workerd, through Miniflare) on a free loopback port, stopped when this
/// value is dropped or the process exits.
///
/// ```no_run
/// let emulator = kvkit_test_servers::CfEmulator::start().expect("node on PATH");
/// println!("{}", emulator.api_url());
/// ```
#[derive(Debug)]
pub struct CfEmulator {
    url: String,
    token: String,
    child: Child,
}

impl CfEmulator {
    /// Options for an emulator with extra Workers or tokens.
    ///
    /// ```
    /// let builder = kvkit_test_servers::CfEmulator::builder();
    /// let shown = format!("{builder:?}");
    /// assert!(shown.contains(r#"token: "test-token""#) && shown.contains(r#"binding: "KV""#), "{shown}");
    /// ```
    pub fn builder() -> CfEmulatorBuilder {
        CfEmulatorBuilder {
            token: CF_EMULATOR_TOKEN.to_owned(),
            read_only_token: None,
            workers: Vec::new(),
            binding: "KV".to_owned(),
        }
    }

    /// Starts an emulator with the default ids and token. `None` when opted out with
    /// `KV_TEST_SKIP_CF=1`; panics with install instructions when `node` is missing.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::start().expect("not opted out");
    /// assert_eq!(emulator.token(), kvkit_test_servers::CF_EMULATOR_TOKEN);
    /// ```
    pub fn start() -> Option<Self> {
        Self::builder().start()
    }

    /// `http://127.0.0.1:{port}`.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::start().expect("not opted out");
    /// assert!(emulator.url().starts_with("http://127.0.0.1:"));
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API's base URL, `http://127.0.0.1:{port}/client/v4`, for `CloudflareBuilder::base_url`.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::start().expect("not opted out");
    /// assert!(emulator.api_url().ends_with("/client/v4"));
    /// ```
    pub fn api_url(&self) -> String {
        format!("{}/client/v4", self.url)
    }

    /// Where requests to the extra Worker `name` go: `http://127.0.0.1:{port}/workers/{name}`.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::builder()
    ///     .worker("seed", "tests/seed.js")
    ///     .start()
    ///     .expect("not opted out");
    /// assert!(emulator.worker_url("seed").ends_with("/workers/seed"));
    /// ```
    pub fn worker_url(&self, name: &str) -> String {
        format!("{}/workers/{name}", self.url)
    }

    /// The token with read and write access.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::CfEmulator::start().expect("not opted out");
    /// assert_eq!(emulator.token(), kvkit_test_servers::CF_EMULATOR_TOKEN);
    /// ```
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for CfEmulator {
    fn drop(&mut self) {
        stop_node(&mut self.child);
    }
}

/// The API base URL of a Cloudflare emulator shared by every test of this process: `KV_TEST_CF_URL`
/// when set, otherwise one emulator started on first use (account [`CF_EMULATOR_ACCOUNT_ID`],
/// namespace [`CF_EMULATOR_NAMESPACE_ID`], token [`CF_EMULATOR_TOKEN`]). `None` when opted out.
///
/// ```no_run
/// if let Some(api) = kvkit_test_servers::shared_cf_url() {
///     println!("testing against {api}");
/// }
/// ```
pub fn shared_cf_url() -> Option<String> {
    if let Ok(url) = std::env::var("KV_TEST_CF_URL") {
        return Some(url);
    }
    static EMULATOR: OnceLock<Option<CfEmulator>> = OnceLock::new();
    EMULATOR
        .get_or_init(CfEmulator::start)
        .as_ref()
        .map(CfEmulator::api_url)
}

/// Options of a [`WorkerdEmulator`]: the Rust Workers it runs, the Durable Object classes they
/// export and bind, and where it keeps their data.
///
/// ```
/// let builder = kvkit_test_servers::WorkerdEmulator::builder()
///     .worker("suite", "kv-worker/test-worker/build/index.js")
///     .durable_object("suite", "KVKIT", "KvShard");
/// assert!(format!("{builder:?}").contains(r#"("suite", "KVKIT", "KvShard")"#));
/// ```
#[derive(Debug, Clone, Default)]
pub struct WorkerdEmulatorBuilder {
    workers: Vec<(String, PathBuf)>,
    objects: Vec<(String, String, String)>,
    persist: Option<PathBuf>,
}

impl WorkerdEmulatorBuilder {
    /// Runs the Worker in `script` (worker-build's `build/index.js`); requests to
    /// `/workers/{name}/…` go to it. Each Worker has a KV namespace bound as `KV` and a D1
    /// database bound as `DB` of its own.
    ///
    /// ```
    /// let builder = kvkit_test_servers::WorkerdEmulator::builder().worker("w", "build/index.js");
    /// assert!(format!("{builder:?}").contains(r#"("w", "build/index.js")"#));
    /// ```
    pub fn worker(mut self, name: impl Into<String>, script: impl Into<PathBuf>) -> Self {
        self.workers.push((name.into(), script.into()));
        self
    }

    /// Binds the Durable Object class `class`, which Worker `worker` exports, to it as
    /// `binding`, SQLite-backed.
    ///
    /// ```
    /// let builder = kvkit_test_servers::WorkerdEmulator::builder().durable_object("w", "KVKIT", "KvShard");
    /// assert!(format!("{builder:?}").contains("KvShard"));
    /// ```
    pub fn durable_object(
        mut self,
        worker: impl Into<String>,
        binding: impl Into<String>,
        class: impl Into<String>,
    ) -> Self {
        self.objects
            .push((worker.into(), binding.into(), class.into()));
        self
    }

    /// Keeps the KV namespaces, databases and objects in `dir`, so that an emulator started
    /// again with the same `dir` finds them (by default they live in a scratch directory removed
    /// when the emulator stops).
    ///
    /// ```
    /// let builder = kvkit_test_servers::WorkerdEmulator::builder().persist("/tmp/state");
    /// assert!(format!("{builder:?}").contains(r#"persist: Some("/tmp/state")"#));
    /// ```
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persist = Some(dir.into());
        self
    }

    /// Starts the emulator on a free loopback port. `None` when the user opted out with
    /// `KV_TEST_SKIP_CF=1`; panics with install instructions when `node` or the emulator's
    /// `node_modules` is missing.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
    ///     .worker("w", "build/index.js")
    ///     .start()
    ///     .expect("not opted out");
    /// assert!(emulator.worker_url("w").starts_with("http://127.0.0.1:"));
    /// ```
    pub fn start(self) -> Option<WorkerdEmulator> {
        if !can_start_node(&cf_emulator_dir()) {
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("kv-worker")
            .join("test-worker")
            .join("serve.mjs");
        let mut command = Command::new("node");
        command.arg(script);
        for (name, path) in &self.workers {
            command
                .arg("--worker")
                .arg(format!("{name}={}", path.display()));
        }
        for (worker, binding, class) in &self.objects {
            command
                .arg("--object")
                .arg(format!("{worker}:{binding}={class}"));
        }
        if let Some(dir) = &self.persist {
            command.arg("--persist").arg(dir);
        }
        let (url, child) = start_node(&mut command, "the workerd emulator");
        Some(WorkerdEmulator { url, child })
    }
}

/// Rust Workers on workerd, through Miniflare (`kv-worker/test-worker/serve.mjs`), with
/// SQLite-backed Durable Objects, on a free loopback port; stopped when this value is dropped or
/// the process exits.
///
/// ```no_run
/// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
///     .worker("suite", "kv-worker/test-worker/build/index.js")
///     .durable_object("suite", "KVKIT", "KvShard")
///     .start()
///     .expect("not opted out");
/// println!("{}", emulator.worker_url("suite"));
/// ```
#[derive(Debug)]
pub struct WorkerdEmulator {
    url: String,
    child: Child,
}

impl WorkerdEmulator {
    /// Options for an emulator.
    ///
    /// ```
    /// let builder = kvkit_test_servers::WorkerdEmulator::builder();
    /// assert!(format!("{builder:?}").contains("workers: []"));
    /// ```
    pub fn builder() -> WorkerdEmulatorBuilder {
        WorkerdEmulatorBuilder::default()
    }

    /// Where requests to the Worker `name` go: `http://127.0.0.1:{port}/workers/{name}`.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
    ///     .worker("w", "build/index.js")
    ///     .start()
    ///     .expect("not opted out");
    /// assert!(emulator.worker_url("w").ends_with("/workers/w"));
    /// ```
    pub fn worker_url(&self, name: &str) -> String {
        format!("{}/workers/{name}", self.url)
    }

    /// Stops the emulator and waits until it has written everything it keeps.
    ///
    /// ```no_run
    /// let emulator = kvkit_test_servers::WorkerdEmulator::builder()
    ///     .worker("w", "build/index.js")
    ///     .persist("/tmp/state")
    ///     .start()
    ///     .expect("not opted out");
    /// emulator.stop();
    /// ```
    pub fn stop(mut self) {
        stop_node(&mut self.child);
    }
}

impl Drop for WorkerdEmulator {
    fn drop(&mut self) {
        stop_node(&mut self.child);
    }
}
