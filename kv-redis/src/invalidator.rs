//! [`RedisInvalidator`]: the two-tier store's invalidations over Redis pub/sub (feature
//! `layers`), connected with the same settings as the store.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use kvkit_core::{Error, Result};
use kvkit_layers::{Invalidation, InvalidationSink, Invalidator};
use redis::Cmd;

use crate::connection::Conn;
use crate::errors::bounded;

/// How often the listener checks its subscription by default.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Announces changed keys on a Redis pub/sub channel, as a JSON array of key names, and listens
/// to the same channel for what other instances announce, for a
/// [`TwoTier`](kvkit_layers::TwoTier) store.
///
/// It connects with the settings of the [`RedisBuilder`](crate::RedisBuilder) it comes from
/// ([`RedisBuilder::connect_invalidator`](crate::RedisBuilder::connect_invalidator)): the same URLs, TLS roots and timeouts. On a cluster,
/// announcements go through the cluster connection, and the listener subscribes on one of the
/// given nodes (Redis Cluster delivers every `PUBLISH` to subscribers on every node), moving to
/// the next node when that one fails.
///
/// **Detecting a dead subscription.** A connection can die without closing (a network
/// partition, a paused or frozen server), and then announcements stop arriving without any
/// error. The listener pings Redis over its subscription every
/// [`heartbeat`](Self::heartbeat) interval; a ping not answered within another interval
/// declares the subscription down. While it is down (and until it is up again), the local tier
/// is emptied and bypassed, since announcements may be missed: staleness never grows past what
/// a copy fetched before the outage already had.
///
/// All instances that share a remote store must use the same channel.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kvkit_core::Result<()> {
/// use kvkit_redis::RedisStore;
/// let builder = RedisStore::builder("redis://127.0.0.1:6379").namespace("app:");
/// let invalidator = builder.connect_invalidator("app:invalidate").await?;
/// let store = kvkit_layers::TwoTier::new(builder.clone().connect().await?).invalidator(invalidator);
/// # let _: &dyn kvkit_core::KvStore = &store;
/// # Ok(()) }
/// ```
pub struct RedisInvalidator {
    publisher: Conn,
    /// One client per URL, for the listener (tried in turn).
    listeners: Vec<redis::Client>,
    channel: String,
    connect_timeout: Duration,
    timeout: Duration,
    heartbeat: Duration,
}

impl fmt::Debug for RedisInvalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The clients' connection info holds credentials: leave it out.
        f.debug_struct("RedisInvalidator")
            .field("channel", &self.channel)
            .field("listeners", &self.listeners.len())
            .field("timeout", &self.timeout)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl RedisInvalidator {
    /// An invalidator on one server: [`RedisStore::builder(url)`](crate::RedisStore::builder)
    /// then [`connect_invalidator`](crate::RedisBuilder::connect_invalidator).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let invalidator = kvkit_redis::RedisInvalidator::connect("redis://127.0.0.1:6379", "kv:invalidate").await?;
    /// assert!(format!("{invalidator:?}").contains(r#"channel: "kv:invalidate""#));
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, channel: impl Into<String>) -> Result<Self> {
        crate::RedisStore::builder(url)
            .connect_invalidator(channel)
            .await
    }

    pub(crate) fn new(
        publisher: Conn,
        listeners: Vec<redis::Client>,
        channel: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            publisher,
            listeners,
            channel,
            connect_timeout,
            timeout,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// How often the listener checks that its subscription is alive (default 1 s; at least
    /// 10 ms): a subscription that stopped answering is declared down within two intervals.
    /// Set it before handing the invalidator to a [`TwoTier`](kvkit_layers::TwoTier).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kvkit_core::Result<()> {
    /// let invalidator = kvkit_redis::RedisInvalidator::connect("redis://127.0.0.1:6379", "kv:invalidate")
    ///     .await?
    ///     .heartbeat(std::time::Duration::from_millis(250));
    /// assert!(format!("{invalidator:?}").contains("heartbeat: 250ms"));
    /// # Ok(()) }
    /// ```
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }
}

/// How a subscription ended.
enum Ended {
    /// The tier was dropped: nobody listens any more.
    TierGone,
    /// It failed or went silent; `was_up` when it had been established.
    Lost { was_up: bool },
}

/// Listens on one node until the subscription fails, goes silent, or the tier is dropped.
async fn listen(
    client: &redis::Client,
    channel: &str,
    connect_timeout: Duration,
    heartbeat: Duration,
    sink: &InvalidationSink,
) -> Ended {
    let lost = |was_up| match sink.is_alive() {
        true => Ended::Lost { was_up },
        false => Ended::TierGone,
    };
    let subscribed = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let Ok(Ok(pubsub)) = tokio::time::timeout(connect_timeout, subscribed).await else {
        return lost(false);
    };
    if !sink.deliver(Invalidation::Up) {
        return Ended::TierGone;
    }
    let (mut control, mut messages) = pubsub.split();
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => match message {
                None => return lost(true),
                Some(message) => {
                    // A message that is not a JSON array of keys is another writer's: ignored.
                    let keys: Vec<String> =
                        serde_json::from_slice(message.get_payload_bytes()).unwrap_or_default();
                    if !sink.deliver(Invalidation::Keys(keys)) {
                        return Ended::TierGone;
                    }
                }
            },
            _ = ticks.tick() => {
                if !sink.is_alive() {
                    return Ended::TierGone;
                }
                let pong = tokio::time::timeout(heartbeat, control.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return lost(true);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Invalidator for RedisInvalidator {
    async fn publish(&self, keys: &[String]) -> Result<()> {
        let message = serde_json::to_string(keys).map_err(|e| Error::encode("invalidation", e))?;
        let mut cmd = Cmd::new();
        cmd.arg("PUBLISH").arg(&self.channel).arg(message);
        bounded("publish", self.timeout, self.publisher.query::<i64>(&cmd))
            .await
            .map(drop)
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let listeners = self.listeners.clone();
        let channel = self.channel.clone();
        let (connect_timeout, heartbeat) = (self.connect_timeout, self.heartbeat);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            for client in listeners.iter().cycle() {
                match listen(client, &channel, connect_timeout, heartbeat, &sink).await {
                    Ended::TierGone => return,
                    Ended::Lost { was_up: true } => backoff = Duration::from_millis(50),
                    Ended::Lost { was_up: false } => {}
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
