//! Rows as domain types, and the one function per task kind that turns a row into the read-model
//! state it stands for.
//!
//! [`Video::write`] and [`AiJob::write`] are used both when a state change is committed (the
//! outbox row) and when the read model is repaired, so a repaired record is exactly the write of
//! the last state change: same fence, same state.

use jobpulse_domain::steps::VIDEO;
use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, State, TaskKey, TenantId, Text, VideoId,
    VideoStatus, Write,
};
use serde::Serialize;

use crate::DbError;
use crate::conn::{RowExt, to_u32, to_u64};

/// What [`crate::Db::cancel_video`] / [`crate::Db::cancel_ai_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and is now ended.
    Ended,
    /// The job is running; its worker was asked to stop.
    Requested,
    /// Nothing to cancel (no active job, or already finished).
    NotActive,
}

/// The columns [`Video::from_row`] reads (unqualified, so `RETURNING` can use them too).
macro_rules! video_cols {
    () => {
        "id, tenant_id, session_id, title, status, file_key, hls_path, duration_secs, \
         error_reason, attempt, generation, fence_attempt, fence_seq, created_at, updated_at, \
         deleted_at, max_attempts, retry_at"
    };
}
pub(crate) use video_cols;

/// The columns [`AiJob::from_row`] reads, for `SELECT`s over `ai_jobs j LEFT JOIN ai_results r`.
macro_rules! ai_job_cols {
    () => {
        "j.job_id, j.tenant_id, j.job_type, j.status, j.payload, j.input_file_key, j.lecture_id, \
         j.idempotency_key, j.created_by, j.generation, j.fence_attempt, j.fence_seq, j.attempt, \
         j.max_attempts, j.run_after, j.lease_owner, j.lease_until, j.cancel_requested, \
         j.error_message, j.timeout_secs, j.created_at, j.updated_at, r.summary AS result_summary"
    };
}
pub(crate) use ai_job_cols;

/// The columns [`VideoJob::from_row`] reads (unqualified, so `RETURNING` can use them too).
macro_rules! video_job_cols {
    () => {
        "id, tenant_id, video_id, generation, state, attempt, max_attempts, run_after, \
         lease_owner, lease_until, cancel_requested, error_code, error_message, created_at, \
         updated_at"
    };
}
pub(crate) use video_job_cols;

/// Normalises a message the way the read model will hold it, so the database and the read model
/// agree byte for byte.
pub(crate) fn clean_message(s: &str) -> String {
    Text::lossy(s, Text::MAX_MESSAGE).as_str().to_owned()
}

/// A tenant (one academy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub code: String,
    pub name: String,
    pub created_at_ms: i64,
}

/// What `tenant add` prints: a new tenant with its first lecture and session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TenantSeed {
    pub tenant_id: TenantId,
    pub lecture_id: i64,
    pub session_id: i64,
}

/// A lecture of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lecture {
    pub id: i64,
    pub tenant: TenantId,
    pub title: String,
}

/// A session (one class meeting) of a lecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: i64,
    pub lecture_id: i64,
    pub title: String,
    pub created_at_ms: i64,
}

/// A video and the fence of its last state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Video {
    pub id: VideoId,
    pub tenant: TenantId,
    pub session_id: Option<i64>,
    pub title: String,
    pub status: VideoStatus,
    /// Storage key of the uploaded source file.
    pub file_key: String,
    pub hls_path: Option<String>,
    pub duration_secs: Option<u32>,
    pub error_reason: Option<String>,
    /// The attempt shown to users (0 before the first claim).
    pub attempt: u32,
    pub fence: Fence,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub deleted_at_ms: Option<i64>,
    /// The attempts its transcode may take (set by a claim; `None` before the first).
    pub max_attempts: Option<u32>,
    /// RETRY_WAIT: when the next attempt may start (epoch milliseconds).
    pub retry_at_ms: Option<i64>,
}

