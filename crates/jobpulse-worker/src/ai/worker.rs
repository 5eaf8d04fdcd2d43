//! [`AiWorker`]: the loop that runs AI/tool jobs.
//!
//! Each of `concurrency` slots repeats: claim the oldest runnable job of `Queue::Ai` (the claim
//! commits RUNNING with its outbox row, published at once so pollers see RUNNING), run the job
//! type's handler under its timeout beside the lease's keep-alive ([`crate::lease`]), then write
//! the attempt's one state change (with [`Reporter::next_seq`] for a success, so it outranks every progress tick)
//! and publish it. A reaper task (every `reap_every`) turns jobs whose lease expired (a crashed
//! worker's) into RETRYING or FAILED; claims never take an expired job themselves, so the retry
//! of a lost attempt is always visible.
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
//! | the worker shuts down | `release`: RETRYING, runnable at once, no attempt used up (a cancel requested meanwhile wins) |
//!
//! Each attempt counts once in `jobpulse_worker_attempts_total{queue="ai", outcome}`, outcome one
//! of `done`, `other_terminal`, `rejected`, `failed`, `retry`, `cancelled`, `requeued`,
//! `no_handler`, `lost`.
//!
//! Every path that stops early cancels the attempt's token, so the handler's own threads and
//! loops stop too. All tasks the worker starts are owned (a `JoinSet`):
//! dropping [`AiWorker::run`]'s future stops everything, as a killed process would.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jobpulse_db::{
    AiOutcome, Caps, Claim, ClaimedTask, Db, FailOutcome, Queue, Relay, ReleaseOutcome, TenantCaps,
};
use jobpulse_domain::{JobStatus, State, WriteKind};
use jobpulse_media::MediaStorage;
use jobpulse_store::SharedStore;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{HandlerError, HandlerOutput, JobContext, Registry};
use crate::lease::{Lease, Settled, Stop, StopReason, publish};
use crate::progress::Reporter;

/// How an AI worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AiWorkerConfig {
    /// Lease owner name: `<hostname>-<pid>` by default.
    pub worker_id: String,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// Lease length; a worker that stops heartbeating loses its job after this long.
    pub lease: Duration,
    /// Heartbeat period (a third of the lease by default).
    pub heartbeat_every: Duration,
    /// Cluster-wide concurrency caps, counted at claim time; default: the per-tenant cap of
    /// [`TenantCaps::default`] (4 AI jobs of one tenant at once).
    pub caps: Caps,
    /// Longest wait for a wake-up before looking for work again (bounds how late a retry whose
    /// backoff ended starts).
    pub idle_wait: Duration,
    /// Reaper period.
    pub reap_every: Duration,
    /// Least time between two progress writes of one attempt (step changes always go through).
    pub progress_interval: Duration,
    /// How long the initial passwords of a finished import are kept for staff to download
    /// (`None`: forever). See `jobpulse_db::retention`.
    pub credentials_retention: Option<Duration>,
    /// How often the worker purges expired initial passwords.
    pub purge_every: Duration,
    /// How long the uploaded input of an ended job (an import's spreadsheet) is kept; `None`:
    /// forever. Default 0: deleted as soon as the job ends. See [`super::inputs`].
    pub input_retention: Option<Duration>,
    /// Period of the input pass beside the one after each attempt of this worker.
    pub input_purge_every: Duration,
}

/// Inputs of ended jobs are deleted at once by default.
pub const DEFAULT_INPUT_RETENTION: Duration = Duration::ZERO;

/// Initial passwords of a finished import are kept this long (7 days) by default.
pub const DEFAULT_CREDENTIALS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for AiWorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: 2,
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            caps: Caps::per_tenant(TenantCaps::default().ai),
            idle_wait: Duration::from_secs(5),
            reap_every: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
            credentials_retention: Some(DEFAULT_CREDENTIALS_RETENTION),
            purge_every: Duration::from_secs(3600),
            input_retention: Some(DEFAULT_INPUT_RETENTION),
            input_purge_every: Duration::from_secs(60),
        }
    }
}

impl AiWorkerConfig {
    /// Sets the lease and a heartbeat of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_every = lease / 3;
        self
    }
}

