//! The one connection type every Redis call goes through: a single node's auto-reconnecting
//! [`ConnectionManager`], or a Redis Cluster's connection ([`ClusterConn`]). Both are
//! multiplexed and cheap to clone.
//!
//! Every command and pipeline the store sends touches one slot (a tenant's hash tag, see
//! [`jobpulse_domain::keys::KeySpace`]), so on a cluster each goes to one node; the only
//! commands without a key (`SCRIPT LOAD`, `CONFIG GET`, `PING`) are routed by the cluster client
//! (`SCRIPT LOAD` to every node) or explicitly (`checks.rs` asks every master).
//!
//! redis-rs's cluster connection follows MOVED/ASK redirects and reconnects a dropped node by
//! itself, but a master that stops answering without closing its connections (a blackholed
//! host) only times out: the client reconnects to the same address and never reads the new
//! topology, so after a failover every call of that slot would keep timing out. So a
//! [`ClusterConn`] can be [rebuilt](ClusterConn::rebuild): a fresh connection from the seed
//! nodes reads the topology anew; the store does that when its breaker trips on a cluster.

use std::sync::{Arc, RwLock};

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// See the module docs.
#[derive(Clone)]
pub enum RedisConn {
    /// One Redis server (`REDIS_URL`).
    Single(ConnectionManager),
    /// A Redis Cluster (`JOBPULSE_REDIS_CLUSTER_NODES`).
    Cluster(ClusterConn),
}

/// A Redis Cluster connection that can be replaced by a fresh one (see the module docs).
#[derive(Clone)]
pub struct ClusterConn {
    client: Arc<ClusterClient>,
    current: Arc<RwLock<ClusterConnection>>,
    rebuilding: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for ClusterConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterConn")
    }
}

impl ClusterConn {
    pub(super) fn new(client: ClusterClient, conn: ClusterConnection) -> Self {
        Self {
            client: Arc::new(client),
            current: Arc::new(RwLock::new(conn)),
            rebuilding: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The connection in use now (a cheap clone).
    pub fn get(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the connection with a fresh one from the seed nodes (which reads the cluster's
    /// topology again). One rebuild at a time; a caller that finds one running waits for it.
    pub async fn rebuild(&self) -> RedisResult<()> {
        let Ok(_one) = self.rebuilding.try_lock() else {
            let _wait = self.rebuilding.lock().await;
            return Ok(());
        };
        let fresh = self.client.get_async_connection().await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
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
            RedisConn::Cluster(c) => {
                let mut c = c.get();
                Box::pin(async move { c.req_packed_command(cmd).await })
            }
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
            RedisConn::Cluster(c) => {
                let mut c = c.get();
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get().get_db(),
        }
    }
}
