//! AI/tool jobs (docs/contract.md §6): submit, list, get, full result, cancel, output files —
//! database-backed, not polled.
//!
//! Submit accepts `multipart/form-data` (`job_type`, `file`, `lecture_id`, optional `payload`
//! JSON text) or a JSON body (`{"job_type", "payload", "lecture_id"}`) and honours an
//! `Idempotency-Key` header (the same key for the same tenant returns the same job). A job type
//! with no handler is recorded as REJECTED_BAD_INPUT and answered 422 with that job — never a
//! silent success. The job is PENDING in the read model before the call returns.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use jobpulse_db::{AiJob, AiJobFilter, CancelOutcome, NewAiJob};
use jobpulse_domain::{JobId, JobStatus, JobType};
use jobpulse_media::{StorageKey, keys};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Browser, Id, PathParams, QueryParams};
use crate::routes::upload;
use crate::state::{AppState, JobSpec};

mod submit;

pub use submit::{__path_submit, SubmitJson, Submitted, submit};
pub(crate) use submit::{finish_submit, idempotency_key, positive, reject};

pub fn router(state: AppState) -> Router {
    let limit = usize::try_from(state.limits.job_file_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    Router::new()
        .route(
            "/api/v1/jobs/",
            post(submit).layer(DefaultBodyLimit::max(limit)).get(list),
        )
        .route("/api/v1/jobs/{job_id}/", get(detail))
        .route("/api/v1/jobs/{job_id}/result/", get(result))
        .route("/api/v1/jobs/{job_id}/cancel/", post(cancel))
        .route("/api/v1/jobs/{job_id}/files/{filename}", get(file))
        .with_state(state)
}

/// A job as the management API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRecord {
    pub job_id: String,
    pub job_type: String,
    #[schema(example = "PENDING")]
    pub status: &'static str,
    pub lecture_id: Option<i64>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub error_message: Option<String>,
    /// The read-model summary of the result, when it is small and public.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Map<String, serde_json::Value>>,
    /// Where the full result is fetched (terminal jobs with a stored result).
    pub result_url: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub results: Vec<JobRecord>,
    pub next: Option<String>,
}

fn record(j: &AiJob) -> JobRecord {
    let result = j.result.as_ref();
    JobRecord {
        job_id: j.job_id.to_string(),
        job_type: j.job_type.to_string(),
        status: j.status.as_str(),
        lecture_id: j.lecture_id,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        error_message: j.error_message.clone(),
        // The list and detail never show initial passwords (the progress and result routes do).
        result: result.and_then(|r| r.inline.clone()).map(|mut m| {
            m.remove(jobpulse_db::sealed::SEALED_CREDENTIALS_KEY);
            m
        }),
        result_url: result
            .filter(|r| r.full_available)
            .map(|_| crate::render::result_url(&j.job_id)),
        created_at: j.created_at_ms,
        updated_at: j.updated_at_ms,
    }
}

/// A job of the caller's tenant that the caller may see (staff-only types → 404 for others).
async fn visible_job(state: &AppState, p: &Principal, id: &JobId) -> Result<AiJob, ApiError> {
    let job = state
        .db
        .get_ai_job(p.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if job.job_type.is_staff_only() && !p.is_staff() {
        return Err(ApiError::NotFound);
    }
    Ok(job)
}

/// Query of the job list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub job_type: Option<String>,
    /// 1..=200, default 50.
    pub limit: Option<u32>,
    /// Cursor from `next`: `<created_at>.<job_id>`.
    pub before: Option<String>,
}

