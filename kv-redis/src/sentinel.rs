//! Redis Sentinel: `redis+sentinel://` URLs, and a connection that finds the primary (or a
//! replica) through the sentinels and finds it again after a failover.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use kvkit_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, ServerErrorKind};

use crate::store::BACKEND;

/// Sentinels listen on this port unless the URL says otherwise.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// What a `redis+sentinel://` (or `rediss+sentinel://`) URL says. Holds the password: never
/// shown (it has no `Debug`).
#[derive(Clone)]
pub(crate) struct SentinelUrl {
    pub(crate) tls: bool,
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) service: String,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

fn invalid(message: &str) -> Error {
    Error::configuration(
        BACKEND,
        format!(
            "{message}; a Sentinel URL is redis+sentinel://[user:password@]host:port[,host:port…]\
             /service-name[/db]"
        ),
    )
}

/// Decodes `%XX` escapes (user names and passwords may hold `@`, `:` or `/` that way).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    invalid("a `%` in the credentials is not followed by two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the credentials are not UTF-8 once decoded"))
}

impl SentinelUrl {
    /// Parses a Sentinel URL; `None` when `url` has another scheme.
    pub(crate) fn parse(url: &str) -> Option<Result<Self>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return None;
        };
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<Self> {
        // The password may hold an unencoded `/`, so the credentials end at the last `@`.
        let (credentials, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                let user = (!user.is_empty())
                    .then(|| percent_decode(user))
                    .transpose()?;
                let password = (!password.is_empty())
                    .then(|| percent_decode(password))
                    .transpose()?;
                (user, password)
            }
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("the URL names no service"))?;
        let sentinels = hosts
            .split(',')
            .map(|address| {
                let (host, port) = match address.rsplit_once(':') {
                    Some((host, port)) => (
                        host,
                        port.parse()
                            .map_err(|_| invalid("a sentinel's port is not a number"))?,
                    ),
                    None => (address, DEFAULT_SENTINEL_PORT),
                };
                if host.is_empty() {
                    return Err(invalid("a sentinel address has no host"));
                }
                Ok((host.to_owned(), port))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut segments = path.split('/');
        let service = segments.next().unwrap_or_default().to_owned();
        if service.is_empty() {
            return Err(invalid("the URL names no service"));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| invalid("the database is not a number"))?,
        };
        if segments.next().is_some() {
            return Err(invalid(
                "the URL has more path segments than service and database",
            ));
        }
        Ok(Self {
            tls,
            sentinels,
            service,
            db,
            username,
            password,
        })
    }

    /// A client asking the sentinels for the primary (or, for `replica`, a replica) of the
    /// service, with the URL's credentials and database for that server and `certificates` (if
    /// custom) for TLS to the servers and the sentinels.
    pub(crate) fn client(
        &self,
        replica: bool,
        #[cfg(feature = "tls")] certificates: Option<redis::TlsCertificates>,
    ) -> redis::RedisResult<SentinelClient> {
        let addresses = self.sentinels.iter().map(|(host, port)| {
            if self.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let server_type = if replica {
            SentinelServerType::Replica
        } else {
            SentinelServerType::Master
        };
        let mut builder = SentinelClientBuilder::new(addresses, &self.service, server_type)?
            .set_client_to_redis_db(self.db);
        if let Some(user) = &self.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if self.tls {
            builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        }
        #[cfg(feature = "tls")]
        if let Some(certificates) = certificates {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
        builder.build()
    }
}

/// A connection to the server the sentinels name (the primary, or a replica), found again
/// after any failure that suggests it moved: a lost connection, or an answer that it is no
/// longer (or not yet) what was asked for (`READONLY`, `MASTERDOWN`, `LOADING`).
pub(crate) struct Failover {
    /// Asks the sentinels; locked while one call finds the server, so the others wait for it.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The generation of the latest connection, and that connection while it is in use, so a
    /// failure forgets only the connection it met, never a newer one.
    current: Mutex<(u64, Option<MultiplexedConnection>)>,
    config: AsyncConnectionConfig,
}

/// Whether a failure means the connection is no longer to the server the sentinels name.
fn moved_on(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
            )
        )
}

