//! Server-Sent Events: watch many tasks over one connection (`GET /api/v1/progress/stream`).
//!
//! - `?videos=1,2&jobs=a,b` watches those tasks: the current state of each is sent first (an
//!   `UNKNOWN` body for ids the read model does not know), then every change.
//! - `?all=true` (staff only) watches every task of the tenant: changes only; the work box
//!   hydrates its list from the database-backed list endpoints.
//! - Events are `event: video` / `event: job` with the same JSON body as the polling endpoint;
//!   `id:` is the change's position in the tenant's change log. A client that reconnects with
//!   `Last-Event-ID` gets the current state of everything that changed since (or of everything it
//!   watches, when that position is too old): intermediate progress may be coalesced, a terminal
//!   state is never lost.
//! - A `: hb` comment every 15 s keeps proxies from closing idle streams.
//! - At most `per_tenant_cap` streams per tenant per process (429 beyond); slow readers are
//!   dropped (see [`crate::hub`]).
//! - Browsers' `EventSource` cannot send headers, so the token may also come as `access_token`
//!   in the query (prefer the header; query strings end up in access logs), and a client that
//!   opens a new `EventSource` to resume passes its position as `last_event_id` (the header
//!   wins when both are sent).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use jobpulse_domain::{JobId, TaskId, TenantId, VideoId};
use jobpulse_store::{ChangesSince, SharedStore, Snapshot};
use tokio_util::sync::CancellationToken;

use crate::auth::{Audience, Principal};
use crate::error::ApiError;
use crate::hub::{CapExceeded, Dispatched, Hub, Registration, Watch};
use crate::outlet::Tap;
use crate::render;
use crate::routes::batch::MAX_IDS;
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

struct Query {
    watch: Watch,
    token: Option<String>,
    last_event_id: Option<String>,
}

fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut ids = Vec::new();
    let mut all = false;
    let mut token = None;
    let mut last_event_id = None;
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "videos" | "jobs" => {
                for s in v.replace("%2C", ",").split(',').filter(|s| !s.is_empty()) {
                    ids.push(if k == "videos" {
                        TaskId::Video(
                            VideoId::parse(s)
                                .map_err(|e| ApiError::BadRequest(format!("videos: {s:?}: {e}")))?,
                        )
                    } else {
                        TaskId::Job(
                            JobId::parse(s)
                                .map_err(|e| ApiError::BadRequest(format!("jobs: {s:?}: {e}")))?,
                        )
                    });
                    if ids.len() > MAX_IDS {
                        return Err(ApiError::BadRequest(format!(
                            "at most {MAX_IDS} ids per stream; use all=true to watch a tenant"
                        )));
                    }
                }
            }
            "all" => all = matches!(v, "true" | "1"),
            "access_token" => token = Some(v.to_owned()),
            "last_event_id" => last_event_id = Some(v.to_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {:?}; use videos=, jobs=, all=true",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    if all && !ids.is_empty() {
        return Err(ApiError::BadRequest(
            "use either all=true or a list of ids".into(),
        ));
    }
    if !all && ids.is_empty() {
        return Err(ApiError::BadRequest(
            "say what to watch: videos=…, jobs=… or all=true".into(),
        ));
    }
    ids.sort_unstable();
    ids.dedup();
    let watch = if all {
        Watch::All
    } else {
        Watch::Tasks(ids.into())
    };
    Ok(Query {
        watch,
        token,
        last_event_id,
    })
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

/// One open stream. Held for as long as the client stays, so it is kept small (see
/// docs/benchmarks.md, SSE fan-out): the watched ids are the hub's shared slice, the revisions
/// sent are one number per id (in the outlet shared with the hub, [`crate::outlet::Filter`],
/// with the change-log position delivered), and the snapshot's queue is freed once sent.
struct Conn {
    reg: Registration,
    store: SharedStore,
    principal: Principal,
    watch: Watch,
    pending: VecDeque<Bytes>,
    /// The next `: hb` comment (a fixed cadence: no timer work per event).
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    heartbeat_every: Duration,
}

const HEARTBEAT: &[u8] = b": hb\n\n";

