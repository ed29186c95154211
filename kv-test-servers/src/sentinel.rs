//! A Sentinel-managed primary with replicas and three sentinels, on loopback ports, with or
//! without TLS.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{RedisServer, wait_until};

/// The service (master name) the sentinels of a [`RedisSentinels`] monitor.
pub const SENTINEL_SERVICE: &str = "kvkit";

/// A primary, its replicas and three sentinels monitoring them as [`SENTINEL_SERVICE`] (quorum
/// 2), each a [`RedisServer`] on its own port, stopped when this value is dropped.
///
/// The sentinels are set for tests: a primary that does not answer for 1 s is down
/// (`down-after-milliseconds 1000`), and a failover that stalls is retried after 3 s
/// (`failover-timeout 3000`), so a replica takes over within a few seconds.
///
/// ```no_run
/// let mut setup = kvkit_test_servers::RedisSentinels::start(2, None).expect("not opted out");
/// assert!(setup.url().starts_with("redis+sentinel://127.0.0.1:"));
/// let old = setup.kill_primary();
/// let new = setup.wait_for_new_primary(old, std::time::Duration::from_secs(30));
/// assert_ne!(old, new);
/// ```
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    password: Option<String>,
    /// With TLS, the directory holding the CA every server and sentinel trusts.
    tls: Option<PathBuf>,
}

/// The value on the line after `name` in `redis-cli` output listing names and values each on a
/// line of its own (`SENTINEL MASTER`), or after `name:` on its line (`INFO`).
fn value<'a>(output: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        if line == name {
            return lines.next();
        }
        if let Some(value) = line.strip_prefix(name).and_then(|v| v.strip_prefix(':')) {
            return Some(value);
        }
    }
    None
}

impl RedisSentinels {
    /// Starts a primary with `replicas` replicas (each with `requirepass` and `masterauth` set to
    /// `password`, if given) and three sentinels, and waits until the replicas are in sync and
    /// every sentinel knows them and the other two. `None` when the user opted out with
    /// `KV_TEST_SKIP_REDIS=1`; panics with install instructions when the binary is missing.
    pub fn start(replicas: usize, password: Option<&str>) -> Option<Self> {
        Self::start_with(replicas, password, false)
    }

    /// Like [`RedisSentinels::start`], every server and sentinel speaking only TLS (replication
    /// too), with certificates for `127.0.0.1` signed by one throwaway CA:
    /// [`RedisSentinels::tls_ca_pem`] returns it, and [`RedisSentinels::url`] is a
    /// `rediss+sentinel://` URL.
    pub fn start_tls(replicas: usize, password: Option<&str>) -> Option<Self> {
        Self::start_with(replicas, password, true)
    }

