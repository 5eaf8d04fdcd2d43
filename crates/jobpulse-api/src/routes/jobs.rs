//! AI/tool jobs (CONTRACT.md §6): submit, list, get, full result, cancel, output files —
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

struct Submission {
    job_type: String,
    payload: serde_json::Value,
    lecture_id: Option<i64>,
    file: Option<(upload::Spooled, String)>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJson {
    pub job_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
    pub lecture_id: Option<i64>,
}

pub(crate) fn positive(s: &str, what: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{what} must be a positive integer")))
}

async fn read_multipart(state: &AppState, mut mp: Multipart) -> Result<Submission, ApiError> {
    let limit = state.limits.job_file_bytes;
    let bad = upload::multipart_error(limit);
    let mut sub = Submission {
        job_type: String::new(),
        payload: serde_json::json!({}),
        lecture_id: None,
        file: None,
    };
    while let Some(mut field) = mp.next_field().await.map_err(&bad)? {
        match field.name().unwrap_or_default() {
            "job_type" => sub.job_type = field.text().await.map_err(&bad)?.trim().to_owned(),
            "lecture_id" => {
                let t = field.text().await.map_err(&bad)?;
                if !t.trim().is_empty() {
                    sub.lecture_id = Some(positive(&t, "lecture_id")?);
                }
            }
            "payload" => {
                let t = field.text().await.map_err(&bad)?;
                if t.len() > PAYLOAD_LIMIT {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "payload: at most {} KiB",
                        PAYLOAD_LIMIT / 1024
                    )));
                }
                sub.payload = serde_json::from_str(&t)
                    .map_err(|e| ApiError::BadRequest(format!("payload is not JSON: {e}")))?;
            }
            "file" => {
                if sub.file.is_some() {
                    return Err(ApiError::BadRequest("send one file".into()));
                }
                let name = field.file_name().unwrap_or("input").to_owned();
                let spool = upload::spool(&mut field, state, limit).await?;
                sub.file = Some((spool, name));
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {:?}; send job_type, file, lecture_id, payload",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(sub)
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 128 printable characters".into())
        })?;
    Ok(Some(s.to_owned()))
}

/// The answer to a submit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    pub job_id: String,
    pub job_type: String,
    #[schema(example = "PENDING")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/jobs/", tag = "jobs",
    request_body(content = SubmitJson, description = "JSON, or multipart/form-data with job_type, file, lecture_id, payload"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same tenant → the same job")),
    responses((status = 201, description = "Queued; PENDING in the read model", body = Submitted),
              (status = 200, description = "An earlier submit with the same Idempotency-Key", body = Submitted),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, description = "A staff-only job type", body = crate::error::ErrorBody),
              (status = 413, description = "A JSON body over 68 KiB, a payload over 64 KiB, a file over the limit", body = crate::error::ErrorBody),
              (status = 422, description = "Rejected (unknown job type, missing file): recorded as REJECTED_BAD_INPUT for staff; for other roles an unknown type is refused with an error and nothing is recorded", body = Submitted),
              (status = 429, description = "Over the per-user submit rate (`Retry-After` says when to retry)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    Browser(p): Browser,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let idem = idempotency_key(&headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sub = if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        read_multipart(&state, mp).await?
    } else if content_type.starts_with("application/json") {
        // A JSON submit has no file: its body is bounded by the payload's cap, not the file's.
        let bytes = axum::body::to_bytes(req.into_body(), JSON_BODY_LIMIT)
            .await
            .map_err(|_| {
                ApiError::PayloadTooLarge(format!(
                    "a JSON submit is at most {} KiB (its payload at most {} KiB)",
                    JSON_BODY_LIMIT / 1024,
                    PAYLOAD_LIMIT / 1024
                ))
            })?;
        let body: SubmitJson = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
        if body
            .payload
            .as_ref()
            .is_some_and(|v| v.to_string().len() > PAYLOAD_LIMIT)
        {
            return Err(ApiError::PayloadTooLarge(format!(
                "payload: at most {} KiB",
                PAYLOAD_LIMIT / 1024
            )));
        }
        Submission {
            job_type: body.job_type,
            payload: body.payload.unwrap_or_else(|| serde_json::json!({})),
            lecture_id: body.lecture_id,
            file: None,
        }
    } else {
        return Err(ApiError::BadRequest(
            "send multipart/form-data or application/json".into(),
        ));
    };
    if sub.job_type.is_empty() {
        return Err(ApiError::BadRequest("job_type is required".into()));
    }
    let job_type = JobType::parse(&sub.job_type)?;
    if !sub.payload.is_object() {
        return Err(ApiError::BadRequest("payload must be a JSON object".into()));
    }
    let mut sub = sub;
    if job_type.as_str() == JobType::EXCEL_PARSING
        && let Some(payload) = sub.payload.as_object_mut()
    {
        // The enroll options may come in the payload too (the enroll route writes them
        // there); a fixed password is stored sealed.
        jobpulse_domain::enroll::EnrollOptions::from_payload(&serde_json::Value::Object(
            payload.clone(),
        ))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        crate::credentials::seal_payload(payload, p.tenant, state.credentials.as_ref())?;
    }
    let mut new = NewAiJob::new(p.tenant, job_type.clone());
    new.payload = sub.payload.clone();
    new.lecture_id = sub.lecture_id;
    new.idempotency_key = idem;
    new.created_by = p.user_id.clone();
    let Some(spec) = state.catalog.describe(&job_type) else {
        let msg = format!(
            "unknown job type {:?}: no handler is registered for it (known: {})",
            job_type.as_str(),
            state.catalog.known().join(", ")
        );
        // Only staff get a recorded REJECTED_BAD_INPUT job (for their work box); anyone else
        // is refused before anything is written.
        if !p.is_staff() {
            return Err(ApiError::Unprocessable(msg));
        }
        state.submit_rate.check(&p)?;
        return reject(&state, new, msg).await;
    };
    if (spec.staff_only || job_type.is_staff_only()) && !p.is_staff() {
        return Err(ApiError::Forbidden("this job type needs a staff role"));
    }
    if let Some(l) = sub.lecture_id
        && state.db.get_lecture(p.tenant, l).await?.is_none()
    {
        return Err(ApiError::Unprocessable(format!("lecture {l} not found")));
    }
    if job_type.as_str() == JobType::EXCEL_PARSING && sub.lecture_id.is_none() {
        return Err(ApiError::BadRequest(
            "excel_parsing needs lecture_id (the lecture to enrol the students into)".into(),
        ));
    }
    match (&sub.file, spec.needs_file) {
        (None, true) => {
            state.submit_rate.check(&p)?;
            return reject(&state, new, format!("{job_type} needs a file")).await;
        }
        (Some(_), false) => {
            return Err(ApiError::BadRequest(format!("{job_type} takes no file")));
        }
        _ => {}
    }
    // Every check passed: this submit writes (the file, the job), so it counts.
    state.submit_rate.check(&p)?;
    finish_submit(&state, new, spec, sub.file).await
}

