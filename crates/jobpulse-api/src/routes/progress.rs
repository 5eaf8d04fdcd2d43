//! The drop-in progress endpoints (docs/contract.md §2–3), answered from the read model alone.
//!
//! Per request: one token check (usually a cache hit), one id parse, at most one store read,
//! one small JSON render. No database, ever: [`ReadState`] has no handle to one. When the read
//! model cannot be reached the answer is UNKNOWN, never a 5xx (see `ReadState::read`).
//!
//! Beyond the old contract, answers carry an `ETag` (the record's revision; `If-None-Match`
//! gets 304), `Cache-Control` (terminal answers may be kept briefly, others `no-cache`) and a
//! poll hint `X-Poll-After` (seconds, or `stop` once terminal) next to the contract's
//! `Retry-After: 3`.
//!
//! Monotonic reads across replicas: a client behind a round-robin balancer may be answered by
//! a replica whose read cache has not yet heard of the revision another replica showed it. Its
//! `If-None-Match` says which revision it holds (`"r<rev>"`): when the cache is behind that, the
//! replica reads Redis instead ([`jobpulse_store::StatusStore::get_at_least`]), and when even
//! Redis is behind it (writes lost in a failover, until repair rewrites them) the answer is 304:
//! the client keeps the newer state it has. So such a client never sees a revision older than
//! one it was shown, and never a running state after a terminal one.

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jobpulse_domain::{JobId, Status, TaskKey, VideoId};
use jobpulse_store::Snapshot;

use crate::error::ApiError;
use crate::extract::{Browser, Id};
use crate::render;
use crate::state::ReadState;

pub fn router(state: ReadState) -> Router {
    Router::new()
        .route("/api/v1/media/videos/{id}/progress/", get(video_progress))
        .route("/api/v1/jobs/{job_id}/progress/", get(job_progress))
        .with_state(state)
}

/// How a client should poll next, by state (see `X-Poll-After`).
pub(crate) fn poll_hint(snap: Option<&Snapshot>) -> &'static str {
    match snap.map(|s| s.state.status) {
        Some(s) if s.is_terminal() => "stop",
        Some(s) if s.is_active() => "2",
        Some(_) => "5",
        None => "5",
    }
}

/// The `ETag` of an answer: the record's revision, or a fixed tag for unknown answers (which
/// depend only on the id). A running task shown `stalled` gets `"r<rev>-s"`, so the flip to
/// stalled and back changes the tag and `If-None-Match` never hides it (docs/contract.md §3a).
pub(crate) fn etag(snap: Option<&Snapshot>, live: render::Liveness) -> HeaderValue {
    match snap {
        Some(s) => {
            let suffix = if render::is_stalled(s, live) {
                "-s"
            } else {
                ""
            };
            HeaderValue::from_str(&format!("\"r{}{suffix}\"", s.rev))
                .unwrap_or(HeaderValue::from_static("\"u\""))
        }
        None => HeaderValue::from_static("\"u\""),
    }
}

/// The newest revision among the client's `If-None-Match` tags (`"r<rev>"` or `"r<rev>-s"`,
/// weak or not).
pub(crate) fn held_revision(headers: &HeaderMap) -> Option<u64> {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())?;
    inm.split(',')
        .filter_map(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            let digits = t.strip_prefix("\"r")?.strip_suffix('"')?;
            let digits = digits.strip_suffix("-s").unwrap_or(digits);
            (digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        })
        .max()
}

fn matches_etag(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let tag = tag.as_bytes();
    inm.split(',').map(str::trim).any(|t| {
        t == "*" || t.as_bytes() == tag || t.strip_prefix("W/").is_some_and(|w| w.as_bytes() == tag)
    })
}

