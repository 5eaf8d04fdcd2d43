//! The change feed on a Redis Cluster: sharded pub/sub, one channel per tenant.
//!
//! On a single node every write script `PUBLISH`es to one channel and the feed (`listener.rs`)
//! hears every tenant. On a cluster a `PUBLISH` is copied to every node over the cluster bus,
//! whoever listens; with `SPUBLISH` the message stays on the shard that owns the channel's slot
//! (its master and replicas). So on a cluster the scripts `SPUBLISH` to the tenant's channel
//! ([`KeySpace::tenant_changes_channel`], in the tenant's hash tag: Redis refuses a script that
//! publishes to a shard channel outside the slot of its keys), and a process hears only the
//! tenants it *follows* ([`ShardFeed::follow`]): an API replica follows a tenant the first time
//! one of its polls or streams asks for it, and keeps following it while it runs (bounded by the
//! tenants it serves). docs/scaling.md has the measured difference.
//!
//! # Exactness
//!
//! The read cache serves a tenant only once its channel is confirmed subscribed (before that,
//! reads go to Redis and fill nothing), so every change after the cached read is announced.
//! Messages of one channel arrive in publication order (one node, one connection). When any
//! node's connection drops (a failover, a restart) the cluster client reports it; the feed then
//! empties the cache, marks every tenant unconfirmed, subscribes every followed channel again
//! (the client routes each to the slot's current master, retrying while a failover is under way),
//! and only then serves from the cache again and counts a gap, so SSE streams re-read the change
//! log after the feed is back. A `SUNSUBSCRIBE` the feed did not ask for (Redis sends one when a
//! slot moves) is handled the same way.
//!
//! Not detected: a node that stops answering without closing its connection (a blackholed
//! host). The single-node feed pings for that; here the cluster client's own timeouts apply to
//! commands, and the cache entries still age out after `max_age`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{PushInfo, PushKind, Value};
use futures::future::join_all;
use jobpulse_domain::TenantId;
use jobpulse_domain::keys::KeySpace;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::cache::ReadCache;
use super::errors::redis_error;
use super::record::parse_change;
use crate::{Change, StoreError, Subscription};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Aborts the tasks when the store goes away.
#[derive(Debug)]
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Inner {
    /// A client whose connections speak RESP3 and hand push messages to `pushes`.
    client: ClusterClient,
    pushes: Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
    keys: KeySpace,
    changes: broadcast::Sender<Change>,
    gaps: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    /// Followed tenants; `true` once their channel is confirmed subscribed in this session.
    followed: Mutex<HashMap<TenantId, bool>>,
    /// Bumped when a resync starts; a confirmation from an older session is not trusted.
    session: AtomicU64,
    resync: Notify,
    cache: Option<Arc<ReadCache>>,
    timeout: Duration,
}

/// See the module docs.
pub(super) struct ShardFeed {
    inner: Arc<Inner>,
    tasks: OnceLock<AbortOnDrop>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ShardFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardFeed")
            .field("followed", &self.inner.lock_followed().len())
            .field("started", &self.tasks.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock_followed(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, bool>> {
        self.followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subscription connection, opened on first use.
    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &*conn {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, self.client.get_async_connection())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "the Redis Cluster did not answer within {:?}",
                    self.timeout
                ))
            })?
            .map_err(redis_error)?;
        *conn = Some(c.clone());
        Ok(c)
    }

    async fn ssubscribe(&self, tenant: TenantId) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let channel = self.keys.tenant_changes_channel(tenant);
        tokio::time::timeout(self.timeout, conn.ssubscribe(&channel))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "SSUBSCRIBE {channel} not confirmed within {:?}",
                    self.timeout
                ))
            })?
            .map_err(redis_error)
    }

    fn forward(&self, msg: PushInfo) {
        match msg.kind {
            PushKind::SMessage => {
                let payload = match msg.data.get(1) {
                    Some(Value::BulkString(b)) => b.as_slice(),
                    _ => &[],
                };
                match parse_change(payload) {
                    Some(change) => {
                        if let Some(cache) = &self.cache {
                            cache.apply(&change);
                        }
                        let _ = self.changes.send(change);
                    }
                    None => {
                        tracing::debug!("ignoring an unreadable change message");
                        self.resync.notify_one();
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::warn!(
                    "a Redis Cluster connection of the change feed dropped; subscribing again \
                     (changes until then are re-read from the change log)"
                );
                self.stop_serving();
                self.resync.notify_one();
            }
            // We never unsubscribe: Redis took the channel away (its slot moved).
            PushKind::SUnsubscribe => {
                tracing::info!("Redis moved a change channel's slot; subscribing again");
                self.stop_serving();
                self.resync.notify_one();
            }
            _ => {}
        }
    }

    /// Until the resync is done: nothing from the cache, every tenant unconfirmed.
    fn stop_serving(&self) {
        self.session.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.lost();
        }
        for confirmed in self.lock_followed().values_mut() {
            *confirmed = false;
        }
    }

    /// Subscribes every followed channel again; `Ok` once all are confirmed.
    async fn resubscribe_all(&self) -> Result<(), StoreError> {
        let session = self.session.load(Ordering::Acquire);
        let tenants: Vec<TenantId> = self.lock_followed().keys().copied().collect();
        let results = join_all(tenants.iter().map(|t| self.ssubscribe(*t))).await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e);
        }
        if self.session.load(Ordering::Acquire) != session {
            return Err(StoreError::Unavailable(
                "the change feed dropped again while subscribing".into(),
            ));
        }
        let mut followed = self.lock_followed();
        for t in tenants {
            followed.insert(t, true);
        }
        Ok(())
    }
}

