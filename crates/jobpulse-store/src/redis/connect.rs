//! Opening a [`RedisStore`]: the connection settings, the connection manager with its timeouts,
//! the `maxmemory-policy` check, the write scripts loaded up front, and the change feed (started
//! at once when reads are cached).
//!
//! What is checked of the servers at connect is in `checks.rs`.
//!
//! A Redis Cluster ([`RedisTarget::Cluster`]) gets redis-rs's cluster client, which follows
//! MOVED/ASK redirects and failovers; its change feed is `shard_feed.rs`. The migration read of
//! the old system's keys (`legacy_read`) is refused there: those keys are in other slots than the
//! tenant's, so one pipeline could not read them with the record.

use std::sync::Arc;
use std::time::Duration;

use ::redis::ProtocolVersion;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use jobpulse_domain::keys::KeySpace;
use tokio::sync::broadcast;

use super::breaker::Breaker;
use super::cache::ReadCache;
use super::checks::{check_eviction_policy, every_master_has_a_replica};
use super::conn::RedisConn;
use super::errors::redis_error;
use super::feed::Feed;
use super::listener::Listener;
use super::scripts::{Scripts, WriteContext};
use super::shard_feed::ShardFeed;
use super::writes::Standby;
use super::{BACKEND, RedisStore};
use crate::{CHANGE_CHANNEL_CAPACITY, StoreConfig, StoreError, metrics};

/// Connection settings of the Redis store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Bound on establishing (or re-establishing) a connection.
    pub connect_timeout: Duration,
    /// Bound on waiting for one reply.
    pub response_timeout: Duration,
    /// Reconnection attempts per reconnect before a call fails (each waits `connect_timeout`).
    pub reconnect_retries: usize,
    /// On a cluster, how long a write pipeline waits for a replica to acknowledge it (`WAIT 1`)
    /// before the call returns. A write no replica acknowledged in time (a replica disconnected
    /// or far behind) stands as it is, is counted in `jobpulse_store_unreplicated_writes_total`
    /// and is reported by [`StatusStore::apply_many_durable`](crate::StatusStore::apply_many_durable)
    /// as not replicated: the outbox relay keeps its row and sends it again until a replica
    /// has it, so a failover cannot lose a state change (docs/scaling.md). Zero, or a cluster
    /// with a master that has no replica at connect (a warning line), turns the wait off.
    pub replica_ack_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 1,
            replica_ack_timeout: Duration::from_millis(50),
        }
    }
}

impl RedisOptions {
    /// The deadline of one store call.
    pub(super) fn deadline(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }
}

/// Where the read model lives.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server: a `redis://` (or `rediss://`) URL.
    Single(String),
    /// A Redis Cluster: seed nodes (`redis://host:port` each; the rest are discovered).
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URLs: they may carry a password.
        match self {
            RedisTarget::Single(_) => f.write_str("RedisTarget::Single"),
            RedisTarget::Cluster(n) => write!(f, "RedisTarget::Cluster({} seed nodes)", n.len()),
        }
    }
}

impl RedisTarget {
    /// A cluster from a comma-separated seed list (`redis://a:7000,redis://b:7001`); blanks
    /// around the commas are ignored. An empty list is an error.
    pub fn cluster_from_list(list: &str) -> Result<Self, StoreError> {
        let nodes: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::Config(
                "the Redis Cluster seed list is empty (expected redis://host:port,…)".into(),
            ));
        }
        Ok(RedisTarget::Cluster(nodes))
    }
}

impl RedisStore {
    /// Connects with [`RedisOptions::default`]. See [`RedisStore::connect_with`].
    pub async fn connect(
        url: &str,
        keys: KeySpace,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        Self::connect_with(url, keys, config, RedisOptions::default()).await
    }

    /// Connects to one Redis server. See [`RedisStore::connect_to`].
    pub async fn connect_with(
        url: &str,
        keys: KeySpace,
        config: StoreConfig,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        Self::connect_to(&RedisTarget::Single(url.to_owned()), keys, config, options).await
    }

