//! The read model: where progress polls are answered from.
//!
//! [`StatusStore`] is the seam: `apply` a fenced [`Write`], `get` / `get_many` snapshots, and
//! `subscribe` to changes. Two implementations:
//!
//! - [`memory::MemoryStore`]: in-process, for `jobpulse up` (embedded mode) and as the reference
//!   model. It calls [`jobpulse_domain::decide`] directly.
//! - [`redis::RedisStore`]: the production store. Each write kind is one Lua script that checks the
//!   fence and writes atomically (a transcription of `decide`); a differential test drives both
//!   implementations with the same writes and compares everything a reader can observe.
//!
//! # Layout
//!
//! - this file: the trait, snapshots, changes, configuration and errors;
//! - [`memory`]: the in-process store;
//! - [`redis`]: the Redis store and its scripts;
//! - `metrics`: the counters both stores report (`jobpulse_store_*`).

use std::sync::Arc;
use std::time::Duration;

use jobpulse_domain::{Fence, Outcome, State, TaskId, TaskKey, TenantId, Write};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub mod memory;
mod metrics;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::{ReadCacheConfig, RedisConn, RedisOptions, RedisStore, RedisTarget};

/// What a reader sees of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub fence: Fence,
    /// Grows with every applied change; the basis of ETags and SSE event ids.
    pub rev: u64,
    pub state: State,
}

/// One applied change, as announced to subscribers. `snapshot == None` means the task was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: TaskKey,
    pub rev: u64,
    pub snapshot: Option<Snapshot>,
    /// Position of this change in its tenant's change log (see [`StatusStore::changes_since`]);
    /// opaque, ordered within one tenant. SSE uses it as the event id.
    pub cursor: String,
}

/// Tasks of one tenant that changed after a cursor (see [`StatusStore::changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangesSince {
    /// Every change after the cursor, oldest first: `(cursor, task)`.
    Changes(Vec<(String, TaskId)>),
    /// The cursor is older than what the store keeps (or unknown): the caller cannot tell what
    /// changed and must re-send full snapshots.
    Expired,
}

/// How many recent changes per tenant a store keeps for [`StatusStore::changes_since`].
pub const TENANT_LOG_LEN: usize = 1024;

/// Whether the store still holds what it held at the last check (see [`StatusStore::check_epoch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Epoch {
    /// The sentinel was present: nothing suggests data loss.
    Intact(String),
    /// The sentinel was missing (a restarted or flushed Redis); a new one was written. The read
    /// model must be repaired from the database.
    Lost(String),
}

/// Retention and migration settings shared by every store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Sliding TTL of in-progress records, refreshed by every write and heartbeat.
    pub live_ttl: Duration,
    /// Optional bound on how long terminal records are kept; `None` keeps them.
    pub terminal_retention: Option<Duration>,
    /// How long a deletion tombstone keeps refusing late writes.
    pub tombstone_ttl: Duration,
    /// Read the old system's `tenant:{tid}:video:{vid}:status|progress` keys on a miss (Redis
    /// only; off by default).
    pub legacy_read: bool,
    /// An in-process cache of reads kept exact by the change feed (Redis only; off by
    /// default, and always off with `legacy_read`). See `redis/cache.rs`.
    pub read_cache: Option<ReadCacheConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            live_ttl: Duration::from_secs(6 * 3600),
            terminal_retention: None,
            tombstone_ttl: Duration::from_secs(24 * 3600),
            legacy_read: false,
            read_cache: None,
        }
    }
}

/// One write's answer from [`StatusStore::apply_many_durable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    pub outcome: Outcome,
    /// `false`: the server that took the write has not shown that a replica holds it; a
    /// failover now could lose it (and a store answers `Stale` or `Applied` again when the
    /// same write is sent once more, so resending is safe).
    pub replicated: bool,
}

/// A failure to talk to the store (as opposed to a write being stale or rejected, which is an
/// [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read model unavailable: {0}")]
    Unavailable(String),
    #[error("read model refused its configuration: {0}")]
    Config(String),
    #[error("read model returned something unexpected: {0}")]
    Protocol(String),
}

/// Receives every change applied after it was created. A receiver that falls more than the
/// channel's capacity behind gets `Lagged` and must re-read what it watches.
pub type Subscription = broadcast::Receiver<Change>;

