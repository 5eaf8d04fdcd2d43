//! Direct uploads, the way the front end starts a video (CONTRACT.md §7): the browser sends the
//! bytes to storage itself, never through the API's JSON routes.
//!
//! | call | what happens |
//! |---|---|
//! | `POST /api/v1/media/videos/upload/init/` | a `PENDING` video (published at once: the progress URL answers `PENDING`) and an absolute `upload_url` |
//! | `PUT upload_url` | S3: a presigned PUT straight to the bucket. File storage: [`receive`] below |
//! | `POST …/{id}/upload/refresh-url/` | a fresh `upload_url` for the same object (the old one expired: 403) |
//! | `POST …/{id}/upload/complete/` | the object is checked (exists, non-empty, within the limit): `UPLOADED` + queued; missing or empty → 409 and `FAILED` `source_not_found_or_empty` |
//! | `POST …/{id}/upload/multipart/init/` | a multipart upload (S3's, or file storage's staging) |
//! | `POST …/{id}/upload/multipart/presign/` | one PUT URL per part number (≤ 50 per call) |
//! | `POST …/{id}/upload/multipart/complete/` | parts sorted, assembled, checked, `UPLOADED` + queued — no `upload/complete/` follows |
//! | `POST …/{id}/upload/multipart/abort/` | the multipart upload is dropped; the video stays `PENDING` |
//!
//! Completing is idempotent by the video row's state: only a `PENDING` video is completed (in
//! one transaction with its transcode job), so a second complete — or two racing — answers the
//! video as it is and never queues twice.
//!
//! # File storage's upload URLs
//!
//! Without object storage the API takes the PUT itself, at
//! `{public_url}/media/upload/{tenant}/{video}/{expires}/{sig}` (parts add
//! `?partNumber=N&uploadId=U`). `sig` is an HMAC ([`crate::signing::MediaSigner::tag`]) over
//! the tenant, the video, `expires` and the `Content-Type` the init named (a single PUT) or the
//! upload id and part number (a part), so a URL cannot be reused for another video, part or
//! content type. An expired or altered URL answers 403, as S3 does. The body is streamed to
//! storage under the size limit ([`jobpulse_media::MediaStorage::write`]) and the answer carries
//! the stored object's `ETag` (exposed by CORS). Only a `PENDING` video takes bytes.
//!
//! # Abandoned uploads
//!
//! [`sweep_abandoned`] (run periodically by [`spawn_sweeper`]) removes uploads never completed
//! within the retention: the open multipart upload, the object, then the row (deleted, with a
//! tombstone for the read model).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use jobpulse_db::{UploadCompletion, Video, VideoUpload};
use jobpulse_domain::{TenantId, VideoId, VideoStatus};
use jobpulse_media::{CompletedPart, StorageError, StorageKey, keys};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, error_response};
use crate::extract::{Id, Staff};
use crate::routes::media::{VideoRecord, record};
use crate::state::AppState;

/// The `error_reason` of a video whose upload never arrived (CONTRACT.md §7).
pub const SOURCE_NOT_FOUND_OR_EMPTY: &str = "source_not_found_or_empty";
/// The `error_reason` of a video whose uploaded object is over the size limit.
pub const SOURCE_TOO_LARGE: &str = "source_too_large";
/// Most part URLs one presign call hands out (the front end asks for ≤ 50).
pub const MAX_PRESIGN_PARTS: usize = 50;
/// Most parts a multipart upload may have (S3's limit).
pub const MAX_PARTS: usize = 10_000;
/// Largest JSON body of these routes (a complete with 10 000 parts is ~700 KB).
const JSON_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/media/videos/upload/init/", post(init))
        .route(
            "/api/v1/media/videos/{id}/upload/refresh-url/",
            post(refresh_url),
        )
        .route("/api/v1/media/videos/{id}/upload/complete/", post(complete))
        .route(
            "/api/v1/media/videos/{id}/upload/multipart/init/",
            post(multipart_init),
        )
        .route(
            "/api/v1/media/videos/{id}/upload/multipart/presign/",
            post(multipart_presign),
        )
        .route(
            "/api/v1/media/videos/{id}/upload/multipart/complete/",
            post(multipart_complete),
        )
        .route(
            "/api/v1/media/videos/{id}/upload/multipart/abort/",
            post(multipart_abort),
        )
        .route("/media/upload/{tenant}/{id}/{expires}/{sig}", put(receive))
        .layer(axum::extract::DefaultBodyLimit::max(JSON_LIMIT))
        .with_state(state)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(ApiError::from)
}

