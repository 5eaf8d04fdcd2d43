//! [`VideoWorkerConfig`]: the settings of one video worker — the common [`WorkerConfig`] and
//! its work root — their defaults and their checks.

use std::path::PathBuf;
use std::time::Duration;

use jobpulse_db::{Caps, TenantCaps};

use super::workdir;
use crate::claim_loop::WorkerConfig;

/// Settings of one [`VideoWorker`](super::VideoWorker): the common part and the work root.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoWorkerConfig {
    /// The claim loop's and the lease's settings. Video defaults: concurrency 1 (ffmpeg uses
    /// every core already); caps: the per-tenant cap of [`TenantCaps::default`] (2 transcodes
    /// of one tenant at once). Its `worker_id` also names the work directory.
    pub common: WorkerConfig,
    /// Parent of the per-worker work directories. The pipeline runs in `work_root/<worker id>/`
    /// (the `work_root` of the [`PipelineContext`](crate::video::PipelineContext) given to [`VideoWorker::new`](super::VideoWorker::new) is replaced).
    pub work_root: PathBuf,
}

impl Default for VideoWorkerConfig {
    fn default() -> Self {
        Self::new(std::env::temp_dir().join("jobpulse-work"))
    }
}

impl VideoWorkerConfig {
    /// The defaults, with work directories under `work_root`.
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        Self {
            common: WorkerConfig::new(1, Caps::per_tenant(TenantCaps::default().video)),
            work_root: work_root.into(),
        }
    }

    /// Sets the lease and a heartbeat period of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.common = self.common.with_lease(lease);
        self
    }

    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.common = self.common.with_worker_id(id);
        self
    }

    /// Checks what would make the worker misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), WorkerError> {
        self.common.validate().map_err(WorkerError::Config)
    }

    /// This worker's own work directory: `work_root/<worker id, made file-name safe>`.
    pub fn work_dir(&self) -> PathBuf {
        self.work_root
            .join(workdir::dir_name(&self.common.worker_id))
    }
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

    use crate::claim_loop::default_worker_id;

    #[test]
    fn defaults_follow_the_brief_and_bad_settings_are_refused() {
        let c = VideoWorkerConfig::new("/w");
        let common = &c.common;
        assert_eq!(common.worker_id, default_worker_id());
        assert_eq!(
            (common.concurrency, common.lease, common.heartbeat_every),
            (1, Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(common.caps.per_tenant, TenantCaps::default().video);
        assert_eq!(c.work_dir(), Path::new("/w").join(&common.worker_id));
        assert!(c.validate().is_ok());
        let short = c.clone().with_lease(Duration::from_secs(3));
        assert_eq!(short.common.heartbeat_every, Duration::from_secs(1));
        for bad in [c.clone().with_worker_id(""), {
            let mut b = c.clone();
            b.common.concurrency = 0;
            b
        }] {
            assert!(
                matches!(bad.validate(), Err(WorkerError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
