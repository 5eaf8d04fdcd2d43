//! The AI/tool job worker: a dispatcher with one [`Handler`] per job type.
//!
//! [`AiWorker`] claims jobs of `Queue::Ai`, looks the job type up in its [`Registry`] and runs
//! the handler with a [`JobContext`] — the claimed job, the database, media storage, the
//! attempt's progress [`Reporter`] and its cancellation token. The handler answers a
//! [`HandlerOutput`] (the final status and result) or a [`HandlerError`] saying whether the
//! input is bad, the failure permanent, or worth another attempt; the worker turns that into the
//! attempt's one state change in the database and publishes it.
//!
//! Handlers report progress only through the reporter (direct, fenced, coalesced writes to the
//! read model) and never write a state change themselves.
//!
//! # Layout
//!
//! - this file: the handler seam ([`Handler`], [`JobContext`], [`HandlerOutput`],
//!   [`HandlerError`]);
//! - [`registry`]: [`Registry`] — handlers by job type, and [`JobTypeInfo`] for the API's submit
//!   validation;
//! - [`worker`]: [`AiWorker`] — claim, heartbeat, timeout, final write, reaper;
//! - [`excel_import`]: the `excel_parsing` handler (student import);
//! - [`attendance_export`]: the `attendance_excel_export` handler.

use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::{AiJob, Db};
use jobpulse_domain::steps::StepPlan;
use jobpulse_domain::{JobId, JobResult, JobStatus, TenantId};
use jobpulse_media::{MediaStorage, StorageKey};
use tokio_util::sync::CancellationToken;

use crate::progress::Reporter;

pub mod attendance_export;
pub mod excel_import;
pub mod inputs;
pub mod registry;
pub mod worker;

pub use attendance_export::{AttendanceExportHandler, ExportSettings};
pub use excel_import::{ExcelImportHandler, ExcelImportSettings};
pub use registry::{HandlerSettings, JobTypeInfo, Registry};
pub use worker::{
    AiWorker, AiWorkerConfig, AiWorkerHandle, DEFAULT_CREDENTIALS_RETENTION,
    DEFAULT_INPUT_RETENTION,
};

/// Attempts of a job type that does not say otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// One job type's implementation. Object-safe: the registry holds `Arc<dyn Handler>`.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug + 'static {
    /// The job type it runs, e.g. `excel_parsing`.
    fn job_type(&self) -> &'static str;

    /// How long one attempt may run; over it the attempt fails as transient (retried).
    fn timeout(&self) -> Duration;

    /// Whether a submit must carry an input file.
    fn needs_file(&self) -> bool;

    /// Whether the job's progress and result expose personal data (students and parents may not
    /// see it). Must agree with `JobType::is_staff_only`, which the read path uses.
    fn staff_only(&self) -> bool;

    /// Attempts before the job is FAILED (transient errors and timeouts are retried).
    fn max_attempts(&self) -> u32 {
        DEFAULT_MAX_ATTEMPTS
    }

    /// The steps the handler reports through [`JobContext::reporter`].
    fn plan(&self) -> StepPlan;

    /// Runs one attempt. Must be safe to run again after an attempt that died half-way.
    async fn run(&self, ctx: &JobContext) -> Result<HandlerOutput, HandlerError>;
}

/// How an attempt ended well.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerOutput {
    /// DONE normally; another terminal status (REVIEW_REQUIRED, FALLBACK_TO_GPU, …) when the
    /// job type has one.
    pub status: JobStatus,
    /// The whole result, kept in the database only (it may hold secrets).
    pub full_result: serde_json::Value,
    /// What the read model shows: inline when small and safe, else a reference (`result_url`).
    pub read_result: JobResult,
    /// Shown with the status; with DONE clients treat it as a failure.
    pub error_message: Option<String>,
}

impl HandlerOutput {
    /// DONE with a full result and its read-model projection.
    pub fn done(full_result: serde_json::Value, read_result: JobResult) -> Self {
        Self {
            status: JobStatus::Done,
            full_result,
            read_result,
            error_message: None,
        }
    }

    /// DONE with a result that holds nothing secret: inline when it fits in 10 KB, otherwise
    /// served through `result_url`.
    pub fn done_public(result: serde_json::Value) -> Result<Self, HandlerError> {
        let read = JobResult::whole(result.clone())
            .map_err(|e| HandlerError::Permanent(format!("invalid result: {e}")))?;
        Ok(Self::done(result, read))
    }
}

/// Why an attempt did not produce output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The input cannot be processed (REJECTED_BAD_INPUT with this user-facing message; not
    /// retried).
    #[error("{0}")]
    BadInput(String),
    /// A failure retrying will not fix (FAILED; not retried).
    #[error("{0}")]
    Permanent(String),
    /// A failure that may pass (RETRYING with backoff, FAILED after the last attempt).
    #[error("{0}")]
    Transient(String),
}

impl HandlerError {
    /// A database failure: worth another attempt unless it says the data itself is wrong.
    pub fn from_db(e: jobpulse_db::DbError) -> Self {
        use jobpulse_db::DbError;
        match e {
            DbError::Corrupt(_) | DbError::Invalid(_) | DbError::IllegalTransition { .. } => {
                HandlerError::Permanent(format!("database: {e}"))
            }
            _ => HandlerError::Transient(format!("database: {e}")),
        }
    }
}

/// Everything a handler gets for one attempt.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The claimed job (RUNNING, `attempt` = this attempt).
    pub job: AiJob,
    pub db: Db,
    pub storage: MediaStorage,
    /// The attempt's single progress writer.
    pub reporter: Arc<Reporter>,
    /// Cancelled when the attempt must stop (cancel requested, lease lost, shutdown). The worker
    /// stops waiting for the handler at once; checking it lets the handler stop its own work
    /// (threads, loops) early too.
    pub cancel: CancellationToken,
}

impl JobContext {
    pub fn tenant(&self) -> TenantId {
        self.job.tenant
    }

    pub fn job_id(&self) -> &JobId {
        &self.job.job_id
    }

    pub fn payload(&self) -> &serde_json::Value {
        &self.job.payload
    }

    /// The lecture the job is about: `payload.lecture_id` if given, else the job row's.
    /// A `lecture_id` in the payload that is not a positive integer is bad input.
    pub fn lecture_id(&self) -> Result<Option<i64>, HandlerError> {
        match self.job.payload.get("lecture_id") {
            None | Some(serde_json::Value::Null) => Ok(self.job.lecture_id),
            Some(v) => v.as_i64().filter(|id| *id > 0).map(Some).ok_or_else(|| {
                HandlerError::BadInput(format!("lecture_id가 올바르지 않습니다: {v}"))
            }),
        }
    }

    /// The storage key of the job's input file.
    pub fn input_key(&self) -> Result<StorageKey, HandlerError> {
        let key = self
            .job
            .input_file_key
            .as_deref()
            .ok_or_else(|| HandlerError::BadInput("입력 파일이 없습니다.".to_owned()))?;
        StorageKey::parse(key)
            .map_err(|e| HandlerError::Permanent(format!("the job's input key is invalid: {e}")))
    }

    /// `Err(Transient("cancelled"))` once the attempt was told to stop, for loops to bail out.
    pub fn check_cancelled(&self) -> Result<(), HandlerError> {
        if self.cancel.is_cancelled() {
            Err(HandlerError::Transient("cancelled".to_owned()))
        } else {
            Ok(())
        }
    }
}
