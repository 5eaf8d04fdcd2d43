//! The front end's Excel enroll (docs/contract.md §7): `POST /api/v1/enrollments/lecture_enroll_from_excel/`.
//!
//! A `multipart/form-data` body with `file` (the .xlsx), `lecture_id`, `password_mode`
//! (`phone_last4 | fixed | random`), `initial_password` (`""` unless `fixed`, then at least four
//! characters) and an optional `session_id` (a session of the lecture; the lecture's first
//! when absent). It starts the same `excel_parsing` job as `POST /api/v1/jobs/`, with the options
//! in the job's payload ([`jobpulse_domain::enroll`]), and answers `{job_id, status}` (plus
//! `job_type`); progress and the result are the job's (docs/contract.md §3).
//!
//! Everything is checked before anything is stored: a missing or unknown field, an unknown
//! mode, a short fixed password, another tenant's (or a missing) lecture or a session of another
//! lecture is a 4xx and creates no job and no stored file. Staff roles only (403 otherwise).
//! `Idempotency-Key` is honoured as on the job submit.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use jobpulse_db::NewAiJob;
use jobpulse_domain::JobType;
use jobpulse_domain::enroll::{EnrollOptions, PasswordMode};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Browser;
use crate::routes::jobs::{finish_submit, idempotency_key, positive, reject};
use crate::routes::upload;
use crate::state::AppState;

pub const PATH: &str = "/api/v1/enrollments/lecture_enroll_from_excel/";

/// Longest text field (ids, mode, password) read from the form.
const MAX_TEXT_FIELD: usize = 1024;

pub fn router(state: AppState) -> Router {
    let limit = usize::try_from(state.limits.job_file_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    Router::new()
        .route(PATH, post(enroll).layer(DefaultBodyLimit::max(limit)))
        .with_state(state)
}

/// The form of an Excel enroll (documentation only: the route reads the multipart body itself).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EnrollForm {
    /// The students sheet (.xlsx; the first sheet is read).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The lecture to enroll the students into (one of the caller's tenant).
    pub lecture_id: i64,
    /// `phone_last4` (the last four digits of the student's phone), `fixed`
    /// (`initial_password` for everyone) or `random` (generated, returned in the result's
    /// `credentials`).
    #[schema(example = "random")]
    pub password_mode: String,
    /// Always sent: `""` unless `password_mode` is `fixed`, then 4 to 128 characters.
    pub initial_password: String,
    /// A session of the lecture; the lecture's first session when absent.
    pub session_id: Option<i64>,
}

#[derive(Default)]
struct Form {
    file: Option<(upload::Spooled, String)>,
    lecture_id: Option<i64>,
    password_mode: Option<String>,
    initial_password: Option<String>,
    session_id: Option<i64>,
}

async fn text(field: axum::extract::multipart::Field<'_>, limit: u64) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let t = field.text().await.map_err(upload::multipart_error(limit))?;
    if t.len() > MAX_TEXT_FIELD {
        return Err(ApiError::BadRequest(format!(
            "{name}: at most {MAX_TEXT_FIELD} bytes"
        )));
    }
    Ok(t)
}