pub(crate) async fn finish_submit(
    state: &AppState,
    mut new: NewAiJob,
    spec: JobSpec,
    file: Option<(upload::Spooled, String)>,
) -> Result<Response, ApiError> {
    new.max_attempts = spec.max_attempts;
    new.timeout = spec.timeout;
    let mut stored: Option<StorageKey> = None;
    if let Some((spool, name)) = &file {
        let key = keys::upload_key(new.tenant, keys::UploadKind::JobInput, name);
        state.storage.put_file(&key, spool).await?;
        new.input_file_key = Some(key.as_str().to_owned());
        stored = Some(key);
    }
    let committed = match state.db.submit_ai_job(new).await {
        Ok(c) => c,
        Err(e) => {
            if let Some(k) = &stored {
                let _ = state.storage.delete(k).await;
            }
            return Err(e.into());
        }
    };
    state.publish(&committed.outbox).await;
    let job = &committed.value.job;
    if !committed.value.created
        && let Some(k) = &stored
    {
        // An idempotent repeat: the first submit's file is the one the job uses.
        let _ = state.storage.delete(k).await;
    }
    let status = if committed.value.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Submitted {
            job_id: job.job_id.to_string(),
            job_type: job.job_type.to_string(),
            status: job.status.as_str(),
            error_message: job.error_message.clone(),
        }),
    )
        .into_response())
}

/// Largest `payload` (JSON text) of a submit, multipart or JSON.
pub(crate) const PAYLOAD_LIMIT: usize = 64 * 1024;
/// Largest JSON submit body: the payload and room for `job_type` and `lecture_id`.
const JSON_BODY_LIMIT: usize = PAYLOAD_LIMIT + 4 * 1024;
/// How much of a rejected submit's payload is kept (as text) for its error report.
const REJECTED_EXCERPT: usize = 512;

/// A rejected submit's payload as stored: the payload itself when small, otherwise an excerpt
/// of its JSON text and its size (a rejected input is kept to explain the rejection, not to
/// store what a client sent).
fn rejected_payload(payload: &serde_json::Value) -> serde_json::Value {
    let text = payload.to_string();
    if text.len() <= REJECTED_EXCERPT {
        return payload.clone();
    }
    let mut end = REJECTED_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::json!({ "excerpt": &text[..end], "bytes": text.len(), "truncated": true })
}

pub(crate) async fn reject(
    state: &AppState,
    mut new: NewAiJob,
    message: String,
) -> Result<Response, ApiError> {
    new.payload = rejected_payload(&new.payload);
    let committed = state.db.reject_ai_job(new, &message).await?;
    state.publish(&committed.outbox).await;
    let job = &committed.value.job;
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(Submitted {
            job_id: job.job_id.to_string(),
            job_type: job.job_type.to_string(),
            status: job.status.as_str(),
            error_message: job.error_message.clone().or(Some(message)),
        }),
    )
        .into_response())
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