async fn read_pushes(inner: Arc<Inner>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(msg) = pushes.recv().await {
        inner.forward(msg);
    }
}

async fn resync_loop(inner: Arc<Inner>) {
    loop {
        inner.resync.notified().await;
        let mut backoff = MIN_BACKOFF;
        let mut failures = 0u32;
        loop {
            match inner.resubscribe_all().await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "change feed: subscribing again failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(cache) = &inner.cache {
            cache.connected();
        }
        inner.gaps.send_modify(|n| *n += 1);
        tracing::info!("change feed subscribed again");
    }
}

impl ShardFeed {
    pub(super) fn new(
        client: ClusterClient,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        keys: KeySpace,
        changes: broadcast::Sender<Change>,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
        cache: Option<Arc<ReadCache>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                pushes: Mutex::new(Some(pushes)),
                conn: tokio::sync::Mutex::new(None),
                keys,
                changes,
                gaps: watch::channel(0).0,
                ready: watch::channel(false).0,
                followed: Mutex::new(HashMap::new()),
                session: AtomicU64::new(0),
                resync: Notify::new(),
                cache,
                timeout,
            }),
            tasks: OnceLock::new(),
            runtime,
        }
    }

    fn start(&self) {
        self.tasks.get_or_init(|| {
            let pushes = self
                .inner
                .pushes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let mut tasks = vec![self.runtime.spawn(resync_loop(self.inner.clone()))];
            if let Some(pushes) = pushes {
                tasks.push(self.runtime.spawn(read_pushes(self.inner.clone(), pushes)));
            }
            let inner = self.inner.clone();
            tasks.push(self.runtime.spawn(async move {
                // Connect now so the first follow is one round trip.
                let mut backoff = MIN_BACKOFF;
                while let Err(e) = inner.connection().await {
                    tracing::debug!(error = %e, "change feed: the cluster is not reachable yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                if let Some(cache) = &inner.cache {
                    cache.connected();
                }
                inner.ready.send_replace(true);
            }));
            AbortOnDrop(tasks)
        });
    }

    pub(super) fn subscribe(&self) -> Subscription {
        let rx = self.inner.changes.subscribe();
        self.start();
        rx
    }

    pub(super) fn gaps(&self) -> watch::Receiver<u64> {
        self.inner.gaps.subscribe()
    }

    /// Waits until the feed's connection is open (at most `within`).
    pub(super) async fn wait_ready(&self, within: Duration) -> bool {
        self.start();
        let mut rx = self.inner.ready.subscribe();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }

    /// Whether `tenant`'s changes are being received (so its reads may be cached).
    pub(super) fn is_following(&self, tenant: TenantId) -> bool {
        *self.inner.ready.borrow()
            && self
                .inner
                .lock_followed()
                .get(&tenant)
                .copied()
                .unwrap_or(false)
    }

    /// Makes sure `tenant`'s changes reach [`ShardFeed::subscribe`]rs; returns once they do.
    pub(super) async fn follow(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.start();
        let session = self.inner.session.load(Ordering::Acquire);
        match self.inner.lock_followed().entry(tenant) {
            std::collections::hash_map::Entry::Occupied(e) if *e.get() => return Ok(()),
            std::collections::hash_map::Entry::Occupied(_) => {}
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(false);
            }
        }
        self.inner.ssubscribe(tenant).await?;
        if self.inner.session.load(Ordering::Acquire) == session {
            self.inner.lock_followed().insert(tenant, true);
            return Ok(());
        }
        // A resync started meanwhile; it confirms every followed tenant, this one included.
        let mut gaps = self.inner.gaps.subscribe();
        let wait = async {
            loop {
                if self.is_following(tenant) {
                    return true;
                }
                if gaps.changed().await.is_err() {
                    return false;
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, wait).await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "the change feed is resubscribing after a Redis Cluster failover".into(),
            )),
        }
    }

    /// Starts following `tenant` without waiting (a read that found it not followed yet).
    pub(super) fn follow_later(self: &Arc<Self>, tenant: TenantId) {
        if self.inner.lock_followed().contains_key(&tenant) {
            return;
        }
        let me = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = me.follow(tenant).await {
                tracing::debug!(error = %e, %tenant, "change feed: following a tenant failed");
                // Let the next read try again.
                me.inner.lock_followed().remove(&tenant);
            }
        });
    }
}