/// A `Content-Type` the upload may be stored as: a plain `type/subtype` (parameters allowed),
/// visible ASCII, at most 127 characters. Empty → `application/octet-stream` (a browser gives
/// `File.type = ""` for unknown types).
fn content_type(ct: Option<&str>) -> Result<String, ApiError> {
    let ct = ct.map(str::trim).unwrap_or_default();
    if ct.is_empty() {
        return Ok("application/octet-stream".into());
    }
    let ok = ct.len() <= 127
        && ct.bytes().all(|b| (0x20..0x7f).contains(&b))
        && ct
            .split(';')
            .next()
            .and_then(|m| m.trim().split_once('/'))
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
    if !ok {
        return Err(ApiError::BadRequest(
            "content_type must be a MIME type such as video/mp4 (at most 127 characters)".into(),
        ));
    }
    Ok(ct.to_owned())
}

/// The video of `tenant`, or 404 (unknown and other tenants' ids look the same).
async fn video_of(state: &AppState, tenant: TenantId, id: VideoId) -> Result<Video, ApiError> {
    state
        .db
        .get_video(tenant, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The upload row of a PENDING video; 409 when the video left PENDING.
async fn pending_upload(
    state: &AppState,
    tenant: TenantId,
    id: VideoId,
) -> Result<(Video, VideoUpload), ApiError> {
    let video = video_of(state, tenant, id).await?;
    if video.status != VideoStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "the upload of video {id} is over (the video is {})",
            video.status.as_str()
        )));
    }
    let up = state
        .db
        .video_upload(tenant, id)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("the upload of video {id} is over")))?;
    Ok((video, up))
}

fn key_of(video: &Video) -> Result<StorageKey, ApiError> {
    StorageKey::parse(&video.file_key).map_err(|e| ApiError::internal(e.0))
}

/// The absolute URL the browser PUTs the whole file to.
async fn single_url(state: &AppState, video: &Video, ct: &str) -> Result<String, ApiError> {
    let ttl = state.limits.upload_url_ttl;
    if state.storage.presigns() {
        let url = state
            .storage
            .presign_put(&key_of(video)?, ttl, Some(ct))
            .await
            .map_err(storage_error)?;
        return Ok(url.to_string());
    }
    let expires = (now_secs() + ttl.as_secs()).to_string();
    let (t, v) = (video.tenant.to_string(), video.id.to_string());
    let sig = state.signer.tag("put", &[&t, &v, &expires, ct]);
    Ok(format!(
        "{}/media/upload/{t}/{v}/{expires}/{sig}",
        state.public_url
    ))
}

/// The absolute URL the browser PUTs part `n` to.
async fn part_url(
    state: &AppState,
    video: &Video,
    upload_id: &str,
    n: u32,
) -> Result<String, ApiError> {
    let ttl = state.limits.upload_url_ttl;
    if state.storage.presigns() {
        let url = state
            .storage
            .presign_part(&key_of(video)?, upload_id, n, ttl)
            .await
            .map_err(storage_error)?;
        return Ok(url.to_string());
    }
    let expires = (now_secs() + ttl.as_secs()).to_string();
    let (t, v, ns) = (
        video.tenant.to_string(),
        video.id.to_string(),
        n.to_string(),
    );
    let sig = state
        .signer
        .tag("part", &[&t, &v, &expires, upload_id, &ns]);
    let mut url = url::Url::parse(&format!(
        "{}/media/upload/{t}/{v}/{expires}/{sig}",
        state.public_url
    ))
    .map_err(ApiError::internal)?;
    url.query_pairs_mut()
        .append_pair("partNumber", &ns)
        .append_pair("uploadId", upload_id);
    Ok(url.to_string())
}

