//! The Redis store: the production read model.
//!
//! # Layout in Redis
//!
//! One hash per task at [`KeySpace::record`] (fields `g a s` fence, `r` revision, `t` in
//! progress / terminal / tombstone, `p` overall percent, `j` State JSON; see `record.rs`), one
//! capped stream per tenant (the change log, `changes.rs`), one pub/sub channel announcing every
//! applied change (`listener.rs`) and a sentinel key for [`StatusStore::check_epoch`]. A task's
//! record and its tenant's log share the tenant's hash tag, so each write script touches one slot.
//!
//! # Writes
//!
//! Each write kind is one Lua script (`set.lua`, `delete.lua`, `heartbeat.lua`, each prefixed by
//! `common.lua`) that reads the record, applies [`jobpulse_domain::decide`]'s rule, and for an
//! applied set/delete writes the record, sets its TTL, appends to the change log and publishes
//! the change, all atomically. TTLs follow [`StoreConfig`]: in-progress records slide
//! `live_ttl` (every write and heartbeat), terminal records are persisted (or kept for
//! `terminal_retention`), tombstones live `tombstone_ttl`. Revisions come from Redis `TIME`
//! (`max(previous + 1, now µs)`), so they are comparable between processes. `apply_many` sends all
//! its scripts in one pipeline; if one of them fails, the call fails, and the writes before it
//! may have been applied (each write is fenced, so sending them again is safe).
//!
//! # Reads
//!
//! One pipeline of HMGETs per call, in the tenant's slot; see `reads.rs` (and its legacy
//! fallback).
//!
//! # Subscriptions
//!
//! The change feed is a background task holding its own pub/sub connection, started lazily by
//! the first `subscribe` (processes that only write never open it) and stopped when the store is
//! dropped. [`RedisStore::subscribe_ready`] also waits until it is subscribed. It reconnects with
//! backoff; changes announced while it is disconnected are not delivered (pub/sub keeps nothing),
//! and SSE clients cover that gap with `changes_since`.
//!
//! # On a Redis Cluster
//!
//! [`RedisTarget::Cluster`] selects redis-rs's cluster client. Every script and pipeline touches
//! one slot (the tenant's hash tag), the scripts `SPUBLISH` to the tenant's own shard channel
//! instead of `PUBLISH`ing to one channel every node would copy, and the feed follows tenants
//! one by one (`shard_feed.rs`; [`StatusStore::follow`]). Each write pipeline ends with
//! `WAIT 1` ([`RedisOptions::replica_ack_timeout`], 50 ms), so a write that returns has normally
//! reached a replica; one no replica acknowledged in time is only counted (it can be lost if its
//! master dies before the replica has it; docs/scaling.md).
//! The eviction check runs on every master; `legacy_read` is refused. The data-loss sentinel (`check_epoch`) lives in one slot, so
//! it notices a flush of that shard only.
//!
//! # Differences from the in-process store
//!
//! - Cursors are stream ids (`1712345678901-0`), ordered within a tenant, not small integers.
//! - `changes_since` answers `Expired` for a tenant that has no change log yet (the in-process
//!   store answers an empty list), and for a cursor equal to the newest trimmed change (Redis
//!   cannot tell it apart from an older one). It never answers "no changes" when changes after
//!   the cursor were trimmed; the reasoning is in `changes.rs`.
//! - The log keeps about, not exactly, [`crate::TENANT_LOG_LEN`] entries (`MAXLEN ~`).
//! - Subscribers see changes of every process sharing the Redis, but not those announced while
//!   the feed was reconnecting.
//!
//! # Failure
//!
//! Commands go through a multiplexed, auto-reconnecting connection ([`RedisConn`]: redis-rs's
//! connection manager, or its cluster client on a Redis Cluster) with connect and response
//! timeouts ([`RedisOptions`]); on top, every call has a deadline of both timeouts
//! together, so a blackholed Redis makes calls fail with [`StoreError::Unavailable`] within about
//! 4 s (default options) instead of hanging. Unexpected replies are [`StoreError::Protocol`].
//!
//! A call that failed *slowly* (it waited a whole response timeout: a blackholed or frozen
//! Redis, not a refused connection or an error reply such as `OOM`) opens a breaker: for the
//! next second every call fails at once with [`StoreError::Unavailable`], then one call at a
//! time probes Redis until one gets an answer (see `breaker.rs`). Without it every caller would wait its
//! full deadline during such an outage — progress writes would stall the workers that make
//! them, and polls would each hold a connection for seconds.
//!
//! At connect, `maxmemory-policy` is checked (`connect.rs`): a policy that can evict records
//! silently is refused.

