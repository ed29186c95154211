//! The connection: one multiplexed connection to a server, or a cluster connection.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

/// The connection: one multiplexed connection to a server, or a cluster connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            // Boxed, so the cluster's larger future does not grow every single-server call.
            Conn::Cluster(c) => Box::pin(cmd.query_async(&mut c.clone())).await,
        }
    }

    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => Box::pin(pipe.query_async(&mut c.clone())).await,
        }
    }
}