    /// Connects (to one server or a cluster), checks the eviction policy and loads the write
    /// scripts. Must be called inside a Tokio runtime (the change feed is spawned on it).
    pub async fn connect_to(
        target: &RedisTarget,
        keys: KeySpace,
        config: StoreConfig,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        metrics::announce_errors(BACKEND, &["get", "get_many", "apply", "apply_many", "ping"]);
        // The connection manager and the change feed both live on the caller's runtime.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Config("the Redis store must be created inside a Tokio runtime".into())
        })?;
        let deadline = options.deadline();
        let unavailable =
            || StoreError::Unavailable(format!("Redis did not answer within {deadline:?}"));
        let cache = match config.read_cache {
            Some(c) if c.entries > 0 && !config.legacy_read => Some(Arc::new(ReadCache::new(c))),
            _ => None,
        };
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (mut conn, feed) = match target {
            RedisTarget::Single(url) => {
                let client = ::redis::Client::open(url.as_str())
                    .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout))
                    .set_number_of_retries(options.reconnect_retries)
                    .set_max_delay(Duration::from_secs(1));
                let conn = tokio::time::timeout(
                    deadline,
                    ConnectionManager::new_with_config(client.clone(), manager_config),
                )
                .await
                .map_err(|_| unavailable())?
                .map_err(redis_error)?;
                let listener = Listener::new(
                    client,
                    keys.changes_channel(),
                    changes,
                    deadline,
                    runtime,
                    cache.clone(),
                );
                (RedisConn::Single(conn), Feed::Global(Box::new(listener)))
            }
            RedisTarget::Cluster(nodes) => {
                if config.legacy_read {
                    return Err(StoreError::Config(
                        "legacy_read is not supported on a Redis Cluster: the old system's keys \
                         (tenant:{tid}:…) are in other slots than the tenant's records; run the \
                         migration read against the single-node Redis the old system used"
                            .into(),
                    ));
                }
                let builder = |nodes: &[String]| {
                    ClusterClientBuilder::new(nodes.to_vec())
                        .connection_timeout(options.connect_timeout)
                        .response_timeout(options.response_timeout)
                        .retries(u32::try_from(options.reconnect_retries.max(1) * 3).unwrap_or(3))
                        .max_retry_wait(1000)
                };
                let client = builder(nodes)
                    .build()
                    .map_err(|e| StoreError::Config(format!("invalid Redis Cluster nodes: {e}")))?;
                let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
                let feed_client = builder(nodes)
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(push_tx)
                    .build()
                    .map_err(|e| StoreError::Config(format!("invalid Redis Cluster nodes: {e}")))?;
                let conn = tokio::time::timeout(deadline, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable())?
                    .map_err(redis_error)?;
                let feed = ShardFeed::new(
                    feed_client,
                    push_rx,
                    keys.clone(),
                    changes,
                    deadline,
                    runtime,
                    cache.clone(),
                );
                (RedisConn::Cluster(conn), Feed::Sharded(Arc::new(feed)))
            }
        };
        tokio::time::timeout(deadline, check_eviction_policy(&mut conn))
            .await
            .map_err(|_| unavailable())??;
        let replica_ack = match &mut conn {
            RedisConn::Cluster(c) if !options.replica_ack_timeout.is_zero() => {
                tokio::time::timeout(deadline, every_master_has_a_replica(c))
                    .await
                    .map_err(|_| unavailable())??
                    .then_some(options.replica_ack_timeout)
            }
            _ => None,
        };
        let scripts = Scripts::new(replica_ack);
        // Loaded up front so writes are plain EVALSHAs; `Scripts::run` reloads them if needed.
        tokio::time::timeout(deadline, scripts.load(&mut conn))
            .await
            .map_err(|_| unavailable())?
            .map_err(redis_error)?;
        if cache.is_some() {
            // The cache serves only while the feed is subscribed: start it now.
            drop(feed.subscribe());
        }
        Ok(Self {
            ctx: WriteContext::new(keys, &config, conn.is_cluster()),
            conn,
            config,
            scripts,
            feed,
            cache,
            deadline,
            slow_failure: options.response_timeout.min(options.connect_timeout),
            breaker: Breaker::default(),
            standby: Standby::default(),
        })
    }
}
