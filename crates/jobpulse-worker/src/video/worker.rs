//! The video worker loop: claims transcode jobs from the database queue and runs the
//! [`pipeline`](super::pipeline) for each, under a lease kept alive by heartbeats.
//!
//! # The loop ([`VideoWorker::run`])
//!
//! - Reaps expired leases of the video queue every `reap_every` (RETRY_WAIT becomes visible even
//!   when no other worker runs), *before* it claims. Claims never take an expired job
//!   themselves, so a lost worker's job always shows RETRY_WAIT before its next attempt.
//! - Claims up to `concurrency` attempts at once; when nothing is runnable it sleeps in
//!   [`Db::wait_for_work`] (LISTEN/NOTIFY on PostgreSQL) for at most `idle_wait`.
//! - Each claim's PROCESSING write is published at once (`Relay::publish_now`), so the state
//!   change shows before the first progress tick; when that fails the background relay, which
//!   must run somewhere, delivers it later.
//!
//! # One attempt (`attempt` module)
//!
//! A [`Reporter`](crate::progress::Reporter) writes progress straight to the read model; a
//! heartbeat every `heartbeat_every` extends the lease and slides the read-model TTL. The
//! heartbeat's answer can stop the attempt: a cancel request (acknowledged with
//! [`Db::cancelled`]), a lost lease, a read model that refuses our writes as stale, or — when
//! no heartbeat got through for a whole lease — a presumed lost lease. A lost attempt writes
//! nothing more: a zombie must not write.
//!
//! # Shutdown
//!
//! When the `shutdown` token fires, the loop stops claiming, stops every running attempt (ffmpeg
//! is killed through the pipeline's token), and each attempt gives its job back with
//! [`Db::release`] (runnable at once, no attempt used up). `run` waits up to `shutdown_grace`
//! for those final writes, then returns; attempts still running then are abandoned, and their
//! leases expire like a crashed worker's.
//!
//! # Work directories
//!
//! Each worker uses `work_root/<worker id>/`; at start it removes what dead workers on this
//! host left behind (see the `workdir` module).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::{Db, Queue};
use jobpulse_store::SharedStore;
use jobpulse_sync::Relay;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pipeline::PipelineContext;

mod attempt;
mod config;
mod workdir;

pub use config::{VideoWorkerConfig, WorkerError, default_worker_id};

use attempt::Shared;

use crate::lease::{Stop, StopReason};

/// The video worker. See the module docs.
#[derive(Debug)]
pub struct VideoWorker {
    db: Db,
    store: SharedStore,
    relay: Relay,
    ctx: PipelineContext,
    config: VideoWorkerConfig,
}

impl VideoWorker {
    /// `relay` publishes the worker's state changes at once; the background relay (which some
    /// process must run) covers for it when that fails.
    pub fn new(
        db: Db,
        store: SharedStore,
        relay: Relay,
        ctx: PipelineContext,
        config: VideoWorkerConfig,
    ) -> Self {
        Self {
            db,
            store,
            relay,
            ctx,
            config,
        }
    }

    pub fn config(&self) -> &VideoWorkerConfig {
        &self.config
    }

    /// Runs [`VideoWorker::run`] on the current runtime with a shutdown token of its own.
    pub fn spawn(self) -> WorkerHandle {
        let shutdown = CancellationToken::new();
        let work_dir = self.config.work_dir();
        let worker_id = self.config.worker_id.clone();
        let task = tokio::spawn(self.run(shutdown.clone()));
        WorkerHandle {
            shutdown,
            task,
            work_dir,
            worker_id,
        }
    }

