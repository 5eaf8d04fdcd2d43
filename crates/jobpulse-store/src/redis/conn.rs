//! The one connection type every Redis call goes through: a single node's auto-reconnecting
//! [`ConnectionManager`], or a Redis Cluster's [`ClusterConnection`] (which follows MOVED/ASK
//! redirects and failovers by itself). Both are multiplexed and cheap to clone.
//!
//! Every command and pipeline the store sends touches one slot (a tenant's hash tag, see
//! [`jobpulse_domain::keys::KeySpace`]), so on a cluster each goes to one node; the only
//! commands without a key (`SCRIPT LOAD`, `CONFIG GET`, `PING`) are routed by the cluster client
//! (`SCRIPT LOAD` to every node) or explicitly (`connect.rs` asks every master).

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

/// See the module docs.
#[derive(Clone)]
pub enum RedisConn {
    /// One Redis server (`REDIS_URL`).
    Single(ConnectionManager),
    /// A Redis Cluster (`JOBPULSE_REDIS_CLUSTER_NODES`).
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
