//! What is checked of the Redis servers when a store connects.
//!
//! - `maxmemory-policy` (on a cluster, on every master): `allkeys-*` policies can evict live and
//!   terminal records (and tombstones) silently and are refused; `volatile-*` ones may evict
//!   in-progress records and tombstones early and are logged as a warning; when `CONFIG` is
//!   disabled (managed Redis) we warn and continue.
//! - On a cluster, whether every master has a replica (`INFO replication`): if one has none,
//!   writes do not wait for a replica's acknowledgement (`writes.rs`).

use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{RedisError, Value};

use super::conn::RedisConn;
use super::errors::redis_error;
use super::record;
use crate::StoreError;

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

/// Checks every server that holds records: the one node, or every master of a cluster.
pub(super) async fn check_eviction_policy(conn: &mut RedisConn) -> Result<(), StoreError> {
    let mut cmd = ::redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    match conn {
        RedisConn::Single(c) => check_policy_reply(cmd.query_async(c).await, "Redis"),
        RedisConn::Cluster(c) => {
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let replies = match c.route_command(cmd, routing).await {
                Ok(Value::Map(per_node)) => per_node,
                Ok(other) => return check_policy_reply(Ok(other), "a Redis Cluster master"),
                Err(e) => return check_policy_reply(Err(e), "the Redis Cluster"),
            };
            for (node, reply) in replies {
                let node = record::opt_text(&node).ok().flatten().unwrap_or_default();
                check_policy_reply(Ok(reply), &format!("Redis Cluster master {node}"))?;
            }
            Ok(())
        }
    }
}

/// Whether every master of the cluster has a replica connected (`INFO replication`'s
/// `connected_slaves`). When one has none, waiting for a replica's acknowledgement would cost
/// every write its whole timeout for nothing (and a failover of that master is impossible
/// anyway), so writes do not wait: a warning line says so.
pub(super) async fn every_master_has_a_replica(
    c: &mut ::redis::cluster_async::ClusterConnection,
) -> Result<bool, StoreError> {
    let mut cmd = ::redis::cmd("INFO");
    cmd.arg("replication");
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let per_node = match c.route_command(cmd, routing).await.map_err(redis_error)? {
        Value::Map(per_node) => per_node,
        other => vec![(Value::Nil, other)],
    };
    let mut alone = Vec::new();
    for (node, reply) in per_node {
        let node = record::opt_text(&node).ok().flatten().unwrap_or_default();
        let text = record::opt_text(&reply).ok().flatten().unwrap_or_default();
        let replicas = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if replicas == 0 {
            alone.push(node);
        }
    }
    if alone.is_empty() {
        return Ok(true);
    }
    tracing::warn!(
        redis.masters_without_replica = %alone.join(", "),
        "a Redis Cluster master has no replica: writes do not wait for a replica's \
         acknowledgement (restart jobpulse after adding replicas to have them wait)"
    );
    Ok(false)
}

fn check_policy_reply(reply: Result<Value, RedisError>, server: &str) -> Result<(), StoreError> {
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
            "{server}: maxmemory-policy is {policy}: under memory pressure it silently evicts \
             in-progress and terminal records and deletion tombstones; set it to noeviction"
        ))),
        EvictionPolicy::Warn => {
            tracing::warn!(
                redis.maxmemory_policy = %policy,
                redis.server = %server,
                "under memory pressure Redis may evict in-progress records and deletion tombstones \
                 early; noeviction is recommended"
            );
            Ok(())
        }
        EvictionPolicy::Safe => Ok(()),
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