    /// Claims and runs jobs until `shutdown` fires, then gives running jobs back (see the module
    /// docs). Fails only at start (configuration, work directory); database and read-model
    /// errors later are logged and retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        self.config.validate()?;
        let work_dir = self.config.work_dir();
        let _in_use = workdir::Registration::new(&work_dir)?;
        workdir::prepare(&self.config.work_root, &work_dir).await?;
        let config = self.config;
        let shared = Arc::new(Shared {
            db: self.db,
            store: self.store,
            relay: self.relay,
            ctx: PipelineContext {
                work_root: work_dir,
                ..self.ctx
            },
            config,
        });
        let cfg = &shared.config;
        tracing::info!(
            worker.id = %cfg.worker_id,
            concurrency = cfg.concurrency,
            lease_ms = cfg.lease.as_millis(),
            work_dir = %shared.ctx.work_root.display(),
            "video worker started"
        );
        let mut running: JoinSet<()> = JoinSet::new();
        let mut stops: HashMap<tokio::task::Id, Arc<Stop>> = HashMap::new();
        let mut next_reap = Instant::now();
        let mut claim_failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if Instant::now() >= next_reap {
                shared.reap().await;
                // What crashed workers on this host left: their directories and their ffmpegs.
                workdir::sweep(&cfg.work_root, &shared.ctx.work_root).await;
                next_reap = Instant::now() + cfg.reap_every;
            }
            while running.len() < cfg.concurrency && !shutdown.is_cancelled() {
                // The lease runs from the claim statement, which happens after this instant.
                let asked = Instant::now();
                match shared
                    .db
                    .claim(Queue::Video, &cfg.worker_id, cfg.lease, cfg.caps)
                    .await
                {
                    Ok(Some(claim)) => {
                        claim_failures = 0;
                        let stop = Arc::new(Stop::new());
                        let handle =
                            running.spawn(attempt::run(shared.clone(), claim, asked, stop.clone()));
                        stops.insert(handle.id(), stop);
                    }
                    Ok(None) => {
                        claim_failures = 0;
                        break;
                    }
                    Err(e) => {
                        if claim_failures == 0 {
                            tracing::warn!(error = %e, "claiming failed; retrying with backoff");
                        }
                        claim_failures = claim_failures.saturating_add(1);
                        break;
                    }
                }
            }
            let until_reap = next_reap.saturating_duration_since(Instant::now());
            let can_claim = running.len() < cfg.concurrency && claim_failures == 0;
            let pause = if claim_failures > 0 {
                Duration::from_millis(100)
                    .saturating_mul(1 << claim_failures.min(8))
                    .min(cfg.idle_wait)
            } else {
                cfg.idle_wait
            }
            .min(until_reap);
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = running.join_next_with_id() => {
                    let id = match &done {
                        Ok((id, ())) => *id,
                        Err(e) => e.id(),
                    };
                    stops.remove(&id);
                    if let Err(e) = done {
                        log_abnormal_end(&e);
                    }
                }
                _ = shared.db.wait_for_work(Queue::Video, pause), if can_claim => {}
                () = tokio::time::sleep(pause), if !can_claim => {}
            }
        }

        tracing::info!(
            worker.id = %cfg.worker_id,
            running = running.len(),
            "video worker stopping; giving running jobs back"
        );
        for stop in stops.values() {
            stop.stop(StopReason::Shutdown);
        }
        let drained = tokio::time::timeout(cfg.shutdown_grace, async {
            while let Some(done) = running.join_next().await {
                if let Err(e) = done {
                    log_abnormal_end(&e);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                worker.id = %cfg.worker_id,
                left = running.len(),
                "attempts did not end within the shutdown grace period; abandoning them \
                 (their leases will expire)"
            );
            running.shutdown().await;
        }
        tracing::info!(worker.id = %cfg.worker_id, "video worker stopped");
        Ok(())
    }
}

fn log_abnormal_end(e: &JoinError) {
    if e.is_panic() {
        // The lease expires and the reaper schedules a retry; the TempDir was dropped on unwind.
        tracing::error!(error = %e, "a video attempt panicked");
    }
}

/// A worker running on its own task (see [`VideoWorker::spawn`]); for binaries and tests.
#[derive(Debug)]
pub struct WorkerHandle {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), WorkerError>>,
    work_dir: PathBuf,
    worker_id: String,
}

impl WorkerHandle {
    /// Asks the worker to shut down gracefully (what SIGTERM does); see [`WorkerHandle::join`].
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the worker to end (after [`WorkerHandle::stop`], or a start-up error).
    pub async fn join(self) -> Result<(), WorkerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(WorkerError::Task(e.to_string())),
        }
    }

    /// [`WorkerHandle::stop`], then [`WorkerHandle::join`].
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        self.stop();
        self.join().await
    }

    /// Drops the worker on the spot, as a crash would: nothing is given back, leases are left to
    /// expire. Its ffmpeg processes are killed and its temporary files removed as their owners
    /// are dropped.
    pub fn kill(self) {
        self.task.abort();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The worker's work directory (`work_root/<worker id>`).
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
}