/// Builds a progress answer with the contract's and our caching headers.
pub(crate) fn progress_response(
    state: &ReadState,
    headers: &HeaderMap,
    snap: Option<&Snapshot>,
    body: impl FnOnce() -> Vec<u8>,
) -> Response {
    let mut tag = etag(snap, state.liveness);
    let terminal = snap.is_some_and(|s| s.state.status.is_terminal());
    let cache = if terminal {
        HeaderValue::from_static("private, max-age=300")
    } else {
        HeaderValue::from_static("no-cache")
    };
    // Even Redis is behind what the client holds (see the module docs): it keeps what it has.
    let behind = match (snap, held_revision(headers)) {
        (Some(s), Some(held)) if s.rev < held => Some(held),
        _ => None,
    };
    if let Some(held) = behind {
        state.metrics.behind_client.increment(1);
        tag = HeaderValue::from_str(&format!("\"r{held}\"")).unwrap_or(tag);
    }
    let mut res = if behind.is_some() || matches_etag(headers, &tag) {
        state.metrics.not_modified.increment(1);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
    h.insert("x-poll-after", HeaderValue::from_static(poll_hint(snap)));
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, X-Tenant-Code"),
    );
    res
}

#[utoipa::path(
    get,
    path = "/api/v1/media/videos/{id}/progress/",
    tag = "progress",
    params(("id" = i64, Path, description = "Video id (positive integer)")),
    responses(
        (status = 200, description = "Known video, or UNKNOWN (also for another tenant's id, and while the read model is unreachable)", body = render::VideoProgress,
         headers(("Retry-After" = u32), ("ETag" = String), ("X-Poll-After" = String))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Malformed id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::error::ErrorBody),
        (status = 403, description = "X-Tenant-Code disagrees with the token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn video_progress(
    State(state): State<ReadState>,
    headers: HeaderMap,
    // Results: the request is counted before the token or the id is refused.
    caller: Result<Browser, ApiError>,
    id: Result<Id<VideoId>, ApiError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    state.metrics.video_requests.increment(1);
    let Browser(principal) = caller?;
    let Id(id) = id?;
    let key = TaskKey::video(principal.tenant, id);
    let found = state.read_fresh(&key, held_revision(&headers)).await;
    let reached = found.is_ok();
    let snap = found
        .ok()
        .flatten()
        .filter(|s| matches!(s.state.status, Status::Video(_)));
    match &snap {
        Some(_) => state.metrics.hits.increment(1),
        None if reached => state.missed(&key),
        None => {}
    }
    let res = progress_response(&state, &headers, snap.as_ref(), || {
        render::video(id, snap.as_ref(), state.liveness)
    });
    state
        .metrics
        .video_latency
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}/progress/",
    tag = "progress",
    params(("job_id" = String, Path, description = "Job id ([A-Za-z0-9_-]{1,64})")),
    responses(
        (status = 200, description = "Known job, or UNKNOWN (also for another tenant's id, and while the read model is unreachable)", body = render::JobProgress,
         headers(("Retry-After" = u32), ("ETag" = String), ("X-Poll-After" = String))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Malformed id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::error::ErrorBody),
        (status = 403, description = "X-Tenant-Code disagrees with the token", body = crate::error::ErrorBody),
        (status = 404, description = "Staff-only job type and a student/parent token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn job_progress(
    State(state): State<ReadState>,
    headers: HeaderMap,
    caller: Result<Browser, ApiError>,
    id: Result<Id<JobId>, ApiError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    state.metrics.job_requests.increment(1);
    let Browser(principal) = caller?;
    let Id(id) = id?;
    let key = TaskKey::job(principal.tenant, id.clone());
    let found = state.read_fresh(&key, held_revision(&headers)).await;
    let reached = found.is_ok();
    let snap = found
        .ok()
        .flatten()
        .filter(|s| matches!(s.state.status, Status::Job(_)));
    match &snap {
        Some(s) => {
            state.metrics.hits.increment(1);
            if s.state.job_type.as_ref().is_some_and(|t| t.is_staff_only()) && !principal.is_staff()
            {
                return Err(ApiError::NotFound);
            }
        }
        None if reached => state.missed(&key),
        None => {}
    }
    let res = progress_response(&state, &headers, snap.as_ref(), || {
        render::job(
            &id,
            snap.as_ref(),
            state.credentials.as_ref(),
            state.liveness,
        )
    });
    state
        .metrics
        .job_latency
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}