impl Video {
    pub(crate) fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        let status = r.text("status")?;
        Ok(Self {
            id: VideoId::new(r.int("id")?).map_err(DbError::corrupt)?,
            tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
            session_id: r.opt_int("session_id")?,
            title: r.text("title")?,
            status: status
                .parse()
                .map_err(|_| DbError::corrupt(format!("video status {status}")))?,
            file_key: r.text("file_key")?,
            hls_path: r.opt_text("hls_path")?,
            duration_secs: r
                .opt_int("duration_secs")?
                .map(|d| to_u32(d, "duration"))
                .transpose()?,
            error_reason: r.opt_text("error_reason")?,
            attempt: to_u32(r.int("attempt")?, "attempt")?,
            fence: fence_from(r)?,
            created_at_ms: r.int("created_at")?,
            updated_at_ms: r.int("updated_at")?,
            deleted_at_ms: r.opt_int("deleted_at")?,
            max_attempts: r
                .opt_int("max_attempts")?
                .map(|n| to_u32(n, "max attempts"))
                .transpose()?,
            retry_at_ms: r.opt_int("retry_at")?,
        })
    }

    pub fn key(&self) -> TaskKey {
        TaskKey::video(self.tenant, self.id)
    }

    /// The read-model state this row stands for (see the module docs).
    pub fn state(&self) -> Result<State, DbError> {
        let mut s = State::video(self.status);
        if self.attempt > 0 {
            s.attempt = Some(self.attempt);
        }
        match self.status {
            VideoStatus::Pending | VideoStatus::Uploaded => s.attempt = None,
            VideoStatus::Processing => {
                s.max_attempts = self.max_attempts;
                // A claim starts at step 1; the worker's own progress writes (seq >= 2) move on.
                s.percent = VIDEO.overall(1, 0.0);
                s.step = Some(VIDEO.step(1, 0.0));
            }
            VideoStatus::RetryWait => {
                // Waiting for another attempt: keep the bar where PROCESSING starts (the read
                // model holds it at the previous attempt's percent, docs/contract.md §3b).
                s.percent = VIDEO.overall(1, 0.0);
                s.error = self.error_reason.as_deref().map(message_text);
                s.retry_at = self.retry_at_ms.and_then(|t| u64::try_from(t).ok());
                s.max_attempts = self.max_attempts;
            }
            VideoStatus::Ready => {
                s.hls_path = self.hls_path.as_deref().map(message_text);
                s.duration = self.duration_secs;
            }
            VideoStatus::Failed => {
                s.max_attempts = self.max_attempts.filter(|_| self.attempt > 0);
                s.error = Some(message_text(
                    self.error_reason.as_deref().unwrap_or("failed"),
                ));
            }
        }
        s.validate(jobpulse_domain::TaskKind::Video)?;
        Ok(s)
    }

    /// The write of the last state change: a tombstone when deleted, the state otherwise.
    pub fn write(&self) -> Result<Write, DbError> {
        if self.deleted_at_ms.is_some() {
            return Ok(Write::delete(self.key(), self.fence));
        }
        Ok(Write::set(self.key(), self.fence, self.state()?)?)
    }
}

fn message_text(s: &str) -> Text {
    Text::lossy(s, Text::MAX_MESSAGE)
}

fn fence_from(r: &impl RowExt) -> Result<Fence, DbError> {
    Ok(Fence::new(
        to_u32(r.int("generation")?, "generation")?,
        to_u32(r.int("fence_attempt")?, "fence attempt")?,
        to_u64(r.int("fence_seq")?, "fence seq")?,
    )?)
}

/// The state of a transcode job in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VideoJobState {
    Queued,
    Running,
    RetryWait,
    Succeeded,
    Dead,
    Cancelled,
}

