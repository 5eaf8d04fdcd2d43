//! Submitting a job: multipart or JSON, the idempotency key, the catalog's checks, the queued
//! row and its PENDING state published before the answer; a rejection recorded as
//! REJECTED_BAD_INPUT. (`routes::enroll` submits through the same [`finish_submit`].)

use super::*;

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