/// The read model. See the crate docs.
#[async_trait::async_trait]
pub trait StatusStore: Send + Sync + std::fmt::Debug + 'static {
    /// Applies one fenced write atomically.
    async fn apply(&self, write: &Write) -> Result<Outcome, StoreError>;

    /// Applies several writes in one round trip, each fenced on its own; outcomes in order.
    async fn apply_many(&self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError>;

    /// [`StatusStore::apply_many`] that also says, write by write, whether the write is known
    /// to survive the loss of the server that took it ([`Durable::replicated`]). On a Redis
    /// Cluster a write counts as replicated once a replica of its master acknowledged it
    /// (`WAIT 1`); a write no replica acknowledged in time is lost if its master dies before
    /// replicating it, so the outbox relay keeps its row and sends it again. Stores with
    /// nothing to fail over to (in-process, one Redis server) call every write replicated.
    async fn apply_many_durable(&self, writes: &[Write]) -> Result<Vec<Durable>, StoreError> {
        Ok(self
            .apply_many(writes)
            .await?
            .into_iter()
            .map(|outcome| Durable {
                outcome,
                replicated: true,
            })
            .collect())
    }

    /// The current snapshot of one task, or `None` when unknown (never written, expired, deleted).
    async fn get(&self, key: &TaskKey) -> Result<Option<Snapshot>, StoreError>;

    /// [`StatusStore::get`] for a reader that already saw revision `at_least` of this task
    /// (from another API replica, say): an answer from a cache that is behind it is not used,
    /// the store itself is asked. The answer can still be older when the store itself is (it
    /// lost writes); callers decide what to show then.
    async fn get_at_least(
        &self,
        key: &TaskKey,
        at_least: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let _ = at_least;
        self.get(key).await
    }

    /// Snapshots of many tasks of one tenant in one round trip, in the order asked.
    async fn get_many(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError>;

    /// Every change applied from now on (by any process sharing the store) — on a Redis
    /// Cluster, of the tenants this process follows (see [`StatusStore::follow`]).
    fn subscribe(&self) -> Subscription;

    /// Makes sure the changes of `tenant` reach [`StatusStore::subscribe`]; returns once they
    /// do. Only a Redis Cluster store needs it (each tenant has its own sharded channel there);
    /// elsewhere every tenant's changes are always delivered. Call it before reading the
    /// snapshot a stream of changes continues from.
    async fn follow(&self, tenant: TenantId) -> Result<(), StoreError> {
        let _ = tenant;
        Ok(())
    }

    /// Counts interruptions of the change feed; subscribers may have missed changes during
    /// each, so watchers re-read (with [`StatusStore::changes_since`]) when it moves. A store
    /// whose feed cannot be interrupted (in-process) returns a receiver that never changes.
    fn feed_gaps(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }

    /// The tasks of `tenant` that changed after `cursor` (exclusive), at most `limit`, oldest
    /// first. Each tenant keeps about [`TENANT_LOG_LEN`] recent changes; a cursor older than that
    /// yields [`ChangesSince::Expired`]. This is what lets an SSE client resume after a
    /// disconnect without losing a terminal state.
    async fn changes_since(
        &self,
        tenant: TenantId,
        cursor: &str,
        limit: usize,
    ) -> Result<ChangesSince, StoreError>;

    /// The newest position in `tenant`'s change log (`None`: the tenant has no log yet). Read
    /// *before* a full snapshot, it is the position to resume from after that snapshot: every
    /// change after it is still to come (the SSE `reset` event carries it as its id). The
    /// default (for stores without a log) is `None`.
    async fn log_head(&self, tenant: TenantId) -> Result<Option<String>, StoreError> {
        let _ = tenant;
        Ok(None)
    }

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Checks the data-loss sentinel, writing a new one when it is missing.
    async fn check_epoch(&self) -> Result<Epoch, StoreError>;

    /// A short name for logs and metrics (`redis`, `memory`).
    fn backend(&self) -> &'static str;
}

/// The store as the rest of the program holds it.
pub type SharedStore = Arc<dyn StatusStore>;

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Capacity of the in-process change channel each store keeps for its subscribers.
pub const CHANGE_CHANNEL_CAPACITY: usize = 4096;
