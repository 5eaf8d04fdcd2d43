//! `GET /api/v1/media/videos/{id}/stats/`: what the admin's video page loads (it reads
//! `data.video` and hands `video.hls_url` to its player). Staff only; another tenant's id is the
//! same 404 as an unknown one.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jobpulse_domain::{Status, TaskKey, VideoId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Id, Staff};
use crate::routes::media::{VideoRecord, record};
use crate::state::AppState;

/// The video as the video page reads it: the record of the video list plus the live progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsVideo {
    #[serde(flatten)]
    pub record: VideoRecord,
    /// 0..100 from the read model while it works on this status; 100 when READY.
    pub encoding_progress: u8,
    pub encoding_remaining_seconds: Option<u32>,
    pub encoding_step_index: Option<u8>,
    pub encoding_step_total: Option<u8>,
    /// Display name of the step, e.g. `인코딩`.
    pub encoding_step_name: Option<String>,
    pub encoding_step_percent: Option<u8>,
    /// Where the video came from: always `upload` (jobpulse holds uploaded files only).
    #[schema(example = "upload")]
    pub source_type: &'static str,
}

/// `GET /api/v1/media/videos/{id}/stats/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoStats {
    pub video: StatsVideo,
    /// Per-student viewing progress. jobpulse does not record viewing, so this is always `[]`
    /// (what the page shows as "no data").
    #[schema(value_type = Vec<Object>)]
    pub students: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/media/videos/{id}/stats/", tag = "media",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The video with absolute, signed `hls_url` and `thumbnail_url` (READY only)", body = VideoStats),
              (status = 403, description = "Needs a staff role", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown id, or another tenant's", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    Staff(p): Staff,
    Id(id): Id<VideoId>,
) -> Result<Response, ApiError> {
    let v = state
        .db
        .get_video(p.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Live progress from the read model when it describes the same state as the database; the
    // page still loads (with a plain 0/100) when the read model is down.
    let snap = match state.store.get(&TaskKey::video(p.tenant, id)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "read model unavailable for stats");
            None
        }
    }
    .filter(|s| s.state.status == Status::Video(v.status));
    let record = record(&state, &v);
    let ready = record.status == "READY";
    let video = match snap.as_ref().map(|s| &s.state) {
        Some(s) => {
            let step = s.step.as_ref();
            StatsVideo {
                record,
                encoding_progress: if ready { 100 } else { s.percent.get() },
                encoding_remaining_seconds: s.remaining_seconds,
                encoding_step_index: step.map(|x| x.index),
                encoding_step_total: step.map(|x| x.total),
                encoding_step_name: step.map(|x| x.display.as_str().to_owned()),
                encoding_step_percent: step.map(|x| x.percent.get()),
                source_type: "upload",
            }
        }
        None => StatsVideo {
            record,
            encoding_progress: if ready { 100 } else { 0 },
            encoding_remaining_seconds: None,
            encoding_step_index: None,
            encoding_step_total: None,
            encoding_step_name: None,
            encoding_step_percent: None,
            source_type: "upload",
        },
    };
    Ok(Json(VideoStats {
        video,
        students: Vec::new(),
    })
    .into_response())
}