mod breaker;
mod cache;
mod changes;
mod checks;
mod conn;
mod connect;
mod epoch;
mod errors;
mod feed;
mod legacy;
mod listener;
mod reads;
mod record;
mod scripts;
mod shard_feed;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{Outcome, TaskId, TaskKey, TenantId, Write};

use self::breaker::Breaker;
use self::cache::ReadCache;
pub use self::cache::ReadCacheConfig;
pub use self::conn::RedisConn;
pub use self::connect::{RedisOptions, RedisTarget};
use self::errors::redis_error;
use self::feed::Feed;
use self::scripts::{Scripts, WriteContext};
use crate::{
    ChangesSince, Durable, Epoch, Snapshot, StatusStore, StoreConfig, StoreError, Subscription,
    metrics,
};

const BACKEND: &str = "redis";

/// See the module docs.
pub struct RedisStore {
    conn: RedisConn,
    ctx: WriteContext,
    config: StoreConfig,
    scripts: Scripts,
    feed: Feed,
    /// Present when reads are cached (see `cache.rs`); then the change feed runs from the start.
    cache: Option<Arc<ReadCache>>,
    deadline: Duration,
    /// A failed call that took at least this long waited out a timeout (see [`Breaker`]).
    slow_failure: Duration,
    breaker: Breaker,
    /// Which masters have a standby a failover could promote (see `writes.rs`).
    standby: writes::Standby,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.ctx.keys.prefix())
            .field("config", &self.config)
            .field("deadline", &self.deadline)
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key space this store writes in.
    pub fn keys(&self) -> &KeySpace {
        &self.ctx.keys
    }

    /// A handle on the store's multiplexed connection, for operational tools (scans for repair)
    /// and for benchmarks that need a baseline over the very same connection. Writing records
    /// through it bypasses the fence: don't.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Whether this store runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// Like [`StatusStore::subscribe`], but returns only once the change feed is subscribed, so
    /// every change applied afterwards (by any process) is received.
    pub async fn subscribe_ready(&self) -> Result<Subscription, StoreError> {
        let rx = self.feed.subscribe();
        if self.feed.wait_ready(self.deadline).await {
            Ok(rx)
        } else {
            Err(StoreError::Unavailable(format!(
                "the change feed did not subscribe within {:?}",
                self.deadline
            )))
        }
    }

    /// Read-your-writes in this process: drops cached entries of the tasks just written (even
    /// after a failed call, which may have applied some), so the next read goes to Redis rather
    /// than waiting for the announcement. Heartbeats change nothing a reader sees.
    fn forget(&self, writes: &[Write]) {
        if let Some(cache) = &self.cache {
            for w in writes {
                if !matches!(w.kind, jobpulse_domain::WriteKind::Heartbeat) {
                    cache.forget(&w.key);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl StatusStore for RedisStore {
    async fn apply(&self, write: &Write) -> Result<Outcome, StoreError> {
        let out = self
            .call("apply", async {
                let mut outcomes = self.run_writes(std::slice::from_ref(write)).await?;
                outcomes
                    .pop()
                    .map(|d| d.outcome)
                    .ok_or_else(|| StoreError::Protocol("a write returned no reply".into()))
            })
            .await;
        self.forget(std::slice::from_ref(write));
        out
    }

    async fn apply_many(&self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.call("apply_many", self.run_writes(writes)).await;
        self.forget(writes);
        Ok(out?.into_iter().map(|d| d.outcome).collect())
    }

    async fn apply_many_durable(&self, writes: &[Write]) -> Result<Vec<Durable>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.call("apply_many", self.run_writes(writes)).await;
        self.forget(writes);
        out
    }

    async fn get(&self, key: &TaskKey) -> Result<Option<Snapshot>, StoreError> {
        let cache = self
            .cache
            .as_deref()
            .filter(|_| self.feed.covers(key.tenant));
        let ticket = match cache.map(|c| c.lookup(key)) {
            Some(Ok(cached)) => {
                // Answered without I/O: still yield now and then, so a loop of cached reads
                // cannot starve its runtime.
                tokio::task::consume_budget().await;
                return Ok(cached);
            }
            Some(Err(ticket)) => Some(ticket),
            None => None,
        };
        let found = self
            .call("get", async {
                let mut found = self
                    .read(key.tenant, std::slice::from_ref(&key.task))
                    .await?;
                Ok(found.pop().flatten())
            })
            .await?;
        if let (Some(cache), Some(ticket)) = (cache, ticket) {
            cache.fill(key, ticket, &found);
        }
        Ok(found)
    }

    async fn get_at_least(
        &self,
        key: &TaskKey,
        at_least: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let found = self.get(key).await?;
        if self.cache.is_none() || found.as_ref().is_some_and(|s| s.rev >= at_least) {
            return Ok(found);
        }
        // Perhaps answered from the cache, which is behind what the reader saw: ask Redis.
        metrics::op(BACKEND, "get_behind_cache");
        self.call("get", async {
            let mut found = self
                .read(key.tenant, std::slice::from_ref(&key.task))
                .await?;
            Ok(found.pop().flatten())
        })
        .await
    }

    async fn get_many(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        let Some(cache) = self.cache.as_deref().filter(|_| self.feed.covers(tenant)) else {
            return self.call("get_many", self.read(tenant, tasks)).await;
        };
        // Served from the cache where it can; the rest in one round trip, filled afterwards.
        let mut out = Vec::with_capacity(tasks.len());
        let mut missing = Vec::new();
        for task in tasks {
            let key = TaskKey {
                tenant,
                task: task.clone(),
            };
            match cache.lookup(&key) {
                Ok(cached) => out.push(cached),
                Err(ticket) => {
                    missing.push((out.len(), key, ticket));
                    out.push(None);
                }
            }
        }
        if missing.is_empty() {
            tokio::task::consume_budget().await;
            return Ok(out);
        }
        let ids: Vec<TaskId> = missing.iter().map(|(_, k, _)| k.task.clone()).collect();
        let found = self.call("get_many", self.read(tenant, &ids)).await?;
        for ((i, key, ticket), snap) in missing.into_iter().zip(found) {
            cache.fill(&key, ticket, &snap);
            out[i] = snap;
        }
        Ok(out)
    }

    fn subscribe(&self) -> Subscription {
        metrics::op(BACKEND, "subscribe");
        self.feed.subscribe()
    }

    fn feed_gaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.gaps()
    }

    async fn follow(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.feed.follow(tenant).await
    }

    async fn changes_since(
        &self,
        tenant: TenantId,
        cursor: &str,
        limit: usize,
    ) -> Result<ChangesSince, StoreError> {
        self.call("changes_since", async {
            let mut conn = self.conn.clone();
            changes::read(
                &mut conn,
                &self.ctx.keys.tenant_events(tenant),
                cursor,
                limit,
            )
            .await
        })
        .await
    }

    async fn log_head(&self, tenant: TenantId) -> Result<Option<String>, StoreError> {
        self.call("log_head", async {
            let mut conn = self.conn.clone();
            changes::head(&mut conn, &self.ctx.keys.tenant_events(tenant)).await
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", async {
            let mut conn = self.conn.clone();
            let pong: Value = ::redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            match pong {
                Value::SimpleString(s) if s == "PONG" => Ok(()),
                other => Err(StoreError::Protocol(format!("PING answered {other:?}"))),
            }
        })
        .await
    }

    async fn check_epoch(&self) -> Result<Epoch, StoreError> {
        self.call("check_epoch", self.sentinel_epoch()).await
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}
