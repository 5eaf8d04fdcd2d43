//! Videos (docs/contract.md §6): upload, list, get, retry, delete — database-backed, not polled.
//!
//! Upload streams the multipart `file` field to a spool file on disk (never whole in memory,
//! bounded by `Limits::video_bytes`), checks it with ffprobe when this process has ffmpeg (a
//! non-video, or a video over `Limits::media` — too long, too large, too many frames per second
//! — is a 422 with a sentence saying which, and nothing is created), moves it to media storage, then creates the
//! video row, its queued transcode job and the outbox row in one transaction, and publishes
//! the UPLOADED state to the read model *before* answering — so the first poll of the new id is
//! not UNKNOWN. If the read model is down at that moment, the relay publishes it later.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobpulse_db::{Video, VideoFilter};
use jobpulse_domain::{VideoId, VideoStatus};
use jobpulse_media::{MediaError, StorageKey, keys};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Browser, Id, QueryParams, Staff};
use crate::routes::upload;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let upload_limit = usize::try_from(state.limits.video_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    Router::new()
        .route(
            "/api/v1/media/videos/",
            post(upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(list),
        )
        .route("/api/v1/media/videos/{id}/", get(detail).delete(delete))
        .route("/api/v1/media/videos/{id}/retry/", post(retry))
        .with_state(state)
}

/// A video as the management API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoRecord {
    pub id: i64,
    pub title: String,
    #[schema(example = "UPLOADED")]
    pub status: &'static str,
    pub session_id: Option<i64>,
    pub duration: Option<u32>,
    /// Storage key of the master playlist (READY only).
    pub hls_path: Option<String>,
    /// The master playlist's absolute, signed, expiring URL (READY only): hand it to hls.js or
    /// a `<video>` element as is; it needs no token.
    pub hls_url: Option<String>,
    /// The thumbnail's absolute, signed, expiring URL (READY only).
    pub thumbnail_url: Option<String>,
    pub error_reason: Option<String>,
    pub attempt: u32,
    pub generation: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A page of videos.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoPage {
    pub results: Vec<VideoRecord>,
    /// The next page, when there may be one.
    pub next: Option<String>,
}

pub(crate) fn record(state: &AppState, v: &Video) -> VideoRecord {
    let ready = v.status == VideoStatus::Ready;
    let (hls_url, thumbnail_url) = crate::routes::playback::links(state, v);
    VideoRecord {
        id: v.id.get(),
        title: v.title.clone(),
        status: v.status.as_str(),
        session_id: v.session_id,
        duration: v.duration_secs,
        hls_path: v.hls_path.clone().filter(|_| ready),
        hls_url,
        thumbnail_url,
        error_reason: v.error_reason.clone(),
        attempt: v.attempt,
        generation: v.fence.generation,
        created_at: v.created_at_ms,
        updated_at: v.updated_at_ms,
    }
}

struct Upload {
    spool: upload::Spooled,
    bytes: u64,
    filename: String,
    title: Option<String>,
    session_id: Option<i64>,
}

/// Streams the multipart body: the `file` field to a spool file, small text fields to memory.
async fn read_upload(state: &AppState, mut mp: Multipart) -> Result<Upload, ApiError> {
    let mut file: Option<(upload::Spooled, u64, String)> = None;
    let mut title = None;
    let mut session_id = None;
    let bad = upload::multipart_error(state.limits.video_bytes);
    while let Some(mut field) = mp.next_field().await.map_err(&bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::BadRequest("send one file".into()));
                }
                let filename = field.file_name().unwrap_or("upload").to_owned();
                let spool = upload::spool(&mut field, state, state.limits.video_bytes).await?;
                let n = spool.bytes;
                file = Some((spool, n, filename));
            }
            "title" => {
                let t = field.text().await.map_err(&bad)?;
                if t.chars().count() > 200 {
                    return Err(ApiError::BadRequest("title: at most 200 characters".into()));
                }
                title = Some(t).filter(|t| !t.trim().is_empty());
            }
            "session_id" => {
                let t = field.text().await.map_err(&bad)?;
                let t = t.trim();
                if !t.is_empty() {
                    let id = t.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                        ApiError::BadRequest("session_id must be a positive integer".into())
                    })?;
                    session_id = Some(id);
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {:?}; send file, title, session_id",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    let Some((spool, bytes, filename)) = file else {
        return Err(ApiError::BadRequest(
            "the multipart field `file` is required".into(),
        ));
    };
    if bytes == 0 {
        return Err(ApiError::Unprocessable("the file is empty".into()));
    }
    Ok(Upload {
        spool,
        bytes,
        filename,
        title,
        session_id,
    })
}

fn title_from(filename: &str) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s);
    let clean: String = stem.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() {
        "Untitled video".into()
    } else {
        clean.trim().to_owned()
    }
}

