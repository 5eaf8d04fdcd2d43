//! The video worker loop: claims transcode jobs from the database queue and runs the
//! [`pipeline`](super::pipeline) for each, under a lease kept alive by heartbeats.
//!
//! # The loop
//!
//! [`crate::claim_loop`] claims, reaps, backs off, runs `concurrency` attempts at once and shuts
//! down (running jobs given back with [`Db::release`](jobpulse_db::Db::release), waiting up to
//! `shutdown_grace`); this worker supplies one attempt: the pipeline under the lease.
//!
//! # One attempt (`attempt` module)
//!
//! A [`Reporter`](crate::progress::Reporter) writes progress straight to the read model; a
//! heartbeat every `heartbeat_every` extends the lease and slides the read-model TTL. The
//! heartbeat's answer can stop the attempt: a cancel request (acknowledged with
//! [`Db::cancelled`](jobpulse_db::Db::cancelled)), a lost lease, a read model that refuses our
//! writes as stale, or — when no heartbeat got through for a whole lease — a presumed lost
//! lease. A lost attempt writes nothing more: a zombie must not write. At shutdown ffmpeg is
//! killed through the pipeline's token.
//!
//! # Work directories
//!
//! Each worker uses `work_root/<worker id>/`; at start it removes what dead workers on this
//! host left behind (see the `workdir` module).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::Db;
use jobpulse_store::SharedStore;
use jobpulse_sync::Relay;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pipeline::PipelineContext;

mod attempt;
mod config;
mod workdir;

pub use config::{VideoWorkerConfig, WorkerError};

use attempt::Shared;

use crate::claim_loop;

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
        let worker_id = self.config.common.worker_id.clone();
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
        let shared = Arc::new(Shared {
            db: self.db,
            store: self.store,
            relay: self.relay,
            ctx: PipelineContext {
                work_root: work_dir,
                ..self.ctx
            },
            config: self.config,
        });
        let cfg = &shared.config;
        tracing::info!(
            worker.id = %cfg.common.worker_id,
            concurrency = cfg.common.concurrency,
            lease_ms = cfg.common.lease.as_millis(),
            work_dir = %shared.ctx.work_root.display(),
            "video worker started"
        );
        tokio::join!(
            claim_loop::run(
                shared.clone(),
                shared.db.clone(),
                shared.relay.clone(),
                cfg.common.clone(),
                shutdown.clone()
            ),
            sweep(
                &cfg.work_root,
                &shared.ctx.work_root,
                cfg.common.reap_every,
                &shutdown
            ),
        );
        tracing::info!(worker.id = %cfg.common.worker_id, "video worker stopped");
        Ok(())
    }
}

/// Every `every` until `shutdown`: removes what crashed workers on this host left under `root`
/// (their directories, their ffmpegs), never `own`.
async fn sweep(root: &Path, own: &Path, every: Duration, shutdown: &CancellationToken) {
    loop {
        workdir::sweep(root, own).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
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