async fn read_form(state: &AppState, mut mp: Multipart) -> Result<Form, ApiError> {
    let limit = state.limits.job_file_bytes;
    let bad = upload::multipart_error(limit);
    let mut form = Form::default();
    while let Some(mut field) = mp.next_field().await.map_err(&bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        let dup = || ApiError::BadRequest(format!("{name} is sent twice"));
        match name.as_str() {
            "file" => {
                if form.file.is_some() {
                    return Err(dup());
                }
                let file_name = field.file_name().unwrap_or("students.xlsx").to_owned();
                let spool = upload::spool(&mut field, state, limit).await?;
                form.file = Some((spool, file_name));
            }
            "lecture_id" | "session_id" => {
                let t = text(field, limit).await?;
                let slot = if name == "lecture_id" {
                    &mut form.lecture_id
                } else {
                    &mut form.session_id
                };
                if slot.is_some() {
                    return Err(dup());
                }
                // An empty session_id is "not given" (form libraries send empty fields).
                if !t.trim().is_empty() {
                    *slot = Some(positive(&t, &name)?);
                }
            }
            "password_mode" | "initial_password" => {
                let t = text(field, limit).await?;
                let slot = if name == "password_mode" {
                    &mut form.password_mode
                } else {
                    &mut form.initial_password
                };
                if slot.is_some() {
                    return Err(dup());
                }
                *slot = Some(t);
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {:?}; send file, lecture_id, password_mode, initial_password, \
                     session_id",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(form)
}

#[utoipa::path(post, path = "/api/v1/enrollments/lecture_enroll_from_excel/", tag = "jobs",
    request_body(content = EnrollForm, content_type = "multipart/form-data",
        description = "The front end's Excel enroll (docs/contract.md §7): starts an `excel_parsing` job"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same tenant → the same job")),
    responses((status = 201, description = "Queued; PENDING in the read model. Poll /api/v1/jobs/{job_id}/progress/", body = crate::routes::jobs::Submitted),
              (status = 200, description = "An earlier enroll with the same Idempotency-Key", body = crate::routes::jobs::Submitted),
              (status = 400, description = "A missing or unknown field, an unknown password_mode, a fixed initial_password under 4 characters", body = crate::error::ErrorBody),
              (status = 403, description = "Not a staff role", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody),
              (status = 429, description = "Over the per-user submit rate (`Retry-After` says when to retry)", body = crate::error::ErrorBody),
              (status = 422, description = "The lecture (or the session in it) does not exist in the caller's tenant; the file is empty", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn enroll(
    State(state): State<AppState>,
    Browser(p): Browser,
    headers: HeaderMap,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    if !p.is_staff() {
        return Err(ApiError::Forbidden("enrolling students needs a staff role"));
    }
    let idem = idempotency_key(&headers)?;
    let mp = mp.map_err(|e| {
        ApiError::BadRequest(format!("send multipart/form-data: {}", e.body_text()))
    })?;
    let form = read_form(&state, mp).await?;
    let (options, lecture_id) = check(&state, &p, &form).await?;
    let job_type = JobType::parse(JobType::EXCEL_PARSING)?;
    let mut new = NewAiJob::new(p.tenant, job_type.clone());
    let mut payload = serde_json::Map::new();
    options.write_to(&mut payload);
    crate::credentials::seal_payload(&mut payload, p.tenant, state.credentials.as_ref())?;
    new.payload = serde_json::Value::Object(payload);
    new.lecture_id = Some(lecture_id);
    new.idempotency_key = idem;
    new.created_by = p.user_id.clone();
    // Every check passed: this enroll writes, so it counts against the user's submit rate.
    state.submit_rate.check(&p)?;
    let Some(spec) = state.catalog.describe(&job_type) else {
        let msg = format!(
            "{} has no handler in this deployment (no AI worker registered for it)",
            JobType::EXCEL_PARSING
        );
        return reject(&state, new, msg).await;
    };
    finish_submit(&state, new, spec, form.file).await
}

/// The form's checks, in the order a person fixes them: fields, mode, password, lecture,
/// session. Nothing is stored before they all pass.
async fn check(
    state: &AppState,
    p: &Principal,
    form: &Form,
) -> Result<(EnrollOptions, i64), ApiError> {
    let missing = |what: &str| ApiError::BadRequest(format!("{what} is required"));
    if form.file.is_none() {
        return Err(missing("file (the .xlsx of students)"));
    }
    let lecture_id = form.lecture_id.ok_or_else(|| missing("lecture_id"))?;
    let mode = form
        .password_mode
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| missing("password_mode (phone_last4, fixed or random)"))?;
    let mode = PasswordMode::parse(mode).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let password = form.initial_password.as_deref().unwrap_or_default();
    let options = EnrollOptions::parse(mode, password, form.session_id)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if state.db.get_lecture(p.tenant, lecture_id).await?.is_none() {
        return Err(ApiError::Unprocessable(format!(
            "lecture {lecture_id} not found"
        )));
    }
    if let Some(session) = options.session_id {
        let sessions = state.db.list_lecture_sessions(p.tenant, lecture_id).await?;
        if !sessions.iter().any(|s| s.id == session) {
            return Err(ApiError::Unprocessable(format!(
                "session {session} is not a session of lecture {lecture_id}"
            )));
        }
    }
    Ok((options, lecture_id))
}
