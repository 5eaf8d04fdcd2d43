//! Multipart uploads: init, presign (part URLs), complete (parts assembled, then [`finish`]ed as
//! a single upload is), abort.

use super::single::{already, finish};
use super::*;

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