/// `<hostname>-<pid>`, reduced to characters a lease owner may hold.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(100)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

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
    /// returns.
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
    pub fn new(
        db: Db,
        store: SharedStore,
        storage: MediaStorage,
        registry: Registry,
        config: AiWorkerConfig,
    ) -> Self {
        let relay = Relay::new(db.clone(), store.clone());
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

    /// Runs until `shutdown` is cancelled and every running job was given back.
    pub async fn run(self, shutdown: CancellationToken) {
        let c = &self.inner.config;
        tracing::info!(
            worker = %c.worker_id,
            concurrency = c.concurrency,
            job_types = ?self.inner.registry.job_types(),
            "AI worker started"
        );
        let mut tasks = JoinSet::new();
        {
            let db = self.inner.db.clone();
            let (every, stop) = (c.reap_every, shutdown.clone());
            tasks.spawn(async move { db.run_reaper(Queue::Ai, every, stop).await });
        }
        if let Some(keep) = c.credentials_retention {
            let db = self.inner.db.clone();
            let (every, stop) = (c.purge_every, shutdown.clone());
            tasks.spawn(async move { purge_credentials(db, keep, every, stop).await });
        }
        if let Some(keep) = c.input_retention {
            let (db, storage) = (self.inner.db.clone(), self.inner.storage.clone());
            let (every, due, stop) = (
                c.input_purge_every,
                self.inner.inputs_due.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                super::inputs::purge_inputs(db, storage, keep, every, due, stop).await;
            });
        }
        for _ in 0..c.concurrency.max(1) {
            let inner = self.inner.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move { inner.slot(stop).await });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                tracing::error!(error = %e, "an AI worker task panicked");
            }
        }
        tracing::info!(worker = %self.inner.config.worker_id, "AI worker stopped");
    }

    /// Runs the worker on the current runtime until the handle stops it.
    pub fn spawn(self) -> AiWorkerHandle {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        AiWorkerHandle { shutdown, task }
    }
}

