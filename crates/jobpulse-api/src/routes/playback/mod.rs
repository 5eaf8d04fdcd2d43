//! Playback: the video page's `stats` route and the signed media URLs a player fetches.
//!
//! # Media URLs
//!
//! `hls_url` and `thumbnail_url` are absolute (built on [`AppState::public_url`]) and carry their own
//! authorization: `/media/s/{expires}/{n}/{sig}/{key}` ([`crate::signing`]), valid for every key
//! under the signed scope (the video's HLS prefix) until `expires` — hours, a viewing session;
//! the player sends no token or cookie. A forged, altered or expired link is `403`; a valid link
//! to a file that is not there is `404`.
//!
//! Every answer carries `Accept-Ranges: bytes` and honours one byte range (`206`, or `416` for a
//! range past the end or a malformed one — `range`), for native players that seek with
//! ranges; `HEAD` answers the headers only. CORS is the router's layer: the configured origins
//! (hls.js fetches playlists and segments with XHR from the app's origin).
//!
//! # On S3 storage
//!
//! Playlists are served through jobpulse, rewritten (`playlist`) so that each segment (and
//! init section) is an absolute *presigned* storage URL: the bytes of a viewing session go
//! straight from the bucket to the player, and jobpulse only answers a few small playlists per
//! session. One exception: a `<video>` element without `crossorigin` playing HLS natively gets
//! the playlist unrewritten and its segments through jobpulse, because Chromium's native HLS
//! refuses cross-origin segments in that mode (see `no_cors_media_element`). The presigned URLs live until the link expires, and at least the playlist's
//! duration plus ten minutes, so a session started before expiry plays to the end (at most the
//! 7 days SigV4 allows). The bucket's CORS rule must allow `GET` from the app's origin (the rule
//! `jobpulse storage check` prints does). A segment requested through jobpulse itself is still
//! served (proxied), so an unrewritten client works too. On file storage every file comes
//! through jobpulse; the playlists' relative URIs resolve under the same signed prefix.

mod playlist;
mod range;
pub mod stats;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use jobpulse_db::Video;
use jobpulse_domain::VideoStatus;
use jobpulse_media::{MediaStorage, StorageKey, keys};

pub use range::ByteRange;
pub use stats::{StatsVideo, VideoStats, stats};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest playlist rewritten on S3 (a ten-hour lecture in 2 s segments is well under 1 MiB).
const MAX_PLAYLIST_BYTES: usize = 4 * 1024 * 1024;
/// Presigned segment URLs outlive the playlist that names them by at least this much.
const SEGMENT_URL_MARGIN: Duration = Duration::from_secs(600);
/// The longest a presigned URL may live (SigV4).
const MAX_PRESIGN: Duration = jobpulse_media::storage::MAX_PRESIGN_EXPIRY;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/media/s/{expires}/{n}/{sig}/{*key}", get(media))
        .route("/api/v1/media/videos/{id}/stats/", get(stats))
        .with_state(state)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The absolute, signed `hls_url` and `thumbnail_url` of a video (READY only), valid for the
/// configured media URL lifetime.
pub(crate) fn links(state: &AppState, v: &Video) -> (Option<String>, Option<String>) {
    if v.status != VideoStatus::Ready {
        return (None, None);
    }
    let expires = now_secs() + state.limits.media_url_ttl.as_secs();
    let hls_prefix = keys::hls_prefix(v.tenant, v.id);
    let scope = hls_prefix.as_str().trim_end_matches('/');
    let hls = v
        .hls_path
        .as_deref()
        .and_then(|p| state.signer.url(scope, p, expires))
        .map(|path| format!("{}{path}", state.public_url));
    let thumb = keys::thumbnail_key(v.tenant, v.id);
    let thumbnail = state
        .signer
        .url(thumb.as_str(), thumb.as_str(), expires)
        .map(|path| format!("{}{path}", state.public_url));
    (hls, thumbnail)
}

const BAD_LINK: ApiError = ApiError::Forbidden("this media link is invalid or has expired");

#[utoipa::path(get, path = "/media/s/{expires}/{n}/{sig}/{key}", tag = "media",
    params(("expires" = u64, Path, description = "Unix seconds"),
           ("n" = usize, Path, description = "Segments of the key the signature covers"),
           ("sig" = String, Path), ("key" = String, Path),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023")),
    responses((status = 200, description = "The file (HLS playlist, segment or thumbnail); `Accept-Ranges: bytes`"),
              (status = 206, description = "The requested byte range, with `Content-Range`"),
              (status = 403, description = "Forged, altered or expired link", body = crate::error::ErrorBody),
              (status = 404, description = "No such file under a valid link", body = crate::error::ErrorBody),
              (status = 416, description = "A malformed range or one past the end; `Content-Range: bytes */size`")))]
