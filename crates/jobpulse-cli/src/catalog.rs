//! The worker's handler registry, as the API sees it at submit time.

use jobpulse_api::state::{JobCatalog, JobSpec};
use jobpulse_domain::JobType;
use jobpulse_worker::ai::Registry;

/// Adapts [`Registry`] to the API's [`JobCatalog`].
#[derive(Debug, Clone)]
pub struct RegistryCatalog(pub Registry);

impl JobCatalog for RegistryCatalog {
    fn describe(&self, job_type: &JobType) -> Option<JobSpec> {
        self.0.describe(job_type.as_str()).map(|i| JobSpec {
            needs_file: i.needs_file,
            staff_only: i.staff_only,
            max_attempts: Some(i.max_attempts),
            timeout: i.timeout,
        })
    }

    fn known(&self) -> Vec<String> {
        self.0.job_types().into_iter().map(str::to_owned).collect()
    }
}
