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
//! `get` is one HMGET; `get_many` pipelines one HMGET per task (one round trip; all keys share the
//! tenant's slot). With `legacy_read`, each HMGET is followed by GETs of the two keys
//! [`legacy_keys`] names, in the same pipeline, used only when the record is missing (not for a
//! tombstone). Accepted: the status key holds exactly a contract status name of the task's kind;
//! the optional progress key a JSON object with optional `percent`, `step_index`, `step_total`,
//! `step_name`, `step_name_display`, `step_percent`, `remaining_seconds` (and `job_type`, which a
//! job needs). The snapshot gets fence `0.0.0` and revision 0; garbage is a miss (see
//! `legacy.rs`). On a cluster those keys are in other slots: the migration read is for the
//! single-node Redis the old system used.
//!
//! # Subscriptions
//!
//! The change feed is a background task holding its own pub/sub connection, started lazily by
//! the first `subscribe` (processes that only write never open it) and stopped when the store is
//! dropped. [`RedisStore::subscribe_ready`] also waits until it is subscribed. It reconnects with
//! backoff; changes announced while it is disconnected are not delivered (pub/sub keeps nothing),
//! and SSE clients cover that gap with `changes_since`.
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
//! Commands go through a multiplexed, auto-reconnecting [`ConnectionManager`] with connect and
//! response timeouts ([`RedisOptions`]); on top, every call has a deadline of both timeouts
//! together, so a blackholed Redis makes calls fail with [`StoreError::Unavailable`] within about
//! 4 s (default options) instead of hanging. Unexpected replies are [`StoreError::Protocol`].
//!
//! A call that failed *slowly* (it waited a whole response timeout: a blackholed or frozen
//! Redis, not a refused connection or an error reply such as `OOM`) opens a breaker: for the
//! next second every call fails at once with [`StoreError::Unavailable`], then one call at a
//! time probes Redis until one gets an answer (a probe whose caller stops waiting — `/readyz`
//! after its 2 s, a request whose client went away — frees the slot for the next call). Without it every caller would wait its full
//! deadline during such an outage — progress writes would stall the workers that make them,
//! and polls would each hold a connection for seconds.
//!
//! At connect, `maxmemory-policy` is checked: `allkeys-*` policies can evict live and terminal
//! records (and tombstones) silently and are refused; `volatile-*` ones may evict in-progress
//! records and tombstones early and are logged as a warning; when `CONFIG` is disabled (managed
//! Redis) we warn and continue.

mod breaker;
mod cache;
mod changes;
mod legacy;
mod listener;
mod record;
mod scripts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use jobpulse_domain::keys::{KeySpace, legacy_keys};
use jobpulse_domain::{Outcome, TaskId, TaskKey, TenantId, Write};
use tokio::sync::broadcast;

use self::breaker::{Admit, Breaker};
use self::cache::ReadCache;
pub use self::cache::ReadCacheConfig;
use self::listener::Listener;
use self::scripts::{Scripts, WriteContext};
use crate::{
    CHANGE_CHANNEL_CAPACITY, ChangesSince, Epoch, Snapshot, StatusStore, StoreConfig, StoreError,
    Subscription, metrics,
};

const BACKEND: &str = "redis";

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
    fn deadline(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }
}

/// See the module docs.
pub struct RedisStore {
    conn: ConnectionManager,
    ctx: WriteContext,
    config: StoreConfig,
    scripts: Scripts,
    listener: Listener,
    /// Present when reads are cached (see `cache.rs`); then the change feed runs from the start.
    cache: Option<Arc<ReadCache>>,
    deadline: Duration,
    /// A failed call that took at least this long waited out a timeout (see [`Breaker`]).
    slow_failure: Duration,
    breaker: Breaker,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.ctx.keys.prefix())
            .field("config", &self.config)
            .field("deadline", &self.deadline)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// Maps a client error: the store being out of reach is `Unavailable`, anything else `Protocol`.
