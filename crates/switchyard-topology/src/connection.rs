//! [`Connection`]: what a request is given, one type for every topology.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// A multiplexed connection to the primary (standalone, Sentinel) or to the whole Cluster.
///
/// It is a [`ConnectionLike`], so commands, pipelines and scripts run on it as on any redis-rs
/// connection: on a Cluster each goes to the primary of its first key's slot (redis-rs follows
/// `MOVED` and `ASK` and retries `TRYAGAIN`). A command without keys whose node matters — `WAIT`
/// after a script, `INFO` of the namespace's server — goes through [`query_at`](Self::query_at).
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub enum Connection {
    /// To one server.
    Single(MultiplexedConnection),
    /// To every primary of a Cluster.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `cmd` on the primary that holds `key`'s slot (on one server: there).
    pub async fn query_at<T: FromRedisValue>(&mut self, key: &str, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Connection::Single(conn) => cmd.query_async(conn).await,
            Connection::Cluster(conn) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let value = conn
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                T::from_redis_value(value).map_err(Into::into)
            }
        }
    }

    /// Whether this connection reaches a Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
