//! Batch reads: many tasks of one tenant in one request and one store round trip.
//!
//! `GET /api/v1/progress/?videos=1,2,3&jobs=a,b`, or `POST /api/v1/progress/` with
//! `{"videos": [1, 2], "jobs": ["a"]}` for long lists. At most [`MAX_IDS`] ids in all. The answer
//! holds one map per kind (id → the same body the single endpoint returns) and the ids the read
//! model does not know under `unknown` — which, as everywhere, includes other tenants' ids, and
//! staff-only jobs when the caller is a student or parent.
//!
//! Like the single endpoints, an answer carries an `ETag` (over every requested task's revision
//! and visibility; `If-None-Match` gets 304) and `X-Poll-After` (the most urgent hint of its
//! tasks: `stop` only when every known task is terminal), so a poller of many tasks pays one
//! small conditional request per round.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jobpulse_domain::{JobId, Status, TaskId, VideoId};
use jobpulse_store::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Browser;
use crate::render;
use crate::state::ReadState;

/// Most ids one batch may ask for.
pub const MAX_IDS: usize = 200;

pub fn router(state: ReadState) -> Router {
    Router::new()
        .route("/api/v1/progress/", get(batch_get).post(batch_post))
        .with_state(state)
}

/// A batch request body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub videos: Vec<serde_json::Value>,
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// The batch answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Video id → the body of `GET /api/v1/media/videos/{id}/progress/`.
    #[schema(value_type = Object)]
    pub videos: BTreeMap<String, Box<RawValue>>,
    /// Job id → the body of `GET /api/v1/jobs/{job_id}/progress/`.
    #[schema(value_type = Object)]
    pub jobs: BTreeMap<String, Box<RawValue>>,
    pub unknown: Unknown,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Unknown {
    pub videos: Vec<i64>,
    pub jobs: Vec<String>,
}

fn parse_video(s: &str) -> Result<VideoId, ApiError> {
    VideoId::parse(s).map_err(|e| ApiError::BadRequest(format!("videos: {s:?}: {e}")))
}

fn parse_job(s: &str) -> Result<JobId, ApiError> {
    JobId::parse(s).map_err(|e| ApiError::BadRequest(format!("jobs: {s:?}: {e}")))
}