pub(super) fn redis_error(e: RedisError) -> StoreError {
    let unreachable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
        || matches!(e.code(), Some("OOM" | "BUSY" | "MISCONF"));
    if unreachable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// A server error left inside a pipeline's replies.
fn server_error(v: &Value) -> Option<StoreError> {
    let Value::ServerError(e) = v else {
        return None;
    };
    let msg = format!("{} {}", e.code(), e.details().unwrap_or_default());
    Some(match e.code() {
        "OOM" | "BUSY" | "MISCONF" | "LOADING" | "MASTERDOWN" | "READONLY" | "TRYAGAIN"
        | "CLUSTERDOWN" => StoreError::Unavailable(msg),
        _ => StoreError::Protocol(msg),
    })
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

    /// The key space this store writes in.
    pub fn keys(&self) -> &KeySpace {
        &self.ctx.keys
    }

    /// A handle on the store's multiplexed connection, for operational tools (scans for repair)
    /// and for benchmarks that need a baseline over the very same connection. Writing records
    /// through it bypasses the fence: don't.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Like [`StatusStore::subscribe`], but returns only once the change feed is subscribed, so
    /// every change applied afterwards (by any process) is received.
    pub async fn subscribe_ready(&self) -> Result<Subscription, StoreError> {
        let rx = self.listener.subscribe();
        if self.listener.wait_ready(self.deadline).await {
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

    /// Counts the call, bounds it by the deadline, passes it through the breaker and counts
    /// its failure.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        metrics::op(BACKEND, op);
        // Held to the end of the call; a probe's slot is released when it is dropped, so a
        // cancelled call (dropped at an `.await` below) frees it too.
        let admit = self.breaker.admit();
        if matches!(admit, Admit::Reject) {
            metrics::error(BACKEND, op);
            return Err(StoreError::Unavailable(
                "Redis stopped answering moments ago; not retried yet".into(),
            ));
        }
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.deadline
            ))),
        };
        match &result {
            Err(StoreError::Unavailable(_)) if started.elapsed() >= self.slow_failure => {
                if self.breaker.trip() {
                    tracing::warn!("Redis stopped answering; failing calls fast while probing it");
                }
            }
            // An answer (even an error reply) or a quick failure (a refused connection): callers
            // do not wait, so there is nothing to fail fast for.
            Ok(_) | Err(StoreError::Protocol(_)) | Err(StoreError::Unavailable(_)) => {
                if self.breaker.close() {
                    tracing::info!("Redis answers again");
                }
            }
            Err(StoreError::Config(_)) => {}
        }
        drop(admit);
        if result.is_err() {
            metrics::error(BACKEND, op);
        }
        result
    }

    async fn run_writes(&self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        let calls = writes
            .iter()
            .map(|w| self.scripts.invocation(&self.ctx, w))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn.clone();
        let replies = self
            .scripts
            .run(&mut conn, &calls)
            .await
            .map_err(redis_error)?;
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
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Reads many tasks of one tenant in one pipeline.
    async fn read(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let legacy = self.config.legacy_read;
        let keys: Vec<TaskKey> = tasks
            .iter()
            .map(|task| TaskKey {
                tenant,
                task: task.clone(),
            })
            .collect();
        let mut pipe = ::redis::pipe();
        for key in &keys {
            pipe.cmd("HMGET")
                .arg(self.ctx.keys.record(key))
                .arg(&record::FIELDS[..]);
            if legacy {
                let (status, progress) = legacy_keys(key);
                pipe.cmd("GET").arg(status).cmd("GET").arg(progress);
            }
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(redis_error)?;
        let per_task = if legacy { 3 } else { 1 };
        if replies.len() != keys.len() * per_task {
            return Err(StoreError::Protocol(
                "a read pipeline returned the wrong number of replies".into(),
            ));
        }
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            let found = record::decode(replies.next().unwrap_or_default())?;
            if !legacy {
                out.push(found.into_snapshot());
                continue;
            }
            let status = record::opt_text(&replies.next().unwrap_or_default())?;
            let progress = record::opt_text(&replies.next().unwrap_or_default())?;
            // Only a true miss falls back: a tombstone means the task was deleted.
            out.push(match found {
                record::Record::Missing => legacy::map(key, status.as_deref(), progress.as_deref()),
                other => other.into_snapshot(),
            });
        }
        Ok(out)
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
        out
    }

    async fn get(&self, key: &TaskKey) -> Result<Option<Snapshot>, StoreError> {
        let ticket = match self.cache.as_deref().map(|c| c.lookup(key)) {
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
        if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
            cache.fill(key, ticket, &found);
        }
        Ok(found)
    }

    async fn get_many(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        let Some(cache) = &self.cache else {
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
        self.listener.subscribe()
    }

    fn feed_gaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.listener.gaps()
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
        self.call("check_epoch", async {
            let key = self.ctx.keys.sentinel();
            let mut conn = self.conn.clone();
            let get = |mut conn: ConnectionManager| {
                let key = key.clone();
                async move {
                    let v: Value = ::redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(redis_error)?;
                    record::opt_text(&v)
                }
            };
            if let Some(epoch) = get(conn.clone()).await? {
                return Ok(Epoch::Intact(epoch));
            }
            let fresh = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            let set: Value = ::redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            if matches!(set, Value::Okay) {
                return Ok(Epoch::Lost(fresh));
            }
            // Another process noticed the loss at the same moment and wrote its epoch first.
            let theirs = get(conn).await?.unwrap_or(fresh);
            Ok(Epoch::Lost(theirs))
        })
        .await
    }

    fn backend(&self) -> &'static str {
        BACKEND
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
