//! [`AiWorkerConfig`]: the settings of one AI worker and their defaults.

use std::time::Duration;

use jobpulse_db::{Caps, TenantCaps};

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
    /// forever. Default 0: deleted as soon as the job ends. See [`crate::ai::inputs`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_and_lease() {
        let id = default_worker_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(!id.chars().any(char::is_control));
        let c = AiWorkerConfig::default().with_lease(Duration::from_secs(3));
        assert_eq!(c.heartbeat_every, Duration::from_secs(1));
    }
}
