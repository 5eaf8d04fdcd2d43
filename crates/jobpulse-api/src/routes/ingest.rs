//! Worker ingest: fenced writes to the read model for workers written in other languages.
//!
//! `POST /internal/v1/{videos|jobs}/{id}/{progress|heartbeat|transition}` with a worker token
//! (`aud = "worker"`; a browser token gets 403). The tenant is the token's. Every write carries
//! its fence and goes through the same ordering rule as our own workers' writes: a stale write
//! gets **409** with the fence and revision the store holds; a heartbeat for a record the store
//! does not have gets 422; a malformed body gets 400 and an invalid state 422.
//!
//! Tasks reported this way are owned by the external system: its database is their source of
//! truth, and after a read-model loss it re-publishes them (our `repair` rebuilds only the
//! tasks in our database). These routes need no database at all.
//!
//! Writes here are [`Origin::External`](jobpulse_domain::Origin::External): the store refuses them (422, `reason` says why) on a
//! record our database owns — written by our own workers through the outbox — whatever fence
//! they carry, and our database takes back any record an external write created for one of its
//! tasks (`jobpulse_domain::fence`, rule 0). A write that creates a record is therefore handed
//! to the miss hook (read-repair, when the API has a database) which re-publishes the task if
//! our database has it. A `hls_path` must be a storage key under the token's tenant
//! (`tenants/{tenant}/…`); anything else is 422.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, Outcome, Percent, RejectReason,
    State as TaskState, Status, StepProgress, TaskKey, TaskKind, Text, VideoId, Write,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{PathParams, Worker};
use crate::state::ReadState;

/// Largest ingest body (results above 10 KB are kept as references anyway).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: ReadState) -> Router {
    Router::new()
        .route("/internal/v1/{kind}/{id}/{action}", post(ingest))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// `(generation, attempt, seq)` of a write.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceBody {
    pub generation: u32,
    pub attempt: u32,
    #[serde(default)]
    pub seq: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    pub index: u8,
    pub total: u8,
    /// Machine name, `[a-z0-9_]{1,32}`.
    pub name: String,
    /// Display name.
    pub display: String,
    #[serde(default)]
    pub percent: u8,
}

/// A progress tick, a transition or a heartbeat (only `fence` is read for heartbeats).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    pub fence: FenceBody,
    /// A contract status of the task's kind (`PROCESSING`, `READY`, `RUNNING`, `DONE`, …).
    pub status: Option<String>,
    /// Overall percent.
    #[serde(default)]
    pub percent: u8,
    pub step: Option<StepBody>,
    pub remaining_seconds: Option<u32>,
    /// Attempt shown to users.
    pub attempt: Option<u32>,
    /// Jobs: their type (required for jobs).
    pub job_type: Option<String>,
    /// Failure reason.
    pub error: Option<String>,
    /// Videos, READY: master playlist key and whole seconds.
    pub hls_path: Option<String>,
    pub duration: Option<u32>,
    /// Jobs, terminal: the result object (kept inline up to 10 KB, else as a reference).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

/// What the store did.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAnswer {
    /// `applied`, `stale` or `rejected`.
    pub outcome: &'static str,
    pub rev: Option<u64>,
    /// The fence the store holds (stale answers).
    pub current: Option<FenceBody>,
    pub reason: Option<String>,
}

fn key_of(tenant: jobpulse_domain::TenantId, kind: &str, id: &str) -> Result<TaskKey, ApiError> {
    match kind {
        "videos" => Ok(TaskKey::video(tenant, VideoId::parse(id)?)),
        "jobs" => Ok(TaskKey::job(tenant, JobId::parse(id)?)),
        _ => Err(ApiError::NotFound),
    }
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unprocessable(e.to_string())
}

/// A `hls_path` names a file of the writer's own tenant, never another's.
fn hls_path_of(key: &TaskKey, path: &str) -> Result<Text, ApiError> {
    let parsed = jobpulse_media::keys::StorageKey::parse(path)
        .ok()
        .filter(|k| jobpulse_media::keys::tenant_prefix(key.tenant).contains(k));
    if parsed.is_none() {
        return Err(ApiError::Unprocessable(format!(
            "hls_path must be a storage key under tenants/{}/",
            key.tenant
        )));
    }
    Text::parse(path, "hls_path", 1024).map_err(invalid)
}

