//! The connection: one multiplexed connection to a server, a cluster connection, or a
//! connection to the server the sentinels name.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

use crate::sentinel::Failover;

/// The connection: one multiplexed connection to a server, a cluster connection, or a
/// connection to the server the sentinels name.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<Failover>),
}

impl Conn {
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            // Boxed, so the cluster's larger future does not grow every single-server call.
            Conn::Cluster(c) => Box::pin(cmd.query_async(&mut c.clone())).await,
            Conn::Sentinel(f) => {
                Box::pin(f.run(|mut c| async move { cmd.query_async(&mut c).await })).await
            }
        }
    }

    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => Box::pin(pipe.query_async(&mut c.clone())).await,
            Conn::Sentinel(f) => {
                Box::pin(f.run(|mut c| async move { pipe.query_async(&mut c).await })).await
            }
        }
    }
}
