//! Server-Sent Events: watch many tasks over one connection (`GET /api/v1/progress/stream`).
//!
//! - `?videos=1,2&jobs=a,b` watches those tasks: the current state of each is sent first (an
//!   `UNKNOWN` body for ids the read model does not know), then every change.
//! - `?all=true` (staff only) watches every task of the tenant: changes only; the work box
//!   hydrates its list from the database-backed list endpoints.
//! - Events are `event: video` / `event: job` with the same JSON body as the polling endpoint;
//!   `id:` is the change's position in the tenant's change log. A client that reconnects with
//!   `Last-Event-ID` gets the current state of everything that changed since: intermediate
//!   progress may be coalesced, a terminal state is never lost. When that position is older than
//!   the tenant's change log (or the log cannot fill a gap in this replica's feed), the stream
//!   sends `event: reset` (`{"reason":"history_expired","snapshot":true,"tasks":N}`, its id the
//!   log head) and then the current state of every watched task — a full snapshot, not a diff.
//!   An `all=true` stream has no snapshot to send: it gets `event: resync` (reload the list).
//! - A `: hb` comment every 15 s keeps proxies from closing idle streams.
//! - At most `per_tenant_cap` streams per tenant per process (429 beyond); slow readers are
//!   dropped (see [`crate::hub`]).
//! - Browsers' `EventSource` cannot send headers, so the token may also come as `access_token`
//!   in the query (prefer the header; query strings end up in access logs), and a client that
//!   opens a new `EventSource` to resume passes its position as `last_event_id` (the header
//!   wins when both are sent).
//!
//! The submodules: `query` (the query string: what to watch, the token, the resume position)
//! and `conn` (one open stream: snapshot, catch-up, live events, heartbeats).

mod conn;
mod query;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use self::conn::Conn;
pub(crate) use self::conn::event;
pub use self::conn::frame;
use self::query::parse;
use crate::auth::Audience;
use crate::error::ApiError;
use crate::hub::{CapExceeded, Hub, Watch};
use crate::outlet::Tap;
use crate::state::ReadState;

/// State of the stream route.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub read: ReadState,
    pub hub: Hub,
    pub shutdown: CancellationToken,
    /// Interval of the `: hb` comments (15 s by default).
    pub heartbeat: Duration,
}

impl StreamState {
    /// Starts this process's hub over the read state's store.
    pub fn start(read: ReadState, per_tenant_cap: usize, shutdown: CancellationToken) -> Self {
        let hub = Hub::start_with(
            &read.store,
            per_tenant_cap,
            shutdown.clone(),
            read.credentials.clone(),
            read.liveness,
        );
        Self {
            read,
            hub,
            shutdown,
            heartbeat: Duration::from_secs(15),
        }
    }
}

pub fn router(state: StreamState) -> Router {
    Router::new()
        .route("/api/v1/progress/stream", get(stream))
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/progress/stream", tag = "progress",
    params(("videos" = Option<String>, Query, description = "Comma-separated video ids"),
           ("jobs" = Option<String>, Query, description = "Comma-separated job ids"),
           ("all" = Option<bool>, Query, description = "Every task of the tenant (staff only)"),
           ("access_token" = Option<String>, Query, description = "Token, for EventSource clients that cannot send headers"),
           ("last_event_id" = Option<String>, Query, description = "Resume after this event, for clients that cannot send Last-Event-ID"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of `video` and `job` events", content_type = "text/event-stream"),
              (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 403, description = "all=true needs a staff role", body = crate::error::ErrorBody),
              (status = 429, description = "Too many streams for this tenant", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<StreamState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse(raw.as_deref())?;
    let principal = match (&q.token, headers.contains_key(header::AUTHORIZATION)) {
        (Some(t), false) => {
            let mut h = headers.clone();
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| ApiError::Unauthorized("invalid token"))?;
            h.insert(header::AUTHORIZATION, v);
            state.read.auth.authenticate(&h, Audience::Browser)?
        }
        _ => state.read.auth.authenticate(&headers, Audience::Browser)?,
    };
    if matches!(q.watch, Watch::All) && !principal.is_staff() {
        return Err(ApiError::Forbidden(
            "watching a whole tenant needs a staff role",
        ));
    }
    let reg = state
        .hub
        .register(
            principal.tenant,
            principal.user_id.as_deref(),
            q.watch.clone(),
            principal.is_staff(),
        )
        .map_err(|e| {
            tracing::warn!(tenant = %principal.tenant, user = principal.user_id.as_deref().unwrap_or("-"), cap = %e, "stream refused");
            ApiError::TooManyRequests(match e {
                CapExceeded::Tenant => "too many open streams for this tenant",
                CapExceeded::User => "too many open streams for this user",
            })
        })?;
    // On a Redis Cluster this replica hears a tenant's changes only once it follows it; the
    // snapshot or catch-up below must not start before (`StatusStore::follow`).
    state.read.store.follow(principal.tenant).await?;
    let tap = Tap(reg.outlet.clone());
    let mut conn = Conn {
        reg,
        store: state.read.store.clone(),
        principal,
        watch: q.watch,
        pending: VecDeque::new(),
        heartbeat: Box::pin(tokio::time::sleep(state.heartbeat)),
        heartbeat_every: state.heartbeat,
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id)
        .filter(|s| !s.is_empty() && s.len() <= 64);
    match last_id {
        Some(id) => conn.catch_up(&id).await?,
        None => conn.snapshot_all().await?,
    }
    let body = futures::stream::unfold(conn, |mut conn| async move {
        conn.next_event()
            .await
            .map(|e| (Ok::<_, Infallible>(e), conn))
    })
    .take_until(state.shutdown.cancelled_owned());
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // The lean path attaches its socket to the stream's outlet (direct writes from the hub).
    res.extensions_mut().insert(tap);
    Ok(res)
}
