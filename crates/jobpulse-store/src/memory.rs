//! The in-process store: embedded mode's read model and the reference model for the Redis one.
//!
//! A mutex-guarded map applies [`decide`] directly, so it is correct by construction; TTLs are
//! kept as deadlines and enforced lazily on access (plus an occasional sweep), which is what
//! Redis does too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use jobpulse_domain::{Decision, Outcome, Stored, TaskId, TaskKey, TenantId, Write, decide};
use tokio::sync::broadcast;

use crate::{
    CHANGE_CHANNEL_CAPACITY, Change, ChangesSince, Epoch, Snapshot, StatusStore, StoreConfig,
    StoreError, Subscription, TENANT_LOG_LEN, metrics, now_micros,
};

const BACKEND: &str = "memory";

#[derive(Debug)]
struct Entry {
    stored: Stored,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<TaskKey, Entry>,
    writes_since_sweep: u32,
    /// Per-tenant change logs, at most `TENANT_LOG_LEN` entries each.
    logs: HashMap<TenantId, TenantLog>,
    /// Log ids are global (so a cursor is meaningful in any tenant's log) and only grow.
    next_log_id: u64,
}

#[derive(Debug, Default)]
struct TenantLog {
    entries: VecDeque<(u64, TaskId)>,
    /// Id of the newest entry dropped to keep the log short; a cursor below it may miss changes.
    trimmed_upto: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    config: StoreConfig,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    epoch: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

impl MemoryStore {
    pub fn new(config: StoreConfig) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        Self {
            config,
            inner: Mutex::new(Inner::default()),
            changes,
            epoch: format!("memory-{}", now_micros()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written (every mutation is a
        // single insert), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expiry_for(&self, stored: &Stored, now: Instant) -> Option<Instant> {
        match &stored.state {
            None => Some(now + self.config.tombstone_ttl),
            Some(s) if s.status.is_terminal() => self.config.terminal_retention.map(|d| now + d),
            Some(_) => Some(now + self.config.live_ttl),
        }
    }

    fn apply_locked(&self, inner: &mut Inner, write: &Write, now: Instant) -> Outcome {
        let current = match inner.map.get(&write.key) {
            Some(e) if e.expires.is_some_and(|t| t <= now) => {
                inner.map.remove(&write.key);
                None
            }
            Some(e) => Some(&e.stored),
            None => None,
        };
        let decision = decide(current, write, now_micros());
        match &decision {
            Decision::Write(stored) => {
                let expires = self.expiry_for(stored, now);
                inner.map.insert(
                    write.key.clone(),
                    Entry {
                        stored: stored.clone(),
                        expires,
                    },
                );
                let snapshot = stored.state.clone().map(|state| Snapshot {
                    fence: stored.fence,
                    rev: stored.rev,
                    state,
                });
                inner.next_log_id += 1;
                let id = inner.next_log_id;
                let log = inner.logs.entry(write.key.tenant).or_default();
                log.entries.push_back((id, write.key.task.clone()));
                if log.entries.len() > TENANT_LOG_LEN
                    && let Some((dropped, _)) = log.entries.pop_front()
                {
                    log.trimmed_upto = dropped;
                }
                // No subscribers is fine: nobody is watching.
                let _ = self.changes.send(Change {
                    key: write.key.clone(),
                    rev: stored.rev,
                    snapshot,
                    cursor: id.to_string(),
                });
            }
            Decision::Refresh { .. } => {
                if let Some(e) = inner.map.get_mut(&write.key) {
                    e.expires = Some(now + self.config.live_ttl);
                }
            }
            Decision::Stale { .. } | Decision::Reject(_) => {}
        }
        decision.outcome()
    }

    fn sweep(&self, inner: &mut Inner, now: Instant) {
        inner.writes_since_sweep += 1;
        if inner.writes_since_sweep >= 1024 {
            inner.writes_since_sweep = 0;
            inner.map.retain(|_, e| e.expires.is_none_or(|t| t > now));
        }
    }

    fn read(inner: &Inner, key: &TaskKey, now: Instant) -> Option<Snapshot> {
        let e = inner.map.get(key)?;
        if e.expires.is_some_and(|t| t <= now) {
            return None;
        }
        let state = e.stored.state.clone()?;
        Some(Snapshot {
            fence: e.stored.fence,
            rev: e.stored.rev,
            state,
        })
    }

    /// Number of live records (tombstones and expired entries excluded); for tests and metrics.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .map
            .values()
            .filter(|e| e.stored.state.is_some() && e.expires.is_none_or(|t| t > now))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything, as a restarted Redis would; used by tests of repair.
    pub fn clear(&self) {
        self.lock().map.clear();
    }
}

#[async_trait::async_trait]
impl StatusStore for MemoryStore {
    async fn apply(&self, write: &Write) -> Result<Outcome, StoreError> {
        metrics::op(BACKEND, "apply");
        let now = Instant::now();
        let mut inner = self.lock();
        let out = self.apply_locked(&mut inner, write, now);
        self.sweep(&mut inner, now);
        metrics::outcome(BACKEND, &out);
        Ok(out)
    }

    async fn apply_many(&self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        metrics::op(BACKEND, "apply_many");
        let now = Instant::now();
        let mut inner = self.lock();
        let out: Vec<Outcome> = writes
            .iter()
            .map(|w| self.apply_locked(&mut inner, w, now))
            .collect();
        self.sweep(&mut inner, now);
        for o in &out {
            metrics::outcome(BACKEND, o);
        }
        Ok(out)
    }

    async fn get(&self, key: &TaskKey) -> Result<Option<Snapshot>, StoreError> {
        metrics::op(BACKEND, "get");
        Ok(Self::read(&self.lock(), key, Instant::now()))
    }

    async fn get_many(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        metrics::op(BACKEND, "get_many");
        let now = Instant::now();
        let inner = self.lock();
        Ok(tasks
            .iter()
            .map(|t| {
                let key = TaskKey {
                    tenant,
                    task: t.clone(),
                };
                Self::read(&inner, &key, now)
            })
            .collect())
    }

    fn subscribe(&self) -> Subscription {
        metrics::op(BACKEND, "subscribe");
        self.changes.subscribe()
    }

    async fn log_head(&self, tenant: TenantId) -> Result<Option<String>, StoreError> {
        metrics::op(BACKEND, "log_head");
        // Log ids are issued from one counter for every tenant, so the last one issued is a
        // valid position in any tenant's log.
        let inner = self.lock();
        let _ = tenant;
        Ok((inner.next_log_id > 0).then(|| inner.next_log_id.to_string()))
    }

    async fn changes_since(
        &self,
        tenant: TenantId,
        cursor: &str,
        limit: usize,
    ) -> Result<ChangesSince, StoreError> {
        metrics::op(BACKEND, "changes_since");
        let Ok(after) = cursor.parse::<u64>() else {
            return Ok(ChangesSince::Expired);
        };
        let inner = self.lock();
        // A cursor from the future was not issued by this store (e.g. before a restart).
        if after > inner.next_log_id {
            return Ok(ChangesSince::Expired);
        }
        let Some(log) = inner.logs.get(&tenant) else {
            return Ok(ChangesSince::Changes(Vec::new()));
        };
        if after < log.trimmed_upto {
            return Ok(ChangesSince::Expired);
        }
        Ok(ChangesSince::Changes(
            log.entries
                .iter()
                .filter(|(id, _)| *id > after)
                .take(limit)
                .map(|(id, t)| (id.to_string(), t.clone()))
                .collect(),
        ))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        metrics::op(BACKEND, "ping");
        Ok(())
    }

    async fn check_epoch(&self) -> Result<Epoch, StoreError> {
        metrics::op(BACKEND, "check_epoch");
        // An in-process store cannot lose its data without the process (and its clients) going too.
        Ok(Epoch::Intact(self.epoch.clone()))
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jobpulse_domain::{Fence, State, VideoId, VideoStatus};

    use super::*;

    fn key(v: i64) -> TaskKey {
        TaskKey::video(
            TenantId::new(1).expect("valid"),
            VideoId::new(v).expect("valid"),
        )
    }

    #[tokio::test]
    async fn applies_reads_and_announces() {
        let store = MemoryStore::default();
        let mut sub = store.subscribe();
        let w = Write::set(
            key(1),
            Fence::new(1, 0, 1).expect("valid"),
            State::video(VideoStatus::Uploaded),
        )
        .expect("valid");
        let out = store.apply(&w).await.expect("applies");
        assert!(matches!(out, Outcome::Applied { .. }));
        let got = store.get(&key(1)).await.expect("reads");
        assert_eq!(got.map(|s| s.state.status.as_str()), Some("UPLOADED"));
        let change = sub.recv().await.expect("announced");
        assert_eq!(change.key, key(1));
        let many = store
            .get_many(
                TenantId::new(1).expect("valid"),
                &[key(2).task, key(1).task],
            )
            .await
            .expect("reads");
        assert!(many[0].is_none() && many[1].is_some());
        let other_tenant = store
            .get(&TaskKey::video(
                TenantId::new(2).expect("valid"),
                VideoId::new(1).expect("valid"),
            ))
            .await
            .expect("reads");
        assert!(other_tenant.is_none());
    }

    #[tokio::test]
    async fn in_progress_records_expire_and_terminal_ones_stay() {
        let store = MemoryStore::new(StoreConfig {
            live_ttl: Duration::from_millis(30),
            ..StoreConfig::default()
        });
        let f = Fence::new(1, 1, 1).expect("valid");
        let live = Write::set(key(1), f, State::video(VideoStatus::Processing)).expect("valid");
        let done = Write::set(key(2), f, State::video(VideoStatus::Ready)).expect("valid");
        store.apply(&live).await.expect("applies");
        store.apply(&done).await.expect("applies");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(store.get(&key(1)).await.expect("reads").is_none());
        assert!(store.get(&key(2)).await.expect("reads").is_some());
    }

    #[tokio::test]
    async fn changes_since_resumes_and_expires() {
        let store = MemoryStore::default();
        let t = TenantId::new(1).expect("valid");
        let f = |seq| Fence::new(1, 1, seq).expect("valid");
        let mut sub = store.subscribe();
        store
            .apply(&Write::set(key(1), f(1), State::video(VideoStatus::Processing)).expect("ok"))
            .await
            .expect("applies");
        let first = sub.recv().await.expect("announced").cursor;
        store
            .apply(&Write::set(key(2), f(1), State::video(VideoStatus::Processing)).expect("ok"))
            .await
            .expect("applies");
        let got = store.changes_since(t, &first, 10).await.expect("reads");
        assert_eq!(
            got,
            ChangesSince::Changes(vec![("2".to_owned(), key(2).task)])
        );
        assert_eq!(
            store.changes_since(t, "999", 10).await.expect("reads"),
            ChangesSince::Expired
        );
        assert_eq!(
            store.changes_since(t, "garbage", 10).await.expect("reads"),
            ChangesSince::Expired
        );
        for seq in 2..(TENANT_LOG_LEN as u64 + 5) {
            store
                .apply(
                    &Write::set(key(1), f(seq), State::video(VideoStatus::Processing)).expect("ok"),
                )
                .await
                .expect("applies");
        }
        assert_eq!(
            store.changes_since(t, &first, 10).await.expect("reads"),
            ChangesSince::Expired,
            "trimmed changes cannot be replayed"
        );
    }
}
