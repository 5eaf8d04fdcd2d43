//! Opening a [`RedisStore`]: the connection settings, the connection manager with its timeouts,
//! the `maxmemory-policy` check, the write scripts loaded up front, and the change feed (started
//! at once when reads are cached).
//!
//! At connect, `maxmemory-policy` is checked: `allkeys-*` policies can evict live and terminal
//! records (and tombstones) silently and are refused; `volatile-*` ones may evict in-progress
//! records and tombstones early and are logged as a warning; when `CONFIG` is disabled (managed
//! Redis) we warn and continue.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Value};
use jobpulse_domain::keys::KeySpace;
use tokio::sync::broadcast;

use super::breaker::Breaker;
use super::cache::ReadCache;
use super::errors::redis_error;
use super::listener::Listener;
use super::scripts::{Scripts, WriteContext};
use super::{BACKEND, RedisStore, record};
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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 1,
        }
    }
}

impl RedisOptions {
    /// The deadline of one store call.
    pub(super) fn deadline(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }
}

enum EvictionPolicy {
    Safe,
    Warn,
    Refuse,
}

/// What a `maxmemory-policy` means for a store whose terminal records have no TTL.
fn eviction_policy(policy: &str) -> EvictionPolicy {
    if policy.starts_with("allkeys-") {
        EvictionPolicy::Refuse
    } else if policy.starts_with("volatile-") {
        EvictionPolicy::Warn
    } else {
        EvictionPolicy::Safe
    }
}

async fn check_eviction_policy(conn: &mut ConnectionManager) -> Result<(), StoreError> {
    let reply: Result<Value, RedisError> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    let reply = match reply {
        Ok(v) => v,
        Err(e) if matches!(redis_error(e.clone()), StoreError::Unavailable(_)) => {
            return Err(redis_error(e));
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot read Redis maxmemory-policy (CONFIG disabled?); make sure it is noeviction"
            );
            return Ok(());
        }
    };
    let pairs: Vec<Value> = match reply {
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => record::array(other)?,
    };
    let policy = pairs.chunks(2).find_map(|kv| match kv {
        [k, v] if record::opt_text(k).ok().flatten().as_deref() == Some("maxmemory-policy") => {
            record::opt_text(v).ok().flatten()
        }
        _ => None,
    });
    let Some(policy) = policy else {
        tracing::warn!("Redis did not report its maxmemory-policy; make sure it is noeviction");
        return Ok(());
    };
    match eviction_policy(&policy) {
        EvictionPolicy::Refuse => Err(StoreError::Config(format!(
            "Redis maxmemory-policy is {policy}: under memory pressure it silently evicts \
             in-progress and terminal records and deletion tombstones; set it to noeviction"
        ))),
        EvictionPolicy::Warn => {
            tracing::warn!(
                redis.maxmemory_policy = %policy,
                "under memory pressure Redis may evict in-progress records and deletion tombstones \
                 early; noeviction is recommended"
            );
            Ok(())
        }
        EvictionPolicy::Safe => Ok(()),
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

    /// Connects, checks the eviction policy and loads the write scripts. Must be called inside a
    /// Tokio runtime (the change feed is spawned on it).
    pub async fn connect_with(
        url: &str,
        keys: KeySpace,
        config: StoreConfig,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        metrics::announce_errors(BACKEND, &["get", "get_many", "apply", "apply_many", "ping"]);
        // The connection manager and the change feed both live on the caller's runtime.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Config("the Redis store must be created inside a Tokio runtime".into())
        })?;
        let client = ::redis::Client::open(url)
            .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_max_delay(Duration::from_secs(1));
        let deadline = options.deadline();
        let unavailable =
            || StoreError::Unavailable(format!("Redis did not answer within {deadline:?}"));
        let mut conn = tokio::time::timeout(
            deadline,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| unavailable())?
        .map_err(redis_error)?;
        tokio::time::timeout(deadline, check_eviction_policy(&mut conn))
            .await
            .map_err(|_| unavailable())??;
        let scripts = Scripts::new();
        // Loaded up front so writes are plain EVALSHAs; `Scripts::run` reloads them if needed.
        let mut load = ::redis::pipe();
        scripts.load_into(&mut load);
        tokio::time::timeout(deadline, load.query_async::<()>(&mut conn))
            .await
            .map_err(|_| unavailable())?
            .map_err(redis_error)?;
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let cache = match config.read_cache {
            Some(c) if c.entries > 0 && !config.legacy_read => Some(Arc::new(ReadCache::new(c))),
            _ => None,
        };
        let listener = Listener::new(
            client,
            keys.changes_channel(),
            changes,
            deadline,
            runtime,
            cache.clone(),
        );
        if cache.is_some() {
            // The cache serves only while the feed is subscribed: start it now.
            drop(listener.subscribe());
        }
        Ok(Self {
            conn,
            ctx: WriteContext::new(keys, &config),
            config,
            scripts,
            listener,
            cache,
            deadline,
            slow_failure: options.response_timeout.min(options.connect_timeout),
            breaker: Breaker::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_policies_are_classified() {
        for p in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            assert!(matches!(eviction_policy(p), EvictionPolicy::Refuse), "{p}");
        }
        for p in [
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert!(matches!(eviction_policy(p), EvictionPolicy::Warn), "{p}");
        }
        assert!(matches!(
            eviction_policy("noeviction"),
            EvictionPolicy::Safe
        ));
    }
}
