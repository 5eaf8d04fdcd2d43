//! Rebuilding the read model from the database.
//!
//! - [`repair`]: a full pass. Every live video and AI job, every terminal one updated within the
//!   retention window, and every recently deleted video (as a tombstone) is written as the exact
//!   write of its last state change (the fence stored in its row). Fencing makes it idempotent
//!   and safe while workers run: whatever is newer in the store answers `Stale`.
//! - [`Reconciler`]: a background task that checks the store's data-loss sentinel every few
//!   seconds and runs [`repair`] when the store lost its data (a restarted or flushed Redis).
//! - [`ReadRepair`]: a bounded, asynchronous single-task repair that a read path may request
//!   when it finds nothing. The handle holds only a channel sender and a rate limiter — no
//!   database handle — so the progress read path still cannot query the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobpulse_db::{AiJob, Db};
use jobpulse_domain::{Outcome, TaskKey, TenantId};
use jobpulse_store::{Epoch, SharedStore, StatusStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::relay::PublishError;

const PAGE: i64 = 500;
/// Deleted videos older than this get no tombstone (the store's default tombstone TTL).
const TOMBSTONE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What a repair pass wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub videos: u64,
    pub jobs: u64,
    pub tombstones: u64,
    pub applied: u64,
    pub stale: u64,
    pub rejected: u64,
}

impl RepairReport {
    fn count(&mut self, outcomes: &[Outcome]) {
        for o in outcomes {
            match o {
                Outcome::Applied { .. } => self.applied += 1,
                Outcome::Stale { .. } => self.stale += 1,
                Outcome::Rejected { .. } => self.rejected += 1,
            }
        }
    }
}

