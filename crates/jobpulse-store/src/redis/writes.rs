//! The write path: pipelines of write scripts and what their `WAIT` says of durability.
//!
//! A pipeline of the write scripts is one round trip. On a Redis Cluster a pipeline must stay in
//! one slot, so `apply_many` of several tenants sends one pipeline per tenant, all at once, and
//! puts the outcomes back in order.
//!
//! On a cluster each pipeline ends with `WAIT 1 <replica_ack_timeout>`. When no replica
//! acknowledged in time, its writes are *not replicated* ([`Durable::replicated`]: the outbox
//! relay keeps their rows and sends them again) — unless the slot's master has no standby: no
//! replica in the cluster's view (`CLUSTER NODES`, asked of that master) that is not failed and
//! may fail over. Without a standby no failover can happen, so none can lose the write (this is
//! the state right after a failover: the promoted master's replica is the dead old master); with
//! one — connected or not, its replication link cut or far behind — a failover could promote
//! it without the write. The answer is kept for a second per tenant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{TenantId, Write};

use super::errors::{redis_error, server_error};
use super::{BACKEND, RedisConn, RedisStore, record, scripts};
use crate::{Durable, StoreError, metrics};

/// How long a master's standby answer is reused.
const STANDBY_TTL: Duration = Duration::from_secs(1);
/// Answers kept at most (one per tenant written while unreplicated); beyond it they start over.
const STANDBY_ENTRIES: usize = 10_000;

impl RedisStore {
    pub(super) async fn run_writes(&self, writes: &[Write]) -> Result<Vec<Durable>, StoreError> {
        if !self.conn.is_cluster() {
            return self.run_pipeline(writes).await;
        }
        // A cluster pipeline must stay in one slot: one pipeline per tenant, all at once, each
        // keeping its writes' order.
        let mut groups: Vec<(TenantId, Vec<usize>)> = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            match groups.iter_mut().find(|(t, _)| *t == w.key.tenant) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((w.key.tenant, vec![i])),
            }
        }
        if groups.len() == 1 {
            return self.run_pipeline(writes).await;
        }
        let runs = groups.iter().map(|(_, idx)| async move {
            let group: Vec<Write> = idx.iter().map(|&i| writes[i].clone()).collect();
            self.run_pipeline(&group).await
        });
        let results = futures::future::join_all(runs).await;
        let mut outcomes = vec![None; writes.len()];
        for ((_, idx), result) in groups.iter().zip(results) {
            for (&i, outcome) in idx.iter().zip(result?) {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Protocol("a write got no outcome".into())))
            .collect()
    }

    /// One pipeline of write scripts (one round trip); on a cluster ended by `WAIT 1`, whose
    /// answer says whether the pipeline's writes are replicated.
    async fn run_pipeline(&self, writes: &[Write]) -> Result<Vec<Durable>, StoreError> {
        let calls = writes
            .iter()
            .map(|w| self.scripts.invocation(&self.ctx, w))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn.clone();
        let scripts::Replies { replies, replicas } = self
            .scripts
            .run(&mut conn, &calls)
            .await
            .map_err(redis_error)?;
        let replicated = match (replicas, writes.first()) {
            (Some(0), Some(first)) => {
                !self
                    .standby
                    .exists(&self.conn, &self.ctx.keys, first.key.tenant)
                    .await
            }
            _ => true,
        };
        if !replicated {
            metrics::unreplicated(BACKEND, writes.len());
            tracing::debug!(
                writes = writes.len(),
                "no replica acknowledged a write pipeline in time; a failover may lose it"
            );
        }
        if replies.len() != writes.len() {
            return Err(StoreError::Protocol(
                "a write pipeline returned the wrong number of replies".into(),
            ));
        }
        let mut outcomes = Vec::with_capacity(replies.len());
        for reply in replies {
            if let Some(e) = server_error(&reply) {
                return Err(e);
            }
            let outcome = scripts::parse_outcome(reply)?;
            metrics::outcome(BACKEND, &outcome);
            outcomes.push(Durable {
                outcome,
                replicated,
            });
        }
        Ok(outcomes)
    }
}

