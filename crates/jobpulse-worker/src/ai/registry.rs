//! Handlers by job type, and what the API needs to know about a job type at submit time.
//!
//! The API validates a submit against the same registry the workers run ([`Registry::describe`]):
//! an unknown type, a missing file or a non-staff submitter is refused before a job row exists,
//! and the job row gets the type's attempts and timeout. A worker that claims a job whose type it
//! has no handler for (an older worker next to a newer API) fails it with a clear message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::NewAiJob;

use super::Handler;
use super::attendance_export::{AttendanceExportHandler, ExportSettings};
use super::excel_import::{ExcelImportHandler, ExcelImportSettings};

/// What submit validation needs to know about a job type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTypeInfo {
    /// A submit must carry a file (`file` multipart field).
    pub needs_file: bool,
    /// Only staff roles may submit it or see it (students and parents get 404).
    pub staff_only: bool,
    /// Attempts before FAILED; store it in the job row (`NewAiJob::max_attempts`).
    pub max_attempts: u32,
    /// How long one attempt may run; store it in the job row (`NewAiJob::timeout`).
    pub timeout: Duration,
}

impl JobTypeInfo {
    /// Copies the type's attempts and timeout into a job about to be submitted.
    pub fn apply_to(&self, job: &mut NewAiJob) {
        job.max_attempts = Some(self.max_attempts);
        job.timeout = self.timeout;
    }
}

/// Settings of the standard handlers.
#[derive(Debug, Clone, Default)]
pub struct HandlerSettings {
    pub excel_import: ExcelImportSettings,
    pub attendance_export: ExportSettings,
}

/// The handlers a worker runs, by job type.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
}

impl Registry {
    /// No handlers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The product's handlers: `excel_parsing` and `attendance_excel_export`.
    pub fn standard(settings: HandlerSettings) -> Self {
        Self::empty()
            .with(ExcelImportHandler::new(settings.excel_import))
            .with(AttendanceExportHandler::new(settings.attendance_export))
    }

    /// Adds (or replaces) the handler of its job type.
    pub fn with(mut self, handler: impl Handler) -> Self {
        self.insert(Arc::new(handler));
        self
    }

    /// Adds (or replaces) the handler of its job type.
    pub fn insert(&mut self, handler: Arc<dyn Handler>) {
        self.handlers.insert(handler.job_type(), handler);
    }

    pub fn get(&self, job_type: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(job_type)
    }

    /// What the API checks a submit of `job_type` against; `None`: unknown type (refuse it).
    pub fn describe(&self, job_type: &str) -> Option<JobTypeInfo> {
        self.get(job_type).map(|h| JobTypeInfo {
            needs_file: h.needs_file(),
            staff_only: h.staff_only(),
            max_attempts: h.max_attempts(),
            timeout: h.timeout(),
        })
    }

    /// The registered job types, sorted (for error messages and the OpenAPI description).
    pub fn job_types(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.handlers.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use jobpulse_domain::{JobType, TenantId};

    use super::*;

    #[test]
    fn standard_types_agree_with_the_read_path() {
        let r = Registry::standard(HandlerSettings::default());
        assert_eq!(
            r.job_types(),
            [JobType::ATTENDANCE_EXCEL_EXPORT, JobType::EXCEL_PARSING]
        );
        for t in r.job_types() {
            let info = r.describe(t).expect("registered");
            let parsed = JobType::parse(t).expect("valid job type");
            assert_eq!(info.staff_only, parsed.is_staff_only(), "{t}");
            assert!((1..=100).contains(&info.max_attempts), "{t}");
            assert!(info.timeout >= Duration::from_secs(1), "{t}");
        }
        let excel = r.describe(JobType::EXCEL_PARSING).expect("registered");
        assert!(excel.needs_file);
        let export = r
            .describe(JobType::ATTENDANCE_EXCEL_EXPORT)
            .expect("registered");
        assert!(!export.needs_file);
        assert_eq!(r.describe("ppt_generation"), None);

        let mut job = NewAiJob::new(
            TenantId::new(1).expect("valid"),
            JobType::parse(JobType::EXCEL_PARSING).expect("valid"),
        );
        excel.apply_to(&mut job);
        assert_eq!(job.max_attempts, Some(excel.max_attempts));
        assert_eq!(job.timeout, excel.timeout);
    }
}
