//! One-object uploads: init (a `PENDING` video and its upload URL), refresh-url, complete (the
//! object checked, the video `UPLOADED` and queued) — and [`finish`], which multipart's complete
//! shares.

use super::*;

/// `POST /api/v1/media/videos/upload/init/` (the front end's fields; `show_watermark`,
/// `allow_skip`, `max_speed`, `folder` and `description` are accepted and not used).
#[derive(Debug, Deserialize, ToSchema)]
pub struct InitRequest {
    /// The session the video belongs to (an id; a numeric string is accepted).
    #[schema(value_type = Option<i64>)]
    pub session: Option<serde_json::Value>,
    pub title: Option<String>,
    /// The client's file name (only its extension is kept, in the storage key).
    pub filename: Option<String>,
    /// What the browser will send as `Content-Type` on the PUT (`File.type`).
    pub content_type: Option<String>,
    #[schema(value_type = Option<bool>)]
    pub show_watermark: Option<serde_json::Value>,
    #[schema(value_type = Option<bool>)]
    pub allow_skip: Option<serde_json::Value>,
    #[schema(value_type = Option<f64>)]
    pub max_speed: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub folder: Option<serde_json::Value>,
    pub description: Option<String>,
}

/// The answer of upload init.
#[derive(Debug, Serialize, ToSchema)]
pub struct InitResponse {
    /// The new video, `PENDING`.
    pub video: VideoRecord,
    /// Absolute URL to PUT the file to, with `Content-Type: content_type`; expires after
    /// `expires_in` seconds (then 403: ask refresh-url for a new one).
    pub upload_url: String,
    pub content_type: String,
    /// The storage key the object is written to.
    pub file_key: String,
    pub expires_in: u64,
}

fn session_of(v: Option<&serde_json::Value>) -> Result<Option<i64>, ApiError> {
    let bad = || ApiError::BadRequest("session must be a positive integer".into());
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().filter(|n| *n > 0).map(Some).ok_or_else(bad)
        }
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn title_of(title: Option<&str>, filename: &str) -> Result<String, ApiError> {
    if let Some(t) = title.map(str::trim).filter(|t| !t.is_empty()) {
        if t.chars().count() > 200 {
            return Err(ApiError::BadRequest("title: at most 200 characters".into()));
        }
        return Ok(t.to_owned());
    }
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s);
    let clean: String = stem.chars().filter(|c| !c.is_control()).take(200).collect();
    Ok(if clean.trim().is_empty() {
        "Untitled video".into()
    } else {
        clean.trim().to_owned()
    })
}