/// One SSE event as sent: `event:`, `data:` (our JSON has no line breaks) and `id:` lines.
pub fn frame(name: &str, data: &[u8], id: Option<&str>) -> Bytes {
    let mut b = Vec::with_capacity(name.len() + data.len() + id.map_or(0, str::len) + 24);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(data);
    if let Some(id) = id {
        b.extend_from_slice(b"\nid: ");
        b.extend_from_slice(id.as_bytes());
    }
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

/// The event of `task` in state `snap`, with `id` as its position.
pub(crate) fn event(
    task: &TaskId,
    snap: Option<&Snapshot>,
    id: Option<&str>,
    credentials: Option<&jobpulse_db::CredentialSeal>,
) -> Bytes {
    match task {
        TaskId::Video(v) => frame("video", &render::video(*v, snap), id),
        TaskId::Job(j) => frame("job", &render::job(j, snap, credentials), id),
    }
}

impl Conn {
    fn tenant(&self) -> TenantId {
        self.principal.tenant
    }

    /// The current state of `tasks`, read in one round trip, queued as events.
    async fn send_current(
        &mut self,
        tasks: &[TaskId],
        include_unknown: bool,
    ) -> Result<(), ApiError> {
        let outlet = self.reg.outlet.clone();
        for chunk in tasks.chunks(MAX_IDS) {
            let snaps = self.store.get_many(self.tenant(), chunk).await?;
            let mut d = outlet.lock();
            for (task, snap) in chunk.iter().zip(snaps) {
                let snap = snap.filter(|s| d.filter.visible(task, s));
                match &snap {
                    Some(s) if !d.filter.fresh(task, s.rev) => continue,
                    None if !include_unknown => continue,
                    _ => {}
                }
                let ev = event(
                    task,
                    snap.as_ref(),
                    d.filter.cursor.as_deref(),
                    self.reg.hub_credentials(),
                );
                self.pending.push_back(ev);
            }
        }
        Ok(())
    }

    async fn snapshot_all(&mut self) -> Result<(), ApiError> {
        let Watch::Tasks(ids) = self.watch.clone() else {
            return Ok(());
        };
        self.send_current(&ids, true).await
    }

    /// Resumes after `cursor`: what changed since, or everything when that is unknown.
    async fn catch_up(&mut self, cursor: &str) -> Result<(), ApiError> {
        let mut after = cursor.to_owned();
        loop {
            match self
                .store
                .changes_since(self.tenant(), &after, 1000)
                .await?
            {
                ChangesSince::Changes(list) => {
                    let Some((last, _)) = list.last() else {
                        self.reg.outlet.lock().filter.cursor = Some(after.as_str().into());
                        return Ok(());
                    };
                    let last = last.clone();
                    let full = list.len() == 1000;
                    let mut seen = HashSet::new();
                    let tasks: Vec<TaskId> = list
                        .into_iter()
                        .map(|(_, t)| t)
                        .filter(|t| self.watch.wants(t) && seen.insert(t.clone()))
                        .collect();
                    self.reg.outlet.lock().filter.cursor = Some(last.as_str().into());
                    // A task deleted since then is sent as unknown.
                    self.send_current(&tasks, true).await?;
                    if !full {
                        return Ok(());
                    }
                    after = last;
                }
                ChangesSince::Expired => {
                    metrics::counter!("jobpulse_sse_resync_total", "kind" => "expired")
                        .increment(1);
                    return match self.watch {
                        Watch::All => {
                            self.pending.push_back(frame(
                                "resync",
                                br#"{"reason":"history expired; reload the task list"}"#,
                                None,
                            ));
                            Ok(())
                        }
                        Watch::Tasks(_) => self.snapshot_all().await,
                    };
                }
            }
        }
    }

    fn live(&mut self, d: &Dispatched) -> Option<Bytes> {
        if !self.reg.outlet.lock().filter.live(d) {
            return None;
        }
        // The same bytes for every stream that gets this change: its id is the change's.
        Some(d.frame(self.reg.hub_credentials()).clone())
    }

    /// Re-reads what a lagging stream missed. Rare, so boxed: the state an open stream keeps
    /// between events stays small.
    fn resync(&mut self) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + '_>> {
        Box::pin(async move {
            let cursor = self.reg.outlet.lock().filter.cursor.clone();
            match cursor {
                Some(c) => self.catch_up(&c).await,
                None => match self.watch {
                    Watch::All => Ok(()),
                    Watch::Tasks(_) => self.snapshot_all().await,
                },
            }
        })
    }

    async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if self.pending.is_empty() {
                    // The snapshot's queue would otherwise keep its capacity for the stream's life.
                    self.pending = VecDeque::new();
                }
                return Some(ev);
            }
            if self.reg.signal.lagged.swap(false, Ordering::AcqRel) {
                metrics::counter!("jobpulse_sse_resync_total", "kind" => "lagged").increment(1);
                let result = self.resync().await;
                if result.is_err() {
                    // The store is unreachable: end the stream; the client reconnects with its
                    // Last-Event-ID and resumes from there.
                    return None;
                }
                continue;
            }
            let signal = self.reg.signal.clone();
            let outlet = self.reg.outlet.clone();
            {
                // Idle: nothing queued, nothing of our own to send, no resync asked for, no
                // bytes left by a direct write — the hub may write to the socket itself (lean
                // path only: it has attached one). Checked under the lock the hub queues under.
                let mut d = outlet.lock();
                if d.sock.is_some()
                    && d.leftover.is_none()
                    && self.reg.rx.is_empty()
                    && !signal.lagged.load(Ordering::Acquire)
                {
                    d.direct = true;
                }
            }
            let woke = tokio::select! {
                biased;
                msg = self.reg.rx.recv() => Woke::Queued(msg),
                _ = signal.wake.notified() => Woke::Signal,
                _ = self.heartbeat.as_mut() => Woke::Heartbeat,
            };
            // Whatever woke us, the hub stops writing before we do.
            outlet.lock().direct = false;
            match woke {
                Woke::Queued(Some(d)) => {
                    if let Some(ev) = self.live(&d) {
                        return Some(ev);
                    }
                }
                // The hub dropped us (a reader too slow for too long).
                Woke::Queued(None) => return None,
                Woke::Signal => {}
                Woke::Heartbeat => {
                    let next = tokio::time::Instant::now() + self.heartbeat_every;
                    self.heartbeat.as_mut().reset(next);
                    return Some(Bytes::from_static(HEARTBEAT));
                }
            }
        }
    }
}

/// What ended a stream's wait.
enum Woke {
    Queued(Option<Arc<Dispatched>>),
    Signal,
    Heartbeat,
}
