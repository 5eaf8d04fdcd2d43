//! [`AiWorkerConfig`]: the settings of one AI worker — the common [`WorkerConfig`] and the
//! retention of credentials and inputs — and their defaults.

use std::time::Duration;

use jobpulse_db::{Caps, TenantCaps};

use crate::claim_loop::WorkerConfig;

/// How an AI worker runs: the common part and the retention of what ended jobs leave.
#[derive(Debug, Clone, PartialEq)]
pub struct AiWorkerConfig {
    /// The claim loop's and the lease's settings. AI defaults: concurrency 2; caps: the
    /// per-tenant cap of [`TenantCaps::default`] (4 AI jobs of one tenant at once).
    pub common: WorkerConfig,
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
            common: WorkerConfig::new(2, Caps::per_tenant(TenantCaps::default().ai)),
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
        self.common = self.common.with_lease(lease);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lease() {
        let c = AiWorkerConfig::default();
        assert_eq!(c.common.concurrency, 2);
        assert_eq!(c.common.caps.per_tenant, TenantCaps::default().ai);
        assert!(c.common.validate().is_ok());
        let c = c.with_lease(Duration::from_secs(3));
        assert_eq!(c.common.heartbeat_every, Duration::from_secs(1));
    }
}