impl Inner {
    /// One slot: claim, run, repeat.
    async fn slot(&self, shutdown: CancellationToken) {
        let c = &self.config;
        let mut claim_failing = false;
        while !shutdown.is_cancelled() {
            // The lease runs from the claim statement, which happens after this instant.
            let asked = Instant::now();
            match self
                .db
                .claim(Queue::Ai, &c.worker_id, c.lease, c.caps)
                .await
            {
                Ok(Some(claim)) => {
                    claim_failing = false;
                    // Every line of the attempt (handler, heartbeats, final write) carries the
                    // tenant, the job and the attempt.
                    let span = match &claim.task {
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
                    };
                    self.run_claim(claim, asked, &shutdown)
                        .instrument(span)
                        .await;
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.db.wait_for_work(Queue::Ai, c.idle_wait) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    if !claim_failing {
                        tracing::warn!(error = %e, "claiming an AI job failed; retrying");
                        claim_failing = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(c.idle_wait.min(Duration::from_secs(1))) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    async fn run_claim(&self, claim: Claim, claimed_at: Instant, shutdown: &CancellationToken) {
        let lease = Lease::new(&self.db, &self.relay, &claim);
        publish(&self.relay, std::slice::from_ref(&claim.outbox), "claim").await;
        let ClaimedTask::Ai(job) = &claim.task else {
            tracing::error!("the AI queue handed out a video job");
            return;
        };
        let Some(handler) = self.registry.get(job.job_type.as_str()).cloned() else {
            let message = format!(
                "no handler for job type `{}` in this worker (known: {})",
                job.job_type,
                self.registry.job_types().join(", ")
            );
            tracing::error!(job.id = %job.job_id, "job.type" = %job.job_type, "{message}");
            let outcome = lease.fail(&message, false).await;
            count(if outcome.is_ok() {
                "no_handler"
            } else {
                "lost"
            });
            return;
        };

        let base = match &claim.outbox.write.kind {
            WriteKind::Set(s) => s.clone(),
            _ => {
                let mut s = State::job(JobStatus::Running, job.job_type.clone());
                s.attempt = Some(claim.attempt());
                s
            }
        };
        let reporter = Arc::new(
            Reporter::new(
                self.store.clone(),
                claim.key.clone(),
                claim.fence,
                handler.plan(),
                base,
            )
            .with_min_interval(self.config.progress_interval),
        );
        let stop = Stop::new();
        let ctx = JobContext {
            job: job.clone(),
            db: self.db.clone(),
            storage: self.storage.clone(),
            reporter: reporter.clone(),
            cancel: stop.token().clone(),
        };

        let timeout = handler.timeout();
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            "job attempt started"
        );
        let run = AssertUnwindSafe(tokio::time::timeout(timeout, handler.run(&ctx))).catch_unwind();
        let keep_alive =
            lease.keep_alive(self.config.heartbeat_every, &reporter, &stop, claimed_at);
        let result = tokio::select! {
            biased;
            () = stop.token().cancelled() => None,
            () = shutdown.cancelled() => {
                stop.stop(StopReason::Shutdown);
                None
            }
            r = run => Some(r),
            never = keep_alive => match never {},
        };
        // Whatever the handler left running (threads, producers) watches this token.
        stop.token().cancel();
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            "job attempt stopped"
        );

        let outcome = match lease.settle(&stop, result).await {
            Settled::Lost => {
                tracing::info!(job.id = %job.job_id, attempt = claim.attempt(), "lease lost; attempt abandoned");
                "lost"
            }
            Settled::Cancel => match lease.cancelled().await {
                Ok(()) => "cancelled",
                Err(_) => "lost",
            },
            Settled::Release => {
                let reason = "interrupted: the worker stopped before the job finished";
                match lease.release(reason).await {
                    Ok(ReleaseOutcome::Released) => "requeued",
                    Ok(ReleaseOutcome::Cancelled) => "cancelled",
                    Err(_) => "lost",
                }
            }
            Settled::Finished(Err(_panic)) => {
                tracing::error!(job.id = %job.job_id, "job.type" = %job.job_type, "handler panicked");
                let e = HandlerError::Permanent("internal error".to_owned());
                failed(&lease, &reporter, &e).await
            }
            Settled::Finished(Ok(Err(_elapsed))) => {
                let e = HandlerError::Transient(format!("timed out after {}", human(timeout)));
                failed(&lease, &reporter, &e).await
            }
            Settled::Finished(Ok(Ok(Ok(output)))) => complete(&lease, &reporter, output).await,
            Settled::Finished(Ok(Ok(Err(e)))) => failed(&lease, &reporter, &e).await,
        };
        count(outcome);
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            outcome, "job attempt ended"
        );
        self.inputs_due.notify_one();
    }
}

/// The final write of a handler's error.
async fn failed(lease: &Lease<'_>, reporter: &Reporter, e: &HandlerError) -> &'static str {
    match e {
        HandlerError::BadInput(message) => {
            let outcome = AiOutcome {
                status: JobStatus::RejectedBadInput,
                full_result: None,
                read_result: None,
                error_message: Some(message.clone()),
            };
            finish(lease, outcome, reporter.next_seq(), "rejected").await
        }
        HandlerError::Permanent(m) => match lease.fail(m, false).await {
            Ok(_) => "failed",
            Err(_) => "lost",
        },
        HandlerError::Transient(m) => match lease.fail(m, true).await {
            Ok(FailOutcome::Retrying { .. }) => "retry",
            Ok(FailOutcome::Dead) => "failed",
            Err(_) => "lost",
        },
    }
}

async fn complete(lease: &Lease<'_>, reporter: &Reporter, out: HandlerOutput) -> &'static str {
    if !out.status.is_terminal() || out.status == JobStatus::Failed {
        let e = HandlerError::Permanent(format!(
            "the handler answered status {}, which does not end a job",
            out.status.as_str()
        ));
        return failed(lease, reporter, &e).await;
    }
    let label = if out.status == JobStatus::Done {
        "done"
    } else {
        "other_terminal"
    };
    let outcome = AiOutcome {
        status: out.status,
        full_result: Some(out.full_result),
        read_result: Some(out.read_result),
        error_message: out.error_message,
    };
    finish(lease, outcome, reporter.next_seq(), label).await
}

/// `complete_ai_job` and publish.
async fn finish(
    lease: &Lease<'_>,
    outcome: AiOutcome,
    seq: u64,
    label: &'static str,
) -> &'static str {
    let done = lease
        .write("complete", || {
            lease.db.complete_ai_job(lease.claim, outcome.clone(), seq)
        })
        .await;
    if done.is_ok() { label } else { "lost" }
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

fn count(outcome: &'static str) {
    metrics::counter!("jobpulse_worker_attempts_total", "queue" => "ai", "outcome" => outcome)
        .increment(1);
}

/// `90 s`, `1500 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_and_durations() {
        let id = default_worker_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(!id.chars().any(char::is_control));
        let c = AiWorkerConfig::default().with_lease(Duration::from_secs(3));
        assert_eq!(c.heartbeat_every, Duration::from_secs(1));
        assert_eq!(human(Duration::from_secs(90)), "90 s");
        assert_eq!(human(Duration::from_millis(150)), "150 ms");
    }
}
