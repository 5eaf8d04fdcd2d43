//! Media files behind signed URLs (`/media/s/{expires}/{n}/{sig}/{key}`, see [`crate::signing`])
//! and the lecture list the dashboard's forms use.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use jobpulse_media::StorageKey;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Audience;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/media/s/{expires}/{n}/{sig}/{*key}", get(media))
        .route("/api/v1/lectures/", get(lectures))
        .with_state(state)
}

#[utoipa::path(get, path = "/media/s/{expires}/{n}/{sig}/{key}", tag = "media",
    params(("expires" = u64, Path), ("n" = usize, Path), ("sig" = String, Path), ("key" = String, Path)),
    responses((status = 200, description = "The file (HLS playlist, segment or thumbnail)"),
              (status = 404, description = "Unknown, expired or badly signed", body = crate::error::ErrorBody)))]
pub async fn media(
    State(state): State<AppState>,
    path: Result<Path<(u64, usize, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((expires, n, sig, key)) = path.map_err(|_| ApiError::NotFound)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Any failure is the same 404: no oracle for valid keys or signatures.
    let key = StorageKey::parse(&key).map_err(|_| ApiError::NotFound)?;
    if !state.signer.verify(expires, n, &sig, key.as_str(), now) {
        return Err(ApiError::NotFound);
    }
    let obj = state.storage.get_stream(&key).await?;
    let mut res = Response::new(Body::from_stream(obj.stream.map_err(std::io::Error::other)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(obj.info.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&obj.info.size.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    // Segments never change; playlists of a READY video neither (a retry writes a new set).
    let max_age = expires.saturating_sub(now).min(3600);
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LecturePage {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<jobpulse_db::LectureSessions>,
}

#[utoipa::path(get, path = "/api/v1/lectures/", tag = "media",
    responses((status = 200, description = "The tenant's lectures with their sessions", body = LecturePage)),
    security(("bearer" = [])))]
pub async fn lectures(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = state.auth.authenticate(&headers, Audience::Browser)?;
    let results = state.db.list_lectures(p.tenant).await?;
    Ok(Json(LecturePage { results }).into_response())
}