/// Rebuilds the read model from the database (see the module docs). `retention`: terminal
/// records older than this are left out (`None`: all of them).
pub async fn repair(
    db: &Db,
    store: &dyn StatusStore,
    retention: Option<Duration>,
) -> Result<RepairReport, PublishError> {
    let started = Instant::now();
    let now = jobpulse_db::now_ms();
    let since = retention.map_or(i64::MIN, |r| now.saturating_sub(ms(r)));
    let tomb_since = now.saturating_sub(ms(
        retention.map_or(TOMBSTONE_WINDOW, |r| r.min(TOMBSTONE_WINDOW))
    ));
    let mut report = RepairReport::default();

    let mut after = 0i64;
    loop {
        let page = db.videos_to_repair(after, since, tomb_since, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.get();
        let mut writes = Vec::with_capacity(page.len());
        for v in &page {
            if v.deleted_at_ms.is_some() {
                report.tombstones += 1;
            } else {
                report.videos += 1;
            }
            writes.push(v.write()?);
        }
        report.count(&store.apply_many(&writes).await?);
        if page.len() < PAGE as usize {
            break;
        }
    }

    let mut after = String::new();
    loop {
        let page = db.ai_jobs_to_repair(&after, since, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.job_id.as_str().to_owned();
        let writes = page
            .iter()
            .map(AiJob::write)
            .collect::<Result<Vec<_>, _>>()?;
        report.jobs += page.len() as u64;
        report.count(&store.apply_many(&writes).await?);
        if page.len() < PAGE as usize {
            break;
        }
    }

    metrics::counter!("jobpulse_repair_writes_total", "outcome" => "applied")
        .increment(report.applied);
    metrics::counter!("jobpulse_repair_writes_total", "outcome" => "stale").increment(report.stale);
    tracing::info!(
        videos = report.videos,
        jobs = report.jobs,
        tombstones = report.tombstones,
        applied = report.applied,
        stale = report.stale,
        rejected = report.rejected,
        elapsed_ms = started.elapsed().as_millis(),
        "read model repaired"
    );
    Ok(report)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Watches the store's data-loss sentinel and repairs the read model after a loss.
#[derive(Debug, Clone)]
pub struct Reconciler {
    db: Db,
    store: SharedStore,
    interval: Duration,
    retention: Option<Duration>,
}

impl Reconciler {
    pub fn new(db: Db, store: SharedStore) -> Self {
        Self {
            db,
            store,
            interval: Duration::from_secs(5),
            retention: None,
        }
    }

    /// How often the sentinel is checked (default 5 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Terminal records older than this are not rebuilt (default: all).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Runs until `shutdown`. A repair that fails is retried on the next tick until it succeeds.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pending = false;
        loop {
            match self.store.check_epoch().await {
                Ok(Epoch::Lost(epoch)) => {
                    tracing::warn!(
                        store = self.store.backend(),
                        %epoch,
                        "read model lost its data; repairing from the database"
                    );
                    metrics::counter!("jobpulse_read_model_lost_total").increment(1);
                    pending = true;
                }
                Ok(Epoch::Intact(_)) => {}
                Err(e) => tracing::warn!(error = %e, "read model epoch check failed"),
            }
            if pending {
                match repair(&self.db, self.store.as_ref(), self.retention).await {
                    Ok(_) => {
                        pending = false;
                        metrics::counter!("jobpulse_repair_runs_total", "outcome" => "ok")
                            .increment(1);
                    }
                    Err(e) => {
                        metrics::counter!("jobpulse_repair_runs_total", "outcome" => "error")
                            .increment(1);
                        tracing::warn!(error = %e, "repair failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Read-repair settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRepairConfig {
    /// Requests waiting at most; more are dropped.
    pub capacity: usize,
    /// Requests accepted per tenant per second; more are dropped.
    pub per_tenant_per_sec: u32,
    /// A key repaired this recently is not loaded again.
    pub dedupe_window: Duration,
}

impl Default for ReadRepairConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            per_tenant_per_sec: 20,
            dedupe_window: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
struct Limiter {
    per_sec: u32,
    windows: Mutex<HashMap<TenantId, (Instant, u32)>>,
}

impl Limiter {
    fn allow(&self, tenant: TenantId) -> bool {
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() > 10_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let slot = w.entry(tenant).or_insert((now, 0));
        if now.duration_since(slot.0) >= Duration::from_secs(1) {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_sec {
            return false;
        }
        slot.1 += 1;
        true
    }
}

/// Asks for one task to be re-published from the database. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct ReadRepair {
    tx: mpsc::Sender<TaskKey>,
    limiter: Arc<Limiter>,
}

impl ReadRepair {
    /// Queues a repair of `key`; `false` when it was dropped (queue full or tenant over its
    /// rate). Never blocks and never touches the database.
    pub fn request(&self, key: TaskKey) -> bool {
        if !self.limiter.allow(key.tenant) {
            metrics::counter!("jobpulse_read_repair_requests_total", "outcome" => "rate_limited")
                .increment(1);
            return false;
        }
        match self.tx.try_send(key) {
            Ok(()) => {
                metrics::counter!("jobpulse_read_repair_requests_total", "outcome" => "queued")
                    .increment(1);
                true
            }
            Err(_) => {
                metrics::counter!("jobpulse_read_repair_requests_total", "outcome" => "full")
                    .increment(1);
                false
            }
        }
    }
}

/// The task that serves [`ReadRepair`] requests.
#[derive(Debug)]
pub struct ReadRepairTask {
    rx: mpsc::Receiver<TaskKey>,
    db: Db,
    store: SharedStore,
    dedupe_window: Duration,
}

/// Creates a read-repair handle and the task that serves it (spawn [`ReadRepairTask::run`]).
pub fn read_repair(
    db: Db,
    store: SharedStore,
    config: ReadRepairConfig,
) -> (ReadRepair, ReadRepairTask) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    (
        ReadRepair {
            tx,
            limiter: Arc::new(Limiter {
                per_sec: config.per_tenant_per_sec,
                windows: Mutex::new(HashMap::new()),
            }),
        },
        ReadRepairTask {
            rx,
            db,
            store,
            dedupe_window: config.dedupe_window,
        },
    )
}

impl ReadRepairTask {
    /// Serves requests until `shutdown` or until every handle is dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut recent: HashMap<TaskKey, Instant> = HashMap::new();
        loop {
            let key = tokio::select! {
                k = self.rx.recv() => match k { Some(k) => k, None => return },
                () = shutdown.cancelled() => return,
            };
            let now = Instant::now();
            if recent.len() > 4096 {
                recent.retain(|_, t| now.duration_since(*t) < self.dedupe_window);
            }
            if recent
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < self.dedupe_window)
            {
                continue;
            }
            recent.insert(key.clone(), now);
            let outcome = self.repair_one(&key).await;
            let label = match &outcome {
                Ok(Some(Outcome::Applied { .. })) => "applied",
                Ok(Some(Outcome::Stale { .. })) => "stale",
                Ok(Some(Outcome::Rejected { .. })) => "rejected",
                Ok(None) => "missing",
                Err(_) => "error",
            };
            metrics::counter!("jobpulse_read_repair_total", "outcome" => label).increment(1);
            match outcome {
                Ok(Some(Outcome::Applied { .. })) => {
                    tracing::info!(tenant.id = %key.tenant, task = %key.task, "read-repaired");
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %key.tenant, task = %key.task, error = %e, "read repair failed");
                }
                _ => {}
            }
        }
    }

    async fn repair_one(&self, key: &TaskKey) -> Result<Option<Outcome>, PublishError> {
        let Some(write) = self.db.current_write(key).await? else {
            return Ok(None);
        };
        Ok(Some(self.store.apply(&write).await?))
    }
}