#[utoipa::path(get, operation_id = "list_jobs", path = "/api/v1/jobs/", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Browser(p): Browser,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<JobStatus>()
                .map_err(|_| ApiError::BadRequest(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let job_type = q.job_type.as_deref().map(JobType::parse).transpose()?;
    let before = q
        .before
        .as_deref()
        .map(|c| {
            let (ms, id) = c
                .split_once('.')
                .ok_or_else(|| ApiError::BadRequest("malformed cursor".into()))?;
            let ms = ms
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest("malformed cursor".into()))?;
            Ok::<_, ApiError>((ms, JobId::parse(id)?))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let staff = p.is_staff();
    // Staff-only types are left out by the query, so the page and its cursor hold visible
    // jobs only.
    let jobs = state
        .db
        .list_ai_jobs(
            p.tenant,
            &AiJobFilter {
                status,
                job_type: job_type.clone(),
                before,
                limit,
                hide_staff_only: !staff,
            },
        )
        .await?;
    let next = (jobs.len() == limit as usize)
        .then(|| jobs.last())
        .flatten()
        .map(|j| {
            // The next page keeps this page's filters.
            let mut next = format!(
                "/api/v1/jobs/?limit={limit}&before={}.{}",
                j.created_at_ms, j.job_id
            );
            if let Some(s) = status {
                next.push_str(&format!("&status={}", s.as_str()));
            }
            if let Some(t) = &job_type {
                next.push_str(&format!("&job_type={}", t.as_str()));
            }
            next
        });
    let results = jobs.iter().map(record).collect();
    Ok(Json(JobPage { results, next }).into_response())
}

#[utoipa::path(get, operation_id = "job_detail", path = "/api/v1/jobs/{job_id}/", tag = "jobs",
    params(("job_id" = String, Path)),
    responses((status = 200, body = JobRecord), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    Browser(p): Browser,
    Id(id): Id<JobId>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &p, &id).await?;
    Ok(Json(record(&job)).into_response())
}

#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/result/", tag = "jobs",
    params(("job_id" = String, Path)),
    responses((status = 200, description = "The full result (for excel_parsing: with credentials; staff only)", content_type = "application/json"),
              (status = 404, description = "Unknown job, no result yet, or not visible to this role", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn result(
    State(state): State<AppState>,
    Browser(p): Browser,
    Id(id): Id<JobId>,
) -> Result<Response, ApiError> {
    visible_job(&state, &p, &id).await?;
    let full = state
        .db
        .get_ai_result(p.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let full = match full {
        serde_json::Value::Object(m) if crate::credentials::has_sealed(&m) => {
            serde_json::Value::Object(crate::credentials::reveal(
                m,
                id.as_str(),
                state.credentials.as_ref(),
                crate::credentials::now_ms(),
            ))
        }
        other => other,
    };
    let mut res = Json(full).into_response();
    // Credentials may be inside: never cache.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The answer to a cancel.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    pub job_id: String,
    /// `ended` (it had not started), `requested` (its worker stops it), `not_active`.
    pub outcome: &'static str,
}

#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/cancel/", tag = "jobs",
    params(("job_id" = String, Path)),
    responses((status = 202, body = Cancelled), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Browser(p): Browser,
    Id(id): Id<JobId>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &p, &id).await?;
    if job.created_by.is_some() && job.created_by != p.user_id && !p.is_staff() {
        return Err(ApiError::Forbidden(
            "only staff can cancel another user's job",
        ));
    }
    let committed = state.db.cancel_ai_job(p.tenant, &id).await?;
    state.publish(&committed.outbox).await;
    let outcome = match committed.value {
        CancelOutcome::Ended => "ended",
        CancelOutcome::Requested => "requested",
        CancelOutcome::NotActive => "not_active",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Cancelled {
            job_id: id.to_string(),
            outcome,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/files/{filename}", tag = "jobs",
    params(("job_id" = String, Path), ("filename" = String, Path)),
    responses((status = 200, description = "A file the job produced", content_type = "application/octet-stream"),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn file(
    State(state): State<AppState>,
    Browser(p): Browser,
    PathParams((id, name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&id)?;
    let ok_name = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok_name {
        return Err(ApiError::BadRequest("malformed file name".into()));
    }
    visible_job(&state, &p, &id).await?;
    let key = keys::job_output_key(p.tenant, &id, &name);
    let obj = state.storage.get_stream(&key).await?;
    let mut res = Response::new(Body::from_stream(obj.stream.map_err(std::io::Error::other)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(keys::content_type_for(key.as_str())),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(&obj.info.size.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    Ok(res)
}
