//! A Sentinel-managed primary with replicas and three sentinels, on loopback ports.

use std::time::Duration;

use crate::{RedisServer, command_as, field, wait_until};

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
}

impl RedisSentinels {
    /// Starts a primary with `replicas` replicas (each with `requirepass` and `masterauth` set to
    /// `password`, if given) and three sentinels, and waits until the replicas are in sync and
    /// every sentinel knows them and the other two. `None` when the user opted out with
    /// `KV_TEST_SKIP_REDIS=1`; panics with install instructions when the binary is missing.
    pub fn start(replicas: usize, password: Option<&str>) -> Option<Self> {
        // A replica syncs at once, not after the default 5 s wait for others to join it.
        let mut auth = vec!["--repl-diskless-sync-delay", "0"];
        if let Some(password) = password {
            auth.extend(["--requirepass", password, "--masterauth", password]);
        }
        let primary = RedisServer::start(&auth)?;
        let primary_port = primary.port().to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let mut args = auth.clone();
            args.extend(["--replicaof", "127.0.0.1", &primary_port]);
            servers.push(RedisServer::start(&args)?);
        }
        let setup_password = password.map(str::to_owned);
        let port = servers[0].port();
        wait_until("the replicas to sync", Duration::from_secs(30), || {
            command_as(port, password, "INFO replication")
                .is_some_and(|info| info.matches("state=online").count() == replicas)
        });
        let mut sentinels = Vec::with_capacity(3);
        for _ in 0..3 {
            let mut sentinel = RedisServer::prepare(&[])?;
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
            // Sentinels rewrite their configuration file, so it lives in their own directory.
            let file = sentinel.dir().join("sentinel.conf");
            std::fs::write(&file, config).expect("writing sentinel.conf");
            sentinel.leading = vec![file.display().to_string(), "--sentinel".to_owned()];
            sentinel.spawn();
            sentinels.push(sentinel);
        }
        let setup = Self {
            servers,
            sentinels,
            password: setup_password,
        };
        for sentinel in &setup.sentinels {
            let port = sentinel.port();
            wait_until("the sentinels to meet", Duration::from_secs(30), || {
                command_as(port, None, &format!("SENTINEL MASTER {SENTINEL_SERVICE}")).is_some_and(
                    |reply| {
                        field(&reply, "num-other-sentinels") == Some("2")
                            && field(&reply, "num-slaves") == Some(&replicas.to_string())
                    },
                )
            });
        }
        Some(setup)
    }

    /// `redis+sentinel://[:password@]127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/kvkit`.
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
        format!(
            "redis+sentinel://{credentials}{}/{SENTINEL_SERVICE}",
            sentinels.join(",")
        )
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
        self.sentinels.iter().find_map(|sentinel| {
            let cmd = format!("SENTINEL GET-MASTER-ADDR-BY-NAME {SENTINEL_SERVICE}");
            let reply = command_as(sentinel.port(), None, &cmd)?;
            // *2, $9, 127.0.0.1, $len, port
            reply.lines().nth(4)?.parse().ok()
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
        let info = command_as(port, self.password.as_deref(), "INFO server").expect("INFO server");
        let pid = field(&info, "process_id").expect("the server's process id");
        let status = std::process::Command::new("kill")
            .args(["-STOP", pid.trim()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -STOP {pid} failed");
        port
    }

    /// Waits until the sentinels name a primary other than `old` that answers as one, and
    /// returns its port. Panics after `timeout`.
    pub fn wait_for_new_primary(&self, old: u16, timeout: Duration) -> u16 {
        let mut new = None;
        let password = self.password.as_deref();
        wait_until("the sentinels to promote a replica", timeout, || {
            new = self.primary_port().filter(|&port| {
                port != old
                    && command_as(port, password, "INFO replication")
                        .is_some_and(|info| field(&info, "role") == Some("master"))
            });
            new.is_some()
        });
        new.expect("a new primary")
    }
}