#[utoipa::path(post, path = "/api/v1/media/videos/upload/init/", tag = "upload",
    request_body = InitRequest,
    responses((status = 201, description = "A PENDING video and the URL to PUT the file to", body = InitResponse),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, description = "Needs a staff role", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown session", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn init(
    State(state): State<AppState>,
    Staff(p): Staff,
    req: Result<Json<InitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let session = session_of(req.session.as_ref())?;
    let filename = req.filename.as_deref().unwrap_or("upload");
    if filename.len() > 1024 {
        return Err(ApiError::BadRequest("filename: at most 1024 bytes".into()));
    }
    if req
        .description
        .as_ref()
        .is_some_and(|d| d.len() > 64 * 1024)
    {
        return Err(ApiError::BadRequest("description: at most 64 KiB".into()));
    }
    let title = title_of(req.title.as_deref(), filename)?;
    let ct = content_type(req.content_type.as_deref())?;
    let key = keys::upload_key(p.tenant, keys::UploadKind::Video, filename);
    let committed = state
        .db
        .create_pending_video(p.tenant, session, &title, key.as_str(), &ct)
        .await?;
    state.publish(&committed.outbox).await;
    let video = committed.value;
    let upload_url = single_url(&state, &video, &ct).await?;
    let answer = InitResponse {
        video: record(&state, &video),
        upload_url,
        content_type: ct,
        file_key: key.to_string(),
        expires_in: state.limits.upload_url_ttl.as_secs(),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `POST …/{id}/upload/refresh-url/`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// Default: the content type of the init.
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshResponse {
    pub upload_url: String,
    pub content_type: String,
    pub expires_in: u64,
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/refresh-url/", tag = "upload",
    params(("id" = i64, Path)), request_body = RefreshRequest,
    responses((status = 200, description = "A fresh URL for the same object", body = RefreshResponse),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The upload is over (the video left PENDING)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn refresh_url(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<RefreshRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let (video, up) = pending_upload(&state, p.tenant, id).await?;
    let ct = match req.content_type.as_deref() {
        Some(ct) => content_type(Some(ct))?,
        None => up.content_type.clone(),
    };
    if ct != up.content_type {
        state
            .db
            .update_video_upload(p.tenant, id, &ct, up.multipart_id.as_deref())
            .await?;
    }
    let upload_url = single_url(&state, &video, &ct).await?;
    Ok(Json(RefreshResponse {
        upload_url,
        content_type: ct,
        expires_in: state.limits.upload_url_ttl.as_secs(),
    })
    .into_response())
}

/// What complete answers: the video, `UPLOADED` (or further along when completed before).
#[derive(Debug, Serialize, ToSchema)]
pub struct CompleteResponse {
    pub video: VideoRecord,
    /// True when this call queued the video; false when it had been completed before.
    pub queued: bool,
}

/// The body of `upload/complete/` (the front end sends `{ok: true}`; nothing is required).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CompleteRequest {
    pub ok: Option<bool>,
}

fn failed_answer(video: &Video) -> Response {
    let reason = video.error_reason.as_deref().unwrap_or("failed");
    let (status, code) = if reason == SOURCE_TOO_LARGE {
        (StatusCode::PAYLOAD_TOO_LARGE, SOURCE_TOO_LARGE)
    } else {
        (StatusCode::CONFLICT, SOURCE_NOT_FOUND_OR_EMPTY)
    };
    error_response(status, code, format!("video {} failed: {reason}", video.id))
}

/// Checks the uploaded object and moves the video on: `UPLOADED` + queued, or `FAILED` with
/// 409/413. A video no longer `PENDING` is answered as it is.
pub(super) async fn finish(
    state: &AppState,
    p: &Principal,
    video: Video,
) -> Result<Response, ApiError> {
    if video.status != VideoStatus::Pending {
        return Ok(already(state, &video));
    }
    let key = key_of(&video)?;
    let reason = match state
        .storage
        .verify_upload(&key, state.limits.video_bytes)
        .await
    {
        Ok(_) => None,
        Err(StorageError::NotFound { .. } | StorageError::Empty { .. }) => {
            Some(SOURCE_NOT_FOUND_OR_EMPTY)
        }
        Err(StorageError::TooLarge { .. }) => {
            if let Err(e) = state.storage.delete(&key).await {
                tracing::warn!(error = %e, "deleting an oversized upload failed");
            }
            Some(SOURCE_TOO_LARGE)
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(reason) = reason {
        let committed = state.db.fail_upload(p.tenant, video.id, reason).await?;
        state.publish(&committed.outbox).await;
        if committed.value.status == VideoStatus::Failed {
            return Ok(failed_answer(&committed.value));
        }
        return Ok(already(state, &committed.value));
    }
    let committed = state.db.complete_upload(p.tenant, video.id).await?;
    state.publish(&committed.outbox).await;
    let queued = matches!(committed.value, UploadCompletion::Queued(_));
    let video = committed.value.video();
    if !queued && video.status == VideoStatus::Failed {
        return Ok(failed_answer(video));
    }
    Ok(Json(CompleteResponse {
        video: record(state, video),
        queued,
    })
    .into_response())
}

/// The answer to a complete of a video that already left PENDING.
pub(super) fn already(state: &AppState, video: &Video) -> Response {
    let failed_upload = video.status == VideoStatus::Failed
        && matches!(
            video.error_reason.as_deref(),
            Some(SOURCE_NOT_FOUND_OR_EMPTY | SOURCE_TOO_LARGE)
        );
    if failed_upload {
        return failed_answer(video);
    }
    Json(CompleteResponse {
        video: record(state, video),
        queued: false,
    })
    .into_response()
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/complete/", tag = "upload",
    params(("id" = i64, Path)), request_body = CompleteRequest,
    responses((status = 200, description = "UPLOADED and queued (or already completed: `queued` false)", body = CompleteResponse),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "`source_not_found_or_empty`: nothing (or nothing but zero bytes) was uploaded; the video is FAILED", body = crate::error::ErrorBody),
              (status = 413, description = "`source_too_large`: the object is over the size limit (deleted); the video is FAILED", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    // The body is optional: `{ok: true}`, `{}` or nothing.
    if let Err(e) = req
        && !matches!(e, JsonRejection::MissingJsonContentType(_))
    {
        return Err(e.into());
    }
    let video = video_of(&state, p.tenant, id).await?;
    finish(&state, &p, video).await
}