fn parse_query(raw: Option<&str>) -> Result<(Vec<VideoId>, Vec<JobId>), ApiError> {
    let mut videos = Vec::new();
    let mut jobs = Vec::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Ids never need percent-decoding: anything encoded is not a valid id anyway, except a
        // comma, which we accept encoded too.
        let v = v.replace("%2C", ",").replace("%2c", ",");
        let items = v.split(',').filter(|s| !s.is_empty());
        match k {
            "videos" => {
                for s in items {
                    videos.push(parse_video(s)?);
                    check_len(videos.len() + jobs.len())?;
                }
            }
            "jobs" => {
                for s in items {
                    jobs.push(parse_job(s)?);
                    check_len(videos.len() + jobs.len())?;
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {:?}; use videos= and jobs=",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok((videos, jobs))
}

fn check_len(n: usize) -> Result<(), ApiError> {
    if n > MAX_IDS {
        Err(ApiError::BadRequest(format!(
            "at most {MAX_IDS} ids per batch; use several requests or the stream"
        )))
    } else {
        Ok(())
    }
}

#[utoipa::path(get, path = "/api/v1/progress/", tag = "progress",
    params(("videos" = Option<String>, Query, description = "Comma-separated video ids"),
           ("jobs" = Option<String>, Query, description = "Comma-separated job ids")),
    responses((status = 200, body = BatchResponse,
               headers(("ETag" = String), ("X-Poll-After" = String), ("Retry-After" = u32))),
              (status = 304, description = "Nothing changed since the ETag sent in If-None-Match"),
              (status = 400, description = "Malformed id or more than 200 ids", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn batch_get(
    State(state): State<ReadState>,
    Browser(principal): Browser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (videos, jobs) = parse_query(raw.as_deref())?;
    answer(&state, &headers, &principal, videos, jobs).await
}

#[utoipa::path(post, path = "/api/v1/progress/", tag = "progress",
    request_body = BatchRequest,
    responses((status = 200, body = BatchResponse,
               headers(("ETag" = String), ("X-Poll-After" = String), ("Retry-After" = u32))),
              (status = 304, description = "Nothing changed since the ETag sent in If-None-Match"),
              (status = 400, description = "Malformed body or id, or more than 200 ids", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn batch_post(
    State(state): State<ReadState>,
    Browser(principal): Browser,
    headers: HeaderMap,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    check_len(req.videos.len() + req.jobs.len())?;
    let videos = req
        .videos
        .iter()
        .map(|v| match v {
            serde_json::Value::Number(n) => parse_video(&n.to_string()),
            serde_json::Value::String(s) => parse_video(s),
            _ => Err(ApiError::BadRequest(
                "videos: ids are positive integers".into(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = req
        .jobs
        .iter()
        .map(|j| parse_job(j))
        .collect::<Result<Vec<_>, _>>()?;
    answer(&state, &headers, &principal, videos, jobs).await
}

fn raw(bytes: Vec<u8>) -> Result<Box<RawValue>, ApiError> {
    let s = String::from_utf8(bytes).map_err(ApiError::internal)?;
    RawValue::from_string(s).map_err(ApiError::internal)
}

/// The batch's validator and poll hint: a hash over each requested task and what the caller may
/// see of it (its revision, or unknown), and the most urgent of the single endpoints' hints.
fn validators(
    tasks: &[TaskId],
    shown: &[Option<&Snapshot>],
    staff: bool,
    live: render::Liveness,
) -> (HeaderValue, &'static str) {
    let mut h = DefaultHasher::new();
    staff.hash(&mut h);
    let mut hint = "stop";
    for (task, snap) in tasks.iter().zip(shown) {
        task.hash(&mut h);
        snap.map(|s| (s.rev, render::is_stalled(s, live)))
            .hash(&mut h);
        hint = match (hint, super::progress::poll_hint(*snap)) {
            ("2", _) | (_, "2") => "2",
            ("5", _) | (_, "5") => "5",
            _ => "stop",
        };
    }
    let tag = HeaderValue::from_str(&format!("\"b{:016x}\"", h.finish()))
        .unwrap_or(HeaderValue::from_static("\"b\""));
    (tag, hint)
}

async fn answer(
    state: &ReadState,
    headers: &HeaderMap,
    principal: &Principal,
    mut videos: Vec<VideoId>,
    mut jobs: Vec<JobId>,
) -> Result<Response, ApiError> {
    videos.sort_unstable();
    videos.dedup();
    jobs.sort_unstable();
    jobs.dedup();
    let tasks: Vec<TaskId> = videos
        .iter()
        .map(|v| TaskId::Video(*v))
        .chain(jobs.iter().cloned().map(TaskId::Job))
        .collect();
    let mut reached = true;
    let snaps = if tasks.is_empty() {
        Vec::new()
    } else {
        // Unreachable read model: every id is unknown, as for the single reads.
        match state.store.get_many(principal.tenant, &tasks).await {
            Ok(s) => s,
            Err(e) => {
                state.unavailable(&e);
                reached = false;
                vec![None; tasks.len()]
            }
        }
    };
    // What the caller may see of each task: the snapshot, or nothing (answered as unknown).
    let shown: Vec<Option<&Snapshot>> = tasks
        .iter()
        .zip(&snaps)
        .map(|(task, snap)| {
            snap.as_ref().filter(|s| match (task, s.state.status) {
                (TaskId::Video(_), Status::Video(_)) => true,
                (TaskId::Job(_), Status::Job(_)) => {
                    principal.is_staff()
                        || !s.state.job_type.as_ref().is_some_and(|t| t.is_staff_only())
                }
                _ => false,
            })
        })
        .collect();
    let (tag, hint) = validators(&tasks, &shown, principal.is_staff(), state.liveness);
    if inm_matches(headers, &tag) {
        state.metrics.not_modified.increment(1);
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(res.headers_mut(), tag, hint);
        return Ok(res);
    }
    let mut out = BatchResponse {
        videos: BTreeMap::new(),
        jobs: BTreeMap::new(),
        unknown: Unknown::default(),
    };
    for (task, snap) in tasks.iter().zip(shown) {
        match (task, snap) {
            (TaskId::Video(id), Some(s)) => {
                state.metrics.hits.increment(1);
                out.videos.insert(
                    id.to_string(),
                    raw(render::video(*id, Some(s), state.liveness))?,
                );
            }
            (TaskId::Job(id), Some(s)) => {
                state.metrics.hits.increment(1);
                out.jobs.insert(
                    id.to_string(),
                    raw(render::job(
                        id,
                        Some(s),
                        state.credentials.as_ref(),
                        state.liveness,
                    ))?,
                );
            }
            (TaskId::Video(id), _) => {
                if reached {
                    state.missed(&jobpulse_domain::TaskKey::video(principal.tenant, *id));
                }
                out.unknown.videos.push(id.get());
            }
            (TaskId::Job(id), _) => {
                if reached {
                    state.missed(&jobpulse_domain::TaskKey::job(principal.tenant, id.clone()));
                }
                out.unknown.jobs.push(id.to_string());
            }
        }
    }
    let body = serde_json::to_vec(&out).map_err(ApiError::internal)?;
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cache_headers(h, tag, hint);
    Ok(res)
}

fn inm_matches(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t.as_bytes() == tag.as_bytes())
        })
}

fn cache_headers(h: &mut HeaderMap, tag: HeaderValue, hint: &'static str) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
    h.insert(header::ETAG, tag);
    h.insert("x-poll-after", HeaderValue::from_static(hint));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, X-Tenant-Code"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let (v, j) = parse_query(Some("videos=1,2,3&jobs=a,b")).expect("valid");
        assert_eq!(v.len(), 3);
        assert_eq!(j.len(), 2);
        assert!(parse_query(Some("videos=1,x")).is_err());
        assert!(parse_query(Some("jobs=a:b")).is_err());
        assert!(parse_query(Some("tenant=2")).is_err());
        let many = (1..=201)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_query(Some(&format!("videos={many}"))).is_err());
        assert_eq!(
            parse_query(None).map(|(v, j)| v.len() + j.len()).ok(),
            Some(0)
        );
    }
}