fn state_of(key: &TaskKey, b: &IngestBody) -> Result<TaskState, ApiError> {
    let kind = key.task.kind();
    let status_name = b
        .status
        .as_deref()
        .ok_or_else(|| ApiError::Unprocessable("status is required".into()))?;
    let status = Status::parse(kind, status_name).ok_or_else(|| {
        ApiError::Unprocessable(format!("unknown status {status_name:?} for this kind"))
    })?;
    // READY and DONE are 100 % by definition; everything else reports its own percent.
    let mut s = TaskState::new(status);
    if !matches!(
        status,
        Status::Video(jobpulse_domain::VideoStatus::Ready) | Status::Job(JobStatus::Done)
    ) {
        s.percent = Percent::new(b.percent).map_err(invalid)?;
    }
    if let Some(st) = &b.step {
        s.step = Some(
            StepProgress::new(
                st.index,
                st.total,
                &st.name,
                &st.display,
                Percent::new(st.percent).map_err(invalid)?,
            )
            .map_err(invalid)?,
        );
    }
    s.remaining_seconds = b.remaining_seconds;
    s.attempt = b.attempt;
    s.duration = b.duration;
    s.error = b
        .error
        .as_deref()
        .map(|e| Text::parse(e, "error", Text::MAX_MESSAGE))
        .transpose()
        .map_err(invalid)?;
    s.hls_path = b
        .hls_path
        .as_deref()
        .map(|p| hls_path_of(key, p))
        .transpose()?;
    if kind == TaskKind::Job {
        let t = b
            .job_type
            .as_deref()
            .ok_or_else(|| ApiError::Unprocessable("job_type is required for jobs".into()))?;
        s.job_type = Some(JobType::parse(t).map_err(invalid)?);
        s.result = b
            .result
            .clone()
            .map(JobResult::whole)
            .transpose()
            .map_err(invalid)?;
    } else if b.job_type.is_some() || b.result.is_some() {
        return Err(ApiError::Unprocessable(
            "job_type and result belong to jobs".into(),
        ));
    }
    s.validate(kind).map_err(invalid)?;
    Ok(s)
}

#[utoipa::path(post, path = "/internal/v1/{kind}/{id}/{action}", tag = "ingest",
    params(("kind" = String, Path, description = "videos or jobs"),
           ("id" = String, Path),
           ("action" = String, Path, description = "progress, transition or heartbeat")),
    request_body = IngestBody,
    responses((status = 200, description = "Applied", body = IngestAnswer),
              (status = 400, description = "Malformed body or id", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 403, description = "Not a worker token", body = crate::error::ErrorBody),
              (status = 409, description = "Stale: the store holds something newer", body = IngestAnswer),
              (status = 413, body = crate::error::ErrorBody),
              (status = 422, description = "Invalid state, or a heartbeat for an unknown record", body = IngestAnswer)),
    security(("bearer" = [])))]
pub async fn ingest(
    State(state): State<ReadState>,
    Worker(p): Worker,
    PathParams((kind, id, action)): PathParams<(String, String, String)>,
    body: Result<Json<IngestBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = key_of(p.tenant, &kind, &id)?;
    let Json(b) = body.map_err(|e| match e {
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!("at most {BODY_LIMIT} bytes"))
        }
        other => ApiError::BadRequest(other.body_text()),
    })?;
    let fence = Fence::new(b.fence.generation, b.fence.attempt, b.fence.seq).map_err(invalid)?;
    let write = match action.as_str() {
        "heartbeat" => Write::heartbeat(key, fence),
        "progress" | "transition" => {
            let s = state_of(&key, &b)?;
            if action == "progress" && !s.status.is_active() {
                return Err(ApiError::Unprocessable(
                    "progress is for PROCESSING/RUNNING; report other statuses as a transition"
                        .into(),
                ));
            }
            Write::set(key, fence, s).map_err(invalid)?
        }
        _ => return Err(ApiError::NotFound),
    }
    .external();
    // A write that creates the record may have raced our database to one of its tasks: have
    // read-repair look (it takes the record back if the task is ours). Heartbeats never create.
    let creates = !matches!(action.as_str(), "heartbeat")
        && state.on_miss.is_some()
        && state.store.get(&write.key).await?.is_none();
    let outcome = state.store.apply(&write).await?;
    match outcome {
        Outcome::Applied { .. } if creates => {
            if let Some(hook) = &state.on_miss {
                hook(&write.key);
            }
        }
        Outcome::Rejected {
            reason: reason @ RejectReason::OwnedByDatabase,
        } => tracing::warn!(
            tenant = %write.key.tenant, task = %write.key.task, %reason,
            "ingest write refused: the task belongs to our database"
        ),
        _ => {}
    }
    let (status, answer) = match outcome {
        Outcome::Applied { rev } => (
            StatusCode::OK,
            IngestAnswer {
                outcome: "applied",
                rev: Some(rev),
                current: None,
                reason: None,
            },
        ),
        Outcome::Stale { current, rev } => (
            StatusCode::CONFLICT,
            IngestAnswer {
                outcome: "stale",
                rev: Some(rev),
                current: Some(FenceBody {
                    generation: current.generation,
                    attempt: current.attempt,
                    seq: current.seq,
                }),
                reason: None,
            },
        ),
        Outcome::Rejected { reason } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            IngestAnswer {
                outcome: "rejected",
                rev: None,
                current: None,
                reason: Some(reason.to_string()),
            },
        ),
    };
    Ok((status, Json(answer)).into_response())
}
