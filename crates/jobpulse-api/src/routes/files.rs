//! The lecture list the dashboard's forms use. (Signed media files are
//! [`crate::routes::playback`]'s.)

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::Browser;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/lectures/", get(lectures))
        .with_state(state)
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
    Browser(p): Browser,
) -> Result<Response, ApiError> {
    let results = state.db.list_lectures(p.tenant).await?;
    Ok(Json(LecturePage { results }).into_response())
}