impl Failover {
    pub(crate) fn new(client: SentinelClient, connect_timeout: Duration) -> Self {
        // Calls are bounded by the store's own timeout, so the connection needs none of its own.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        Self {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new((0, None)),
            config,
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, (u64, Option<MultiplexedConnection>)> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_use(&self) -> Option<(u64, MultiplexedConnection)> {
        let current = self.current();
        current.1.clone().map(|connection| (current.0, connection))
    }

    /// The connection in use, or a new one to the server the sentinels name now.
    async fn connection(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        if let Some(in_use) = self.in_use() {
            return Ok(in_use);
        }
        let mut client = self.client.lock().await;
        // Another call may have connected while this one waited.
        if let Some(in_use) = self.in_use() {
            return Ok(in_use);
        }
        let connection = client
            .get_async_connection_with_config(&self.config)
            .await?;
        let mut current = self.current();
        let generation = current.0 + 1;
        *current = (generation, Some(connection.clone()));
        Ok((generation, connection))
    }

    /// Forgets the connection of `generation`, if still in use.
    fn forget(&self, generation: u64) {
        let mut current = self.current();
        if current.0 == generation {
            current.1 = None;
        }
    }

    /// Runs `call` on the connection; a failure that suggests the server moved makes the next
    /// call ask the sentinels again, and so does a call cut short (by the store's timeout): a
    /// server that stopped answering without closing its connections (frozen, or cut off by the
    /// network) may have been replaced by the sentinels meanwhile.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (generation, connection) = self.connection().await?;
        let mut unfinished = Unfinished {
            failover: self,
            generation: Some(generation),
        };
        let result = call(connection).await;
        if !result.as_ref().is_err_and(moved_on) {
            unfinished.generation = None;
        }
        result
    }
}

/// Forgets its connection when dropped, unless the call on it finished without a sign that the
/// server moved.
struct Unfinished<'a> {
    failover: &'a Failover,
    generation: Option<u64>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(generation) = self.generation {
            self.failover.forget(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SentinelUrl> {
        SentinelUrl::parse(url).expect("a Sentinel URL")
    }

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_service_and_the_database() {
        let url = parse("redis+sentinel://u:p%40ss/w@h1:26380,h2,10.0.0.3:1/mymaster/3").unwrap();
        assert!(!url.tls);
        assert_eq!(
            url.sentinels,
            [
                ("h1".to_owned(), 26380),
                ("h2".to_owned(), DEFAULT_SENTINEL_PORT),
                ("10.0.0.3".to_owned(), 1)
            ]
        );
        assert_eq!(url.service, "mymaster");
        assert_eq!(url.db, 3);
        assert_eq!(url.username.as_deref(), Some("u"));
        assert_eq!(url.password.as_deref(), Some("p@ss/w"));

        let url = parse("rediss+sentinel://:secret@h:1/svc").unwrap();
        assert!(url.tls);
        assert_eq!(
            (url.db, url.username, url.password.as_deref()),
            (0, None, Some("secret"))
        );
        assert!(SentinelUrl::parse("redis://h:1").is_none());
    }

    #[test]
    fn a_malformed_sentinel_url_is_a_configuration_error_without_its_password() {
        for url in [
            "redis+sentinel://:hunter2@h:1",
            "redis+sentinel://:hunter2@h:1/",
            "redis+sentinel://:hunter2@h:port/svc",
            "redis+sentinel://:hunter2@:1/svc",
            "redis+sentinel://:hunter2@h:1/svc/db",
            "redis+sentinel://:hunter2@h:1/svc/0/extra",
            "redis+sentinel://:hunter2%zz@h:1/svc",
        ] {
            let err = parse(url).err().expect(url);
            assert_eq!(err.kind(), kvkit_core::ErrorKind::Configuration, "{url}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }
}