pub async fn media(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    path: Result<Path<(u64, usize, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((expires, n, sig, key)) = path.map_err(|_| BAD_LINK)?;
    let now = now_secs();
    let key = StorageKey::parse(&key).map_err(|_| BAD_LINK)?;
    if !state.signer.verify(expires, n, &sig, key.as_str(), now) {
        return Err(BAD_LINK);
    }
    let max_age = expires.saturating_sub(now).min(3600);
    let range = headers.get(header::RANGE).map(HeaderValue::as_bytes);
    let head_only = method == Method::HEAD;
    let playlist = key.as_str().ends_with(".m3u8");
    let mut res = if state.storage.presigns() && playlist && !no_cors_media_element(&headers) {
        let text = rewritten_playlist(&state.storage, &key, expires.saturating_sub(now)).await?;
        from_memory(text.into_bytes(), range, head_only)
    } else {
        from_storage(&state.storage, &key, range, head_only).await?
    };
    let h = res.headers_mut();
    if playlist {
        // The answer depends on who asks (see `no_cors_media_element`).
        h.append(
            header::VARY,
            HeaderValue::from_static("sec-fetch-dest, sec-fetch-mode"),
        );
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Segments never change; playlists of a READY video neither (a retry writes a new set).
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// Whether the request comes from a `<video>`/`<audio>` element without `crossorigin` (Fetch
/// Metadata: `Sec-Fetch-Dest: video|audio`, `Sec-Fetch-Mode: no-cors`): Chromium's native HLS
/// player refuses segments from another origin than the playlist in that mode, so such a
/// player gets the playlist as stored — relative segment URIs, served (proxied) by jobpulse.
/// Script players (hls.js: `Sec-Fetch-Dest: empty`) and elements with `crossorigin` (CORS
/// mode) get presigned segment URLs. Without Fetch Metadata (old browsers, other clients) the
/// segments are presigned.
fn no_cors_media_element(headers: &HeaderMap) -> bool {
    let is = |name: &str, values: &[&str]| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| values.iter().any(|x| v.eq_ignore_ascii_case(x)))
    };
    is("sec-fetch-dest", &["video", "audio"]) && is("sec-fetch-mode", &["no-cors"])
}

/// The playlist at `key` with its media URIs replaced by presigned storage URLs.
async fn rewritten_playlist(
    storage: &MediaStorage,
    key: &StorageKey,
    remaining: u64,
) -> Result<String, ApiError> {
    let mut obj = storage.get_stream(key).await?;
    if obj.info.size > MAX_PLAYLIST_BYTES as u64 {
        return Err(ApiError::internal(format!(
            "playlist {key} is {} bytes, over the {MAX_PLAYLIST_BYTES} rewritten",
            obj.info.size
        )));
    }
    let mut bytes = Vec::with_capacity(obj.info.size as usize);
    while let Some(chunk) = obj.stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() > MAX_PLAYLIST_BYTES {
            return Err(ApiError::internal(format!(
                "playlist {key} grew while read"
            )));
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiError::internal(format!("playlist {key} is not UTF-8")))?;
    let (uris, duration) = playlist::media_uris(&text);
    let ttl = Duration::from_secs(remaining)
        .max(Duration::from_secs_f64(duration.min(MAX_PRESIGN.as_secs_f64())) + SEGMENT_URL_MARGIN)
        .min(MAX_PRESIGN);
    let mut signed: HashMap<&str, String> = HashMap::with_capacity(uris.len());
    for uri in uris {
        if signed.contains_key(uri) {
            continue;
        }
        let target = key
            .resolve(uri)
            .map_err(|_| ApiError::internal(format!("playlist {key}: bad URI {uri:?}")))?;
        let url = storage.presign_get(&target, ttl).await?;
        signed.insert(uri, url.to_string());
    }
    Ok(playlist::rewrite(&text, |uri| signed.get(uri).cloned()))
}

fn content_range(range: &std::ops::Range<u64>, size: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "bytes {}-{}/{size}",
        range.start,
        range.end.saturating_sub(1)
    ))
    .ok()
}

fn unsatisfiable(size: u64) -> Response {
    let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

fn set_length(res: &mut Response, len: u64) {
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// An answer from bytes in memory (a rewritten playlist).
fn from_memory(bytes: Vec<u8>, range: Option<&[u8]>, head_only: bool) -> Response {
    let size = bytes.len() as u64;
    let (status, body_range) = match range::parse(range, size) {
        ByteRange::Unsatisfiable => return unsatisfiable(size),
        ByteRange::Full => (StatusCode::OK, 0..size),
        ByteRange::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
    };
    let len = body_range.end - body_range.start;
    let body = if head_only {
        Body::empty()
    } else {
        // The range lies within `bytes` (checked by the parser against its length).
        let (a, b) = (body_range.start as usize, body_range.end as usize);
        Body::from(bytes.get(a..b).map(<[u8]>::to_vec).unwrap_or_default())
    };
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    set_length(&mut res, len);
    if status == StatusCode::PARTIAL_CONTENT
        && let Some(v) = content_range(&body_range, size)
    {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

/// An answer streamed from storage.
async fn from_storage(
    storage: &MediaStorage,
    key: &StorageKey,
    range: Option<&[u8]>,
    head_only: bool,
) -> Result<Response, ApiError> {
    let info = storage.head(key).await?;
    let size = info.size;
    let (status, body_range) = match range::parse(range, size) {
        ByteRange::Unsatisfiable => return Ok(unsatisfiable(size)),
        ByteRange::Full => (StatusCode::OK, 0..size),
        ByteRange::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
    };
    let body = if head_only || body_range.is_empty() {
        Body::empty()
    } else if status == StatusCode::OK {
        let obj = storage.get_stream(key).await?;
        Body::from_stream(obj.stream.map_err(std::io::Error::other))
    } else {
        let obj = storage.get_stream_range(key, body_range.clone()).await?;
        Body::from_stream(obj.stream.map_err(std::io::Error::other))
    };
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(info.content_type),
    );
    if let Some(tag) = info
        .e_tag
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        h.insert(header::ETAG, tag);
    }
    set_length(&mut res, body_range.end - body_range.start);
    if status == StatusCode::PARTIAL_CONTENT
        && let Some(v) = content_range(&body_range, size)
    {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}
