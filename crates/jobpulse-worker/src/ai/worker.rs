//! [`AiWorker`]: the loop that runs AI/tool jobs.
//!
//! [`crate::claim_loop`] claims the oldest runnable jobs of `Queue::Ai`, up to `concurrency` at
//! once (the claim commits RUNNING with its outbox row, published at once so pollers see
//! RUNNING), reaps expired leases (a crashed worker's jobs become RETRYING or FAILED before they
//! run again), backs off while claims fail and shuts down. This worker supplies one attempt: the
//! job type's handler under its timeout beside the lease's keep-alive ([`crate::lease`]), then
//! the attempt's one state change (with
//! [`Reporter::next_seq`](crate::progress::Reporter::next_seq) for a success, so it outranks
//! every progress tick), published at once; and its side tasks, the purges of initial passwords
//! and of inputs.
//!
//! How an attempt ends:
//!
//! | what happened | write |
//! |---|---|
//! | handler output | `complete_ai_job` with its status and results |
//! | `HandlerError::BadInput` | `complete_ai_job` REJECTED_BAD_INPUT with the message |
//! | `HandlerError::Permanent`, a handler panic, a job type without a handler | `fail`, not retryable → FAILED |
//! | `HandlerError::Transient`, the type's timeout | `fail`, retryable → RETRYING, FAILED after the last attempt |
//! | heartbeat answers `CancelRequested` | `cancelled` → FAILED "cancelled" |
//! | heartbeat answers `LeaseLost`, or no heartbeat got through for a whole lease | nothing (someone newer may own the job) |
//! | the read model calls our progress stale | nothing, unless the database asks for a cancel acknowledgement |
//! | the worker shuts down | `release`: RETRYING, runnable at once, no attempt used up (a cancel requested meanwhile wins); the worker waits up to `shutdown_grace` for it |
//!
//! Each attempt counts once in `jobpulse_worker_attempts_total{queue="ai", outcome}` (and in
//! `jobpulse_worker_busy` and `jobpulse_worker_attempt_seconds`, as the claim loop counts every
//! kind's attempts), outcome one
//! of `done`, `other_terminal`, `rejected`, `failed`, `retry`, `cancelled`, `requeued`,
//! `no_handler`, `lost`.
//!
//! Every path that stops early cancels the attempt's token, so the handler's own threads and
//! loops stop too. All tasks the worker starts are owned (a `JoinSet`):
//! dropping [`AiWorker::run`]'s future stops everything, as a killed process would.

use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::{Claim, ClaimedTask, Db, Queue};
use jobpulse_media::MediaStorage;
use jobpulse_store::SharedStore;
use jobpulse_sync::Relay;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::Registry;
use crate::claim_loop::{self, Attempt, TaskKind};

mod attempt;
mod config;

pub use crate::claim_loop::default_worker_id;
pub use config::{AiWorkerConfig, DEFAULT_CREDENTIALS_RETENTION, DEFAULT_INPUT_RETENTION};

/// See the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AiWorker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    store: SharedStore,
    storage: MediaStorage,
    registry: Registry,
    relay: Relay,
    config: AiWorkerConfig,
    /// Notified when an attempt of this worker ended: the input pass runs ([`super::inputs`]).
    inputs_due: Arc<Notify>,
}

/// A worker running in this process (see [`AiWorker::spawn`]).
#[derive(Debug)]
pub struct AiWorkerHandle {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl AiWorkerHandle {
    /// Graceful stop: running jobs are cancelled and given back (RETRYING), then the worker
    /// returns (after at most `shutdown_grace` for the jobs).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("the AI worker panicked");
        }
    }

    /// Stops the worker as a crash would: no heartbeat, no final write; its jobs wait for their
    /// leases to expire.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl AiWorker {
    /// `relay` publishes the attempt's final writes right after they commit (as the video
    /// worker's does).
    pub fn new(
        db: Db,
        store: SharedStore,
        relay: Relay,
        storage: MediaStorage,
        registry: Registry,
        config: AiWorkerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                store,
                storage,
                registry,
                relay,
                config,
                inputs_due: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn config(&self) -> &AiWorkerConfig {
        &self.inner.config
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Runs until `shutdown` is cancelled and every running job was given back (or the
    /// shutdown grace ran out).
    pub async fn run(self, shutdown: CancellationToken) {
        let c = &self.inner.config;
        tracing::info!(
            worker = %c.common.worker_id,
            concurrency = c.common.concurrency,
            job_types = ?self.inner.registry.job_types(),
            "AI worker started"
        );
        let mut side = JoinSet::new();
        if let Some(keep) = c.credentials_retention {
            let db = self.inner.db.clone();
            let (every, stop) = (c.purge_every, shutdown.clone());
            side.spawn(async move { purge_credentials(db, keep, every, stop).await });
        }
        if let Some(keep) = c.input_retention {
            let (db, storage) = (self.inner.db.clone(), self.inner.storage.clone());
            let (every, due, stop) = (
                c.input_purge_every,
                self.inner.inputs_due.clone(),
                shutdown.clone(),
            );
            side.spawn(async move {
                super::inputs::purge_inputs(db, storage, keep, every, due, stop).await;
            });
        }
        let (db, relay) = (self.inner.db.clone(), self.inner.relay.clone());
        claim_loop::run(self.inner.clone(), db, relay, c.common.clone(), shutdown).await;
        while let Some(r) = side.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                tracing::error!(error = %e, "an AI worker task panicked");
            }
        }
        tracing::info!(worker = %c.common.worker_id, "AI worker stopped");
    }

    /// Runs the worker on the current runtime until the handle stops it.
    pub fn spawn(self) -> AiWorkerHandle {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        AiWorkerHandle { shutdown, task }
    }
}

impl TaskKind for Inner {
    const QUEUE: Queue = Queue::Ai;

    /// Every line of the attempt (handler, heartbeats, final write) carries the tenant, the job
    /// and the attempt.
    fn span(&self, claim: &Claim) -> tracing::Span {
        match &claim.task {
            ClaimedTask::Ai(job) => tracing::info_span!(
                "ai_attempt",
                tenant.id = %claim.tenant,
                job.id = %job.job_id,
                job.attempt = claim.attempt(),
                "job.type" = %job.job_type,
            ),
            ClaimedTask::Video { .. } => tracing::info_span!(
                "ai_attempt",
                tenant.id = %claim.tenant,
                job.attempt = claim.attempt(),
            ),
        }
    }

    async fn run_attempt(self: Arc<Self>, a: Attempt) -> &'static str {
        let outcome = self.run_claim(a.claim, a.claimed_at, &a.stop).await;
        self.inputs_due.notify_one();
        outcome
    }
}

/// Purges the initial passwords of imports that ended more than `keep` ago, every `every`,
/// until `shutdown` (several workers doing it is harmless: each pass is one transaction).
async fn purge_credentials(db: Db, keep: Duration, every: Duration, shutdown: CancellationToken) {
    const BATCH: u32 = 100;
    loop {
        loop {
            match db.purge_credentials(keep, BATCH).await {
                Ok(n) if n >= BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired initial passwords failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