/// Whether a tenant's master has a standby (see the module docs), remembered for a second.
#[derive(Debug, Default)]
pub(super) struct Standby {
    seen: Mutex<HashMap<TenantId, (Instant, bool)>>,
}

impl Standby {
    pub(super) async fn exists(&self, conn: &RedisConn, keys: &KeySpace, tenant: TenantId) -> bool {
        if let Ok(seen) = self.seen.lock()
            && let Some((at, answer)) = seen.get(&tenant)
            && at.elapsed() < STANDBY_TTL
        {
            return *answer;
        }
        let RedisConn::Cluster(c) = conn else {
            return false;
        };
        let mut c = c.clone();
        let route = Route::with_key(keys.tenant_changes_channel(tenant), SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let mut cmd = ::redis::cmd("CLUSTER");
        cmd.arg("NODES");
        // Unknown counts as a standby: the rows are kept, which is the safe side.
        let answer = match c.route_command(cmd, routing).await {
            Ok(reply) => record::opt_text(&reply)
                .ok()
                .flatten()
                .is_none_or(|nodes| has_standby(&nodes)),
            Err(e) => {
                tracing::debug!(error = %e, "CLUSTER NODES failed; a standby is assumed");
                true
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= STANDBY_ENTRIES {
                seen.clear();
            }
            seen.insert(tenant, (Instant::now(), answer));
        }
        answer
    }
}

/// Whether the node that wrote `nodes` (a `CLUSTER NODES` reply) is a master with a replica
/// that could be promoted: not failed (`fail`; a `fail?` suspicion still counts), not marked
/// `nofailover`, with an address. A node that is not a master answers `true` (the client's
/// slot map is behind; keep the rows).
fn has_standby(nodes: &str) -> bool {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect();
    let flags = |f: &Vec<&str>| f[2].split(',').map(str::to_owned).collect::<Vec<_>>();
    let Some(me) = lines
        .iter()
        .find(|f| flags(f).iter().any(|x| x == "myself"))
    else {
        return true;
    };
    if !flags(me).iter().any(|x| x == "master") {
        return true;
    }
    let my_id = me[0];
    lines.iter().any(|f| {
        let fl = flags(f);
        f[3] == my_id
            && fl.iter().any(|x| x == "slave" || x == "replica")
            && !fl
                .iter()
                .any(|x| x == "fail" || x == "nofailover" || x == "noaddr" || x == "handshake")
    })
}

#[cfg(test)]
mod tests {
    use super::has_standby;

    const MASTER: &str = "07c37dfeb235213a872192d90877d0cd55635b91";
    const OTHER: &str = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1";

    fn nodes(replica_flags: &str) -> String {
        format!(
            "{MASTER} 127.0.0.1:30004@31004 myself,master - 0 1426238317239 4 connected 0-5460\n\
             {OTHER} 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n\
             e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 {replica_flags} {MASTER} 0 1426238316232 4 connected\n\
             292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30005@31005 slave {OTHER} 0 1426238316232 5 connected\n"
        )
    }

    #[test]
    fn a_live_or_suspected_replica_is_a_standby() {
        assert!(has_standby(&nodes("slave")));
        assert!(has_standby(&nodes("slave,fail?")));
    }

    #[test]
    fn a_failed_or_nofailover_replica_is_not() {
        assert!(!has_standby(&nodes("slave,fail")));
        assert!(!has_standby(&nodes("slave,nofailover")));
        assert!(!has_standby(&nodes("master,fail")));
    }

    #[test]
    fn a_replica_or_an_unreadable_answer_keeps_the_rows() {
        let from_a_replica = nodes("slave").replace("myself,master", "myself,slave");
        assert!(has_standby(&from_a_replica));
        assert!(has_standby("garbage"));
    }
}