    fn start_with(replicas: usize, password: Option<&str>, tls: bool) -> Option<Self> {
        // A replica syncs at once, not after the default 5 s wait for others to join it.
        let mut common = vec!["--repl-diskless-sync-delay", "0"];
        if let Some(password) = password {
            common.extend(["--requirepass", password, "--masterauth", password]);
        }
        if tls {
            common.extend(["--tls-replication", "yes"]);
        }
        let mut ca: Option<PathBuf> = None;
        let mut prepare = |args: &[&str]| -> Option<RedisServer> {
            if !tls {
                return RedisServer::prepare(args);
            }
            let server = RedisServer::prepare_tls(args, ca.as_deref())?;
            ca.get_or_insert_with(|| server.dir().to_owned());
            Some(server)
        };
        let mut primary = prepare(&common)?;
        primary.spawn();
        let primary_port = primary.port().to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let mut args = common.clone();
            args.extend(["--replicaof", "127.0.0.1", &primary_port]);
            let mut replica = prepare(&args)?;
            replica.spawn();
            servers.push(replica);
        }
        let mut sentinels = Vec::with_capacity(3);
        for _ in 0..3 {
            let mut sentinel = prepare(&[])?;
            let mut config = format!(
                "sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 3000\n\
                 sentinel parallel-syncs {SENTINEL_SERVICE} 2\n"
            );
            if let Some(password) = password {
                config.push_str(&format!(
                    "sentinel auth-pass {SENTINEL_SERVICE} {password}\n"
                ));
            }
            if tls {
                config.push_str("tls-replication yes\n");
            }
            // Sentinels rewrite their configuration file, so it lives in their own directory.
            let file = sentinel.dir().join("sentinel.conf");
            std::fs::write(&file, config).expect("writing sentinel.conf");
            sentinel.leading = vec![file.display().to_string(), "--sentinel".to_owned()];
            sentinels.push(sentinel);
        }
        let mut setup = Self {
            servers,
            sentinels,
            password: password.map(str::to_owned),
            tls: ca,
        };
        let port = setup.servers[0].port();
        wait_until("the replicas to sync", Duration::from_secs(30), || {
            setup
                .query(port, &["INFO", "replication"])
                .is_some_and(|info| info.matches("state=online").count() == replicas)
        });
        for sentinel in &mut setup.sentinels {
            sentinel.spawn();
        }
        for sentinel in setup.sentinel_ports() {
            wait_until("the sentinels to meet", Duration::from_secs(30), || {
                setup
                    .ask_sentinel(sentinel, &["SENTINEL", "MASTER", SENTINEL_SERVICE])
                    .is_some_and(|reply| {
                        value(&reply, "num-other-sentinels") == Some("2")
                            && value(&reply, "num-slaves") == Some(&replicas.to_string())
                    })
            });
        }
        Some(setup)
    }

    /// Runs one command with `redis-cli` on `port`, with TLS if the setup has it and
    /// `password` if given; `None` if it cannot connect or the server answers an error.
    fn run(&self, port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &port.to_string()]);
        if let Some(ca) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(ca.join("ca.crt"));
        }
        if let Some(password) = password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        let output = command
            .args(args)
            .output()
            .expect("running redis-cli (package redis-tools)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let failed = !output.status.success()
            || text.starts_with("ERR")
            || text.starts_with("NOAUTH")
            || text.starts_with("Could not connect");
        (!failed).then_some(text)
    }

    /// A command for a server of the setup (authenticated with its password).
    fn query(&self, port: u16, args: &[&str]) -> Option<String> {
        self.run(port, self.password.as_deref(), args)
    }

    /// A command for a sentinel (which needs no password).
    fn ask_sentinel(&self, port: u16, args: &[&str]) -> Option<String> {
        self.run(port, None, args)
    }

    /// `redis+sentinel://[:password@]127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/kvkit`
    /// (`rediss+sentinel://` with TLS).
    pub fn url(&self) -> String {
        let credentials = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!(
            "{scheme}+sentinel://{credentials}{}/{SENTINEL_SERVICE}",
            sentinels.join(",")
        )
    }

    /// The PEM of the CA every server and sentinel of a [`RedisSentinels::start_tls`] setup
    /// presents a certificate of.
    pub fn tls_ca_pem(&self) -> Option<Vec<u8>> {
        let ca = self.tls.as_ref()?;
        Some(std::fs::read(ca.join("ca.crt")).expect("reading the test CA"))
    }

    /// The ports of the primary and the replicas (the primary first until a failover), killed
    /// ones included.
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(RedisServer::port).collect()
    }

    /// The ports of the sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(RedisServer::port).collect()
    }

    /// The port of the primary a sentinel names now (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinel_ports().into_iter().find_map(|sentinel| {
            let args = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE];
            let reply = self.ask_sentinel(sentinel, &args)?;
            reply.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Kills the current primary (`kill -9`), as a crash would, and returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel naming the primary");
        self.servers
            .iter_mut()
            .find(|server| server.port() == port)
            .expect("the primary is one of the servers")
            .kill();
        port
    }

    /// Freezes the current primary (`kill -STOP`): it stops answering but keeps its connections
    /// open, as a server cut off by the network would, until it is dropped. Returns its port.
    pub fn freeze_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel naming the primary");
        let info = self.query(port, &["INFO", "server"]).expect("INFO server");
        let pid = value(&info, "process_id").expect("the server's process id");
        // The shell's own `kill`, as the servers are stopped (no procps needed).
        let status = Command::new("sh")
            .args(["-c", r#"kill -STOP "$1""#, "sh", pid.trim()])
            .status()
            .expect("running sh");
        assert!(status.success(), "kill -STOP {pid} failed");
        port
    }

    /// Waits until the sentinels name a primary other than `old` that answers as one, and
    /// returns its port. Panics after `timeout`.
    pub fn wait_for_new_primary(&self, old: u16, timeout: Duration) -> u16 {
        let mut new = None;
        wait_until("the sentinels to promote a replica", timeout, || {
            new = self.primary_port().filter(|&port| {
                port != old
                    && self
                        .query(port, &["INFO", "replication"])
                        .is_some_and(|info| value(&info, "role").map(str::trim) == Some("master"))
            });
            new.is_some()
        });
        new.expect("a new primary")
    }
}