impl VideoJobState {
    pub const ALL: [VideoJobState; 6] = [
        Self::Queued,
        Self::Running,
        Self::RetryWait,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::RetryWait => "RETRY_WAIT",
            Self::Succeeded => "SUCCEEDED",
            Self::Dead => "DEAD",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::RetryWait)
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One transcode job (one row of `video_jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoJob {
    pub id: i64,
    pub tenant: TenantId,
    pub video_id: VideoId,
    pub generation: u32,
    pub state: VideoJobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_after_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub cancel_requested: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl VideoJob {
    pub(crate) fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        let state = r.text("state")?;
        Ok(Self {
            id: r.int("id")?,
            tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
            video_id: VideoId::new(r.int("video_id")?).map_err(DbError::corrupt)?,
            generation: to_u32(r.int("generation")?, "generation")?,
            state: VideoJobState::parse(&state)
                .ok_or_else(|| DbError::corrupt(format!("video job state {state}")))?,
            attempt: to_u32(r.int("attempt")?, "attempt")?,
            max_attempts: to_u32(r.int("max_attempts")?, "max attempts")?,
            run_after_ms: r.int("run_after")?,
            lease_owner: r.opt_text("lease_owner")?,
            lease_until_ms: r.opt_int("lease_until")?,
            cancel_requested: r.flag("cancel_requested")?,
            error_code: r.opt_text("error_code")?,
            error_message: r.opt_text("error_message")?,
            created_at_ms: r.int("created_at")?,
            updated_at_ms: r.int("updated_at")?,
        })
    }
}

/// An AI/tool job, its queue fields, and the read-model projection of its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiJob {
    pub job_id: JobId,
    pub tenant: TenantId,
    pub job_type: JobType,
    pub status: JobStatus,
    pub payload: serde_json::Value,
    pub input_file_key: Option<String>,
    pub lecture_id: Option<i64>,
    pub idempotency_key: Option<String>,
    pub created_by: Option<String>,
    pub fence: Fence,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_after_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub cancel_requested: bool,
    pub error_message: Option<String>,
    pub timeout_secs: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// What the read model shows of the result (never the secrets of the full result).
    pub result: Option<JobResult>,
}

impl AiJob {
    pub(crate) fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        let status = r.text("status")?;
        let payload = r.text("payload")?;
        Ok(Self {
            job_id: JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt)?,
            tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
            job_type: JobType::parse(&r.text("job_type")?).map_err(DbError::corrupt)?,
            status: status
                .parse()
                .map_err(|_| DbError::corrupt(format!("job status {status}")))?,
            payload: serde_json::from_str(&payload).map_err(DbError::corrupt)?,
            input_file_key: r.opt_text("input_file_key")?,
            lecture_id: r.opt_int("lecture_id")?,
            idempotency_key: r.opt_text("idempotency_key")?,
            created_by: r.opt_text("created_by")?,
            fence: fence_from(r)?,
            attempt: to_u32(r.int("attempt")?, "attempt")?,
            max_attempts: to_u32(r.int("max_attempts")?, "max attempts")?,
            run_after_ms: r.int("run_after")?,
            lease_owner: r.opt_text("lease_owner")?,
            lease_until_ms: r.opt_int("lease_until")?,
            cancel_requested: r.flag("cancel_requested")?,
            error_message: r.opt_text("error_message")?,
            timeout_secs: to_u32(r.int("timeout_secs")?, "timeout")?,
            created_at_ms: r.int("created_at")?,
            updated_at_ms: r.int("updated_at")?,
            result: r
                .opt_text("result_summary")?
                .map(|s| serde_json::from_str(&s).map_err(DbError::corrupt))
                .transpose()?,
        })
    }

    pub fn key(&self) -> TaskKey {
        TaskKey::job(self.tenant, self.job_id.clone())
    }

    /// The read-model state this row stands for (see the module docs).
    pub fn state(&self) -> Result<State, DbError> {
        let mut s = State::job(self.status, self.job_type.clone());
        if self.attempt > 0 && self.status != JobStatus::Pending {
            s.attempt = Some(self.attempt);
        }
        if self.status != JobStatus::Running && self.status != JobStatus::Pending {
            s.error = self.error_message.as_deref().map(message_text);
        }
        if self.status.is_terminal() {
            s.result = self.result.clone();
        }
        if s.attempt.is_some() {
            s.max_attempts = Some(self.max_attempts);
        }
        if self.status == JobStatus::Retrying {
            s.retry_at = u64::try_from(self.run_after_ms).ok();
        }
        s.validate(jobpulse_domain::TaskKind::Job)?;
        Ok(s)
    }

    pub fn write(&self) -> Result<Write, DbError> {
        Ok(Write::set(self.key(), self.fence, self.state()?)?)
    }
}