#[utoipa::path(post, path = "/api/v1/media/videos/", tag = "media",
    request_body(content_type = "multipart/form-data", description = "`file` (required), `title`, `session_id`"),
    responses((status = 201, description = "Stored and queued; the progress URL answers UPLOADED from now on", body = VideoRecord),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, description = "Needs a staff role", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown session", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody),
              (status = 422, description = "Not a video, or over the video limits (duration, size, frame rate; checked with ffprobe)", body = crate::error::ErrorBody),
              (status = 503, description = "Every probe slot busy and the line full (`Retry-After`)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Staff(p): Staff,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mp = mp.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let up = read_upload(&state, mp).await?;
    // A slot of the bounded probe pool first (503 + Retry-After when it is full).
    let slot = match &state.toolchain {
        Some(_) => Some(state.probes.slot().await?),
        None => None,
    };
    if let Some(tc) = &state.toolchain {
        let checked = match tc.probe(&up.spool).await {
            Ok(info) => state.limits.media.check(&info).map_err(MediaError::from),
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => {}
            Err(e) if e.is_bad_input() => {
                let what = if matches!(e, MediaError::OverLimit(_) | MediaError::OutOfMemory { .. })
                {
                    "over the limits"
                } else {
                    "not a video"
                };
                tracing::info!(tenant.id = %p.tenant, bytes = up.bytes, error = %e, "upload refused: {what}");
                return Err(ApiError::Unprocessable(format!(
                    "{}: {e}",
                    up.filename.chars().take(100).collect::<String>()
                )));
            }
            // ffprobe itself failed (not the file): let the worker decide.
            Err(e) => {
                tracing::warn!(error = %e, "upload probe failed; leaving the check to the worker");
            }
        }
    }
    drop(slot);
    let key = keys::upload_key(p.tenant, keys::UploadKind::Video, &up.filename);
    state.storage.put_file(&key, &up.spool).await?;
    let title = up.title.clone().unwrap_or_else(|| title_from(&up.filename));
    let committed = match state
        .db
        .create_video(p.tenant, up.session_id, &title, key.as_str())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let _ = state.storage.delete(&key).await;
            return Err(e.into());
        }
    };
    state.publish(&committed.outbox).await;
    tracing::info!(tenant.id = %p.tenant, video.id = %committed.value.id, bytes = up.bytes, "video uploaded");
    Ok((StatusCode::CREATED, Json(record(&state, &committed.value))).into_response())
}

/// Query of the video list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// PENDING, UPLOADED, PROCESSING, RETRY_WAIT, READY or FAILED (the work box hydrates
    /// with PENDING, UPLOADED and PROCESSING).
    pub status: Option<String>,
    pub session_id: Option<i64>,
    /// 1..=200, default 50.
    pub limit: Option<u32>,
    /// Only ids below this (the `next` link sets it).
    pub before: Option<i64>,
}

#[utoipa::path(get, operation_id = "list_videos", path = "/api/v1/media/videos/", tag = "media", params(ListQuery),
    responses((status = 200, body = VideoPage), (status = 400, body = crate::error::ErrorBody)),
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
            s.parse::<VideoStatus>()
                .map_err(|_| ApiError::BadRequest(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let before = q.before.map(VideoId::new).transpose()?;
    let videos = state
        .db
        .list_videos(
            p.tenant,
            &VideoFilter {
                status,
                session_id: q.session_id,
                before_id: before,
                limit,
            },
        )
        .await?;
    let next = (videos.len() == limit as usize)
        .then(|| videos.last())
        .flatten()
        .map(|last| {
            let mut url = format!("/api/v1/media/videos/?limit={limit}&before={}", last.id);
            if let Some(s) = status {
                url.push_str(&format!("&status={}", s.as_str()));
            }
            if let Some(s) = q.session_id {
                url.push_str(&format!("&session_id={s}"));
            }
            url
        });
    let results = videos.iter().map(|v| record(&state, v)).collect();
    Ok(Json(VideoPage { results, next }).into_response())
}

#[utoipa::path(get, operation_id = "video_detail", path = "/api/v1/media/videos/{id}/", tag = "media",
    params(("id" = i64, Path)),
    responses((status = 200, body = VideoRecord), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    Browser(p): Browser,
    Id(id): Id<VideoId>,
) -> Result<Response, ApiError> {
    let v = state
        .db
        .get_video(p.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(record(&state, &v)).into_response())
}

#[utoipa::path(post, path = "/api/v1/media/videos/{id}/retry/", tag = "media",
    params(("id" = i64, Path)),
    responses((status = 202, description = "A new generation: UPLOADED again, queued", body = VideoRecord),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Only a FAILED video can be retried", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
) -> Result<Response, ApiError> {
    let committed = state.db.retry_video(p.tenant, id).await?;
    state.publish(&committed.outbox).await;
    Ok((StatusCode::ACCEPTED, Json(record(&state, &committed.value))).into_response())
}

#[utoipa::path(delete, path = "/api/v1/media/videos/{id}/", tag = "media",
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted; an active transcode is cancelled"),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
) -> Result<Response, ApiError> {
    let video = state
        .db
        .get_video(p.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let committed = state.db.delete_video(p.tenant, id).await?;
    state.publish(&committed.outbox).await;
    // The files go too (best effort: a failure leaves orphans, never a visible video).
    let storage = state.storage.clone();
    tokio::spawn(async move {
        let hls = keys::hls_prefix(video.tenant, video.id);
        let thumb = keys::thumbnail_key(video.tenant, video.id);
        let _ = storage.delete_prefix(&hls).await;
        let _ = storage.delete(&thumb).await;
        if let Ok(k) = StorageKey::parse(&video.file_key) {
            let _ = storage.delete(&k).await;
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}
