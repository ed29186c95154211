//! [`RedisInvalidator`]: two-tier invalidations over Redis pub/sub (feature `redis`).

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use kvkit_core::{Error, Result};
use redis::aio::ConnectionManager;

use crate::two_tier::{Invalidation, InvalidationSink, Invalidator};

/// Announces changed keys on a Redis pub/sub channel, as a JSON array of key names, and
/// listens to the same channel, reconnecting by itself; while it is disconnected the local tier
/// is emptied and bypassed, since announcements may be missed.
///
/// All instances that share a remote store must use the same channel.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// let invalidator = kvkit_layers::RedisInvalidator::connect("redis://127.0.0.1:6379", "kv:invalidate").await?;
/// # Ok(()) }
/// ```
pub struct RedisInvalidator {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
    timeout: Duration,
}

impl fmt::Debug for RedisInvalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's connection info holds credentials: leave it out.
        f.debug_struct("RedisInvalidator")
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn redis_error(what: &'static str, e: redis::RedisError) -> Error {
    let retryable = !matches!(e.retry_method(), redis::RetryMethod::NoRetry);
    Error::backend("redis", what, retryable, e)
}

impl RedisInvalidator {
    /// Connects the publishing side to `url`; the listener connects when a
    /// [`TwoTier`](crate::TwoTier) subscribes.
    pub async fn connect(url: &str, channel: impl Into<String>) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::backend("redis", "invalid Redis configuration", false, e))?;
        let timeout = Duration::from_secs(2);
        let publisher = tokio::time::timeout(timeout, client.get_connection_manager())
            .await
            .map_err(|_| Error::Timeout {
                backend: "redis",
                operation: "connect",
                after: timeout,
            })?
            .map_err(|e| redis_error("connecting the invalidation publisher", e))?;
        Ok(Self {
            client,
            publisher,
            channel: channel.into(),
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl Invalidator for RedisInvalidator {
    async fn publish(&self, keys: &[String]) -> Result<()> {
        let message = serde_json::to_string(keys).map_err(|e| Error::encode("invalidation", e))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(message);
        let mut publisher = self.publisher.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<i64>(&mut publisher)).await {
            Err(_) => Err(Error::Timeout {
                backend: "redis",
                operation: "publish",
                after: self.timeout,
            }),
            Ok(result) => result
                .map(drop)
                .map_err(|e| redis_error("publishing an invalidation", e)),
        }
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let client = self.client.clone();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            while sink.is_alive() {
                if let Ok(mut pubsub) = client.get_async_pubsub().await
                    && pubsub.subscribe(&channel).await.is_ok()
                {
                    backoff = Duration::from_millis(50);
                    if !sink.deliver(Invalidation::Up) {
                        return;
                    }
                    let mut messages = pubsub.on_message();
                    loop {
                        // Wake up now and then to notice a dropped tier.
                        match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                            Err(_) if sink.is_alive() => {}
                            Err(_) => return,
                            Ok(None) => break,
                            Ok(Some(message)) => {
                                let keys: Vec<String> =
                                    serde_json::from_slice(message.get_payload_bytes())
                                        .unwrap_or_default();
                                if !sink.deliver(Invalidation::Keys(keys)) {
                                    return;
                                }
                            }
                        }
                    }
                }
                if !sink.deliver(Invalidation::Down) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }
}
