//! Direct uploads, the way the front end starts a video (docs/contract.md §7): the browser sends the
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

mod multipart;
mod receive;
mod single;
mod sweep;

pub use multipart::*;
pub use receive::*;
pub use single::*;
pub use sweep::*;

/// The `error_reason` of a video whose upload never arrived (docs/contract.md §7).
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