/// Storage errors of these routes: a client's bad part list or upload id is its fault.
fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::InvalidParts(m) => ApiError::BadRequest(format!("parts: {m}")),
        StorageError::NoSuchUpload { .. } => {
            ApiError::Conflict("no such multipart upload (completed, aborted or unknown)".into())
        }
        StorageError::Invalid(m) => ApiError::BadRequest(m),
        other => other.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// init / refresh-url

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

// ---------------------------------------------------------------------------------------------
// complete

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
async fn finish(state: &AppState, p: &Principal, video: Video) -> Result<Response, ApiError> {
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
fn already(state: &AppState, video: &Video) -> Response {
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

// ---------------------------------------------------------------------------------------------
// multipart

#[derive(Debug, Deserialize, ToSchema)]
pub struct MultipartInitRequest {
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MultipartInitResponse {
    pub upload_id: String,
    pub video_id: i64,
    pub file_key: String,
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/multipart/init/", tag = "upload",
    params(("id" = i64, Path)), request_body = MultipartInitRequest,
    responses((status = 200, description = "A multipart upload of the video's object (an earlier open one is aborted)", body = MultipartInitResponse),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The video left PENDING", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn multipart_init(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<MultipartInitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let (video, up) = pending_upload(&state, p.tenant, id).await?;
    let ct = match req.content_type.as_deref() {
        Some(ct) => content_type(Some(ct))?,
        None => up.content_type.clone(),
    };
    let key = key_of(&video)?;
    if let Some(old) = &up.multipart_id
        && let Err(e) = state.storage.abort_multipart(&key, old).await
    {
        tracing::warn!(error = %e, "aborting the previous multipart upload failed");
    }
    let upload_id = state
        .storage
        .create_multipart(&key)
        .await
        .map_err(storage_error)?;
    if !state
        .db
        .update_video_upload(p.tenant, id, &ct, Some(&upload_id))
        .await?
    {
        // Completed or failed meanwhile: do not leave the new upload open.
        let _ = state.storage.abort_multipart(&key, &upload_id).await;
        return Err(ApiError::Conflict(format!(
            "the upload of video {id} is over"
        )));
    }
    Ok(Json(MultipartInitResponse {
        upload_id,
        video_id: id.get(),
        file_key: key.to_string(),
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PresignRequest {
    pub upload_id: String,
    /// 1 … 10 000, at most 50 per call.
    pub part_numbers: Vec<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresignResponse {
    /// Part number (as a string) → absolute URL to PUT that part to, without a
    /// `Content-Type`; the answer's `ETag` header is the part's ETag.
    pub urls: BTreeMap<String, String>,
    pub expires_in: u64,
}

/// The open multipart upload `upload_id` of a PENDING video, or 404.
async fn open_multipart(
    state: &AppState,
    tenant: TenantId,
    id: VideoId,
    upload_id: &str,
) -> Result<Video, ApiError> {
    let (video, up) = pending_upload(state, tenant, id).await?;
    if up.multipart_id.as_deref() != Some(upload_id) {
        return Err(ApiError::BadRequest(format!(
            "upload_id is not the open multipart upload of video {id}"
        )));
    }
    Ok(video)
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/multipart/presign/", tag = "upload",
    params(("id" = i64, Path)), request_body = PresignRequest,
    responses((status = 200, body = PresignResponse),
              (status = 400, description = "Not the open upload, or bad part numbers", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The video left PENDING", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn multipart_presign(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<PresignRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    if req.part_numbers.is_empty() || req.part_numbers.len() > MAX_PRESIGN_PARTS {
        return Err(ApiError::BadRequest(format!(
            "part_numbers: 1 to {MAX_PRESIGN_PARTS} numbers per call"
        )));
    }
    if let Some(n) = req
        .part_numbers
        .iter()
        .find(|n| **n == 0 || **n as usize > MAX_PARTS)
    {
        return Err(ApiError::BadRequest(format!(
            "part number {n} is outside 1 … {MAX_PARTS}"
        )));
    }
    let video = open_multipart(&state, p.tenant, id, &req.upload_id).await?;
    let mut urls = BTreeMap::new();
    for n in &req.part_numbers {
        urls.insert(
            n.to_string(),
            part_url(&state, &video, &req.upload_id, *n).await?,
        );
    }
    Ok(Json(PresignResponse {
        urls,
        expires_in: state.limits.upload_url_ttl.as_secs(),
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MultipartCompleteRequest {
    pub upload_id: String,
    /// `{ETag, PartNumber}` of every part, in any order.
    #[schema(value_type = Vec<Object>)]
    pub parts: Vec<CompletedPart>,
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/multipart/complete/", tag = "upload",
    params(("id" = i64, Path)), request_body = MultipartCompleteRequest,
    responses((status = 200, description = "Assembled, checked, UPLOADED and queued (or already completed: `queued` false)", body = CompleteResponse),
              (status = 400, description = "A bad part list (the upload stays open: correct it or abort)", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "`source_not_found_or_empty`, or not the open upload", body = crate::error::ErrorBody),
              (status = 413, description = "`source_too_large`", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn multipart_complete(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<MultipartCompleteRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    if req.parts.is_empty() || req.parts.len() > MAX_PARTS {
        return Err(ApiError::BadRequest(format!(
            "parts: 1 to {MAX_PARTS} entries"
        )));
    }
    let video = video_of(&state, p.tenant, id).await?;
    if video.status != VideoStatus::Pending {
        // Completed before (the front end may retry after a timeout): answer as it is.
        return Ok(already(&state, &video));
    }
    let video = open_multipart(&state, p.tenant, id, &req.upload_id).await?;
    let key = key_of(&video)?;
    if let Err(e) = state
        .storage
        .complete_multipart(&key, &req.upload_id, req.parts)
        .await
    {
        // A racing complete may have finished it: the row decides.
        let now = video_of(&state, p.tenant, id).await?;
        if now.status != VideoStatus::Pending {
            return Ok(already(&state, &now));
        }
        return Err(storage_error(e));
    }
    finish(&state, &p, video).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AbortRequest {
    pub upload_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AbortResponse {
    pub upload_id: String,
    pub aborted: bool,
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/upload/multipart/abort/", tag = "upload",
    params(("id" = i64, Path)), request_body = AbortRequest,
    responses((status = 200, description = "The multipart upload is gone (idempotent); the video stays PENDING until completed or cleaned up", body = AbortResponse),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn multipart_abort(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
    req: Result<Json<AbortRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let video = video_of(&state, p.tenant, id).await?;
    let up = state.db.video_upload(p.tenant, id).await?;
    let open = up
        .as_ref()
        .is_some_and(|u| u.multipart_id.as_deref() == Some(req.upload_id.as_str()));
    if open && let Some(up) = &up {
        state
            .storage
            .abort_multipart(&key_of(&video)?, &req.upload_id)
            .await
            .map_err(storage_error)?;
        state
            .db
            .update_video_upload(p.tenant, id, &up.content_type, None)
            .await?;
    }
    Ok(Json(AbortResponse {
        upload_id: req.upload_id,
        aborted: open,
    })
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// file storage: the API's own upload URL

/// `?partNumber=N&uploadId=U` of a part PUT.
#[derive(Debug, Deserialize)]
pub struct PartQuery {
    #[serde(rename = "partNumber")]
    pub part_number: Option<u32>,
    #[serde(rename = "uploadId")]
    pub upload_id: Option<String>,
}

fn denied(message: &str) -> Response {
    error_response(StatusCode::FORBIDDEN, "access_denied", message.to_owned())
}

#[utoipa::path(put, path = "/media/upload/{tenant}/{id}/{expires}/{sig}", tag = "upload",
    params(("tenant" = i64, Path), ("id" = i64, Path), ("expires" = u64, Path), ("sig" = String, Path),
           ("partNumber" = Option<u32>, Query), ("uploadId" = Option<String>, Query)),
    request_body(content_type = "application/octet-stream", description = "The file (or one part of it)"),
    responses((status = 200, description = "Stored; the `ETag` header is the object's (or the part's) entity tag"),
              (status = 403, description = "Expired or altered URL, or another Content-Type than the one signed", body = crate::error::ErrorBody),
              (status = 409, description = "The video left PENDING", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    path: Result<Path<(i64, i64, u64, String)>, PathRejection>,
    query: Result<Query<PartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Ok(Path((tenant, id, expires, sig))) = path else {
        return Ok(denied("malformed upload URL"));
    };
    let Ok(Query(q)) = query else {
        return Ok(denied("malformed upload URL"));
    };
    let (Ok(tenant), Ok(id)) = (TenantId::new(tenant), VideoId::new(id)) else {
        return Ok(denied("malformed upload URL"));
    };
    if expires < now_secs() {
        return Ok(denied("Request has expired"));
    }
    let (t, v, e) = (tenant.to_string(), id.to_string(), expires.to_string());
    let part = match (q.part_number, q.upload_id.as_deref()) {
        (None, None) => None,
        (Some(n), Some(u)) => Some((n, u)),
        _ => return Ok(denied("partNumber and uploadId go together")),
    };
    let signed = match part {
        None => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            state.signer.check_tag(&sig, "put", &[&t, &v, &e, ct])
        }
        Some((n, u)) => state
            .signer
            .check_tag(&sig, "part", &[&t, &v, &e, u, &n.to_string()]),
    };
    if !signed {
        return Ok(denied(
            "the signature does not match (altered URL, or another Content-Type than the init's)",
        ));
    }
    let video = video_of(&state, tenant, id).await?;
    if video.status != VideoStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "the upload of video {id} is over (the video is {})",
            video.status.as_str()
        )));
    }
    let limit = state.limits.video_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the file is larger than {limit} bytes"
        )));
    }
    let key = key_of(&video)?;
    let stream = body.into_data_stream();
    let e_tag = match part {
        None => {
            state
                .storage
                .write(&key, stream, limit)
                .await
                .map_err(storage_error)?
                .e_tag
        }
        Some((n, u)) => Some(
            state
                .storage
                .put_part(&key, u, n, stream, limit)
                .await
                .map_err(storage_error)?
                .e_tag,
        ),
    };
    let mut res = StatusCode::OK.into_response();
    if let Some(tag) = e_tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        res.headers_mut().insert(header::ETAG, tag);
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// abandoned uploads

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// PENDING videos removed (object, multipart upload, row).
    pub videos: usize,
    /// Multipart uploads aborted that no video row knew of.
    pub orphan_multipart: usize,
}

/// Removes uploads started more than `retention` ago and never completed: each video's open
/// multipart upload, its object and its row (deleted, tombstoned in the read model), then
/// multipart uploads of the storage older than `retention` that no row knows of.
pub async fn sweep_abandoned(
    state: &AppState,
    retention: Duration,
) -> Result<SweepReport, ApiError> {
    let cutoff_ms = i64::try_from(
        SystemTime::now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0);
    let mut report = SweepReport::default();
    loop {
        let batch = state.db.abandoned_uploads(cutoff_ms, 100).await?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        for (video, up) in batch {
            if let Ok(key) = StorageKey::parse(&video.file_key) {
                if let Some(id) = &up.multipart_id {
                    state.storage.abort_multipart(&key, id).await?;
                }
                state.storage.delete(&key).await?;
            }
            if state.db.remove_abandoned_upload(&video).await? {
                report.videos += 1;
            }
        }
        if n < 100 {
            break;
        }
    }
    report.orphan_multipart = state.storage.abort_stale_multipart(retention).await?.len();
    Ok(report)
}

/// Runs [`sweep_abandoned`] every `every` until `shutdown` (failures are logged; the next
/// round tries again).
pub fn spawn_sweeper(
    state: AppState,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match sweep_abandoned(&state, retention).await {
                Ok(r) if r.videos > 0 || r.orphan_multipart > 0 => {
                    tracing::info!(
                        videos = r.videos,
                        multipart = r.orphan_multipart,
                        "abandoned uploads removed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cleaning up abandoned uploads failed"),
            }
        }
    })
}
