//! [`VideoWorkerConfig`]: the settings of one video worker, their defaults and their checks.

use std::path::PathBuf;
use std::time::Duration;

use jobpulse_db::{Caps, TenantCaps};

use super::workdir;

/// Settings of one [`VideoWorker`](super::VideoWorker).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoWorkerConfig {
    /// Lease owner in the database and name of the work directory; default `<hostname>-<pid>`.
    pub worker_id: String,
    /// Attempts run at once by this worker; default 1 (ffmpeg uses every core already).
    pub concurrency: usize,
    /// How long a claim or heartbeat holds the job; default 30 s.
    pub lease: Duration,
    /// Heartbeat period; default a third of the lease (two heartbeats may fail in a row).
    pub heartbeat_every: Duration,
    /// Concurrency caps counted over all workers of the queue; default: the per-tenant cap of
    /// [`TenantCaps::default`] (2 transcodes of one tenant at once).
    pub caps: Caps,
    /// Longest sleep when nothing is runnable; bounds how late a job whose backoff ended (which
    /// is not announced) starts. Default 5 s.
    pub idle_wait: Duration,
    /// How often expired leases are reaped; default 5 s.
    pub reap_every: Duration,
    /// Parent of the per-worker work directories. The pipeline runs in `work_root/<worker id>/`
    /// (the `work_root` of the [`PipelineContext`](crate::video::PipelineContext) given to [`VideoWorker::new`](super::VideoWorker::new) is replaced).
    pub work_root: PathBuf,
    /// Shortest interval between two progress writes of an attempt (step changes always go
    /// through); default 1 s.
    pub progress_every: Duration,
    /// How long `run` waits, at shutdown, for running attempts to give their jobs back; default
    /// 10 s.
    pub shutdown_grace: Duration,
}

impl Default for VideoWorkerConfig {
    fn default() -> Self {
        Self::new(std::env::temp_dir().join("jobpulse-work"))
    }
}

impl VideoWorkerConfig {
    /// The defaults, with work directories under `work_root`.
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        let lease = Duration::from_secs(30);
        Self {
            worker_id: default_worker_id(),
            concurrency: 1,
            lease,
            heartbeat_every: lease / 3,
            caps: Caps::per_tenant(TenantCaps::default().video),
            idle_wait: Duration::from_secs(5),
            reap_every: Duration::from_secs(5),
            work_root: work_root.into(),
            progress_every: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Sets the lease and a heartbeat period of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_every = lease / 3;
        self
    }

    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }

    /// Checks what would make the worker misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: &str| Err(WorkerError::Config(m.to_owned()));
        let id = &self.worker_id;
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return bad("worker id must be 1 to 200 bytes without control characters");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.heartbeat_every.is_zero() || self.heartbeat_every >= self.lease {
            return bad("heartbeat_every must be above zero and shorter than the lease");
        }
        if self.idle_wait.is_zero() || self.reap_every.is_zero() {
            return bad("idle_wait and reap_every must be above zero");
        }
        Ok(())
    }

    /// This worker's own work directory: `work_root/<worker id, made file-name safe>`.
    pub fn work_dir(&self) -> PathBuf {
        self.work_root.join(workdir::dir_name(&self.worker_id))
    }
}

/// `<hostname>-<pid>`: unique among live processes on a host, and recognisable at start-up so a
/// dead worker's leftover directory can be removed (see [`VideoWorkerConfig::work_root`]).
pub fn default_worker_id() -> String {
    format!("{}-{}", workdir::hostname(), std::process::id())
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error("work directory {path}: {source}", path = path.display())]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Two workers of one process were given the same work directory.
    #[error("another worker of this process already uses {}", .0.display())]
    WorkDirInUse(PathBuf),
    /// The worker's task panicked or was aborted.
    #[error("the worker task ended abnormally: {0}")]
    Task(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    #[test]
    fn defaults_follow_the_brief_and_bad_settings_are_refused() {
        let c = VideoWorkerConfig::new("/w");
        assert_eq!(c.worker_id, default_worker_id());
        assert!(c.worker_id.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(
            (c.concurrency, c.lease, c.heartbeat_every),
            (1, Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(c.work_dir(), Path::new("/w").join(&c.worker_id));
        assert!(c.validate().is_ok());
        let short = c.clone().with_lease(Duration::from_secs(3));
        assert_eq!(short.heartbeat_every, Duration::from_secs(1));
        for bad in [
            VideoWorkerConfig {
                concurrency: 0,
                ..c.clone()
            },
            VideoWorkerConfig {
                heartbeat_every: c.lease,
                ..c.clone()
            },
            c.clone().with_worker_id(""),
            c.clone().with_worker_id("a\nb"),
            VideoWorkerConfig {
                idle_wait: Duration::ZERO,
                ..c.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(WorkerError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
