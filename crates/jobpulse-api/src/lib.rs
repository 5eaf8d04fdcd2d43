//! jobpulse's HTTP API (axum + tower-http).
//!
//! # Layout
//!
//! - [`auth`]: JWT verification (no database: the token is the membership proof) and minting.
//! - [`render`]: the browser contract's JSON bodies.
//! - [`signing`]: self-authorizing, expiring media URLs.
//! - [`state`]: the read side's state — deliberately without a database handle.
//! - [`routes`]: one module per route group, each with a `router()` (the dashboard page at `/`
//!   is one of them: static files compiled into the binary).
//! - [`openapi`]: the OpenAPI document.
//! - [`metrics`]: the Prometheus recorder and hot-path handles.
//! - [`observe`]: per-request access log line, `X-Request-Id`, per-route HTTP metrics.
//! - [`hub`]: fan-out of read-model changes to SSE connections.
//! - [`app`]: [`Application::build`], the one assembly of an application from its settings.
//! - [`server`]: binding, connection hardening, graceful shutdown.
//! - [`stream_conn`]: the lean HTTP/1.1 connection of event streams (no hyper buffers).
//! - [`outlet`]: a stream's delivery state shared with the hub; the hub's direct writes to
//!   idle lean streams.
//! - [`error`]: the one error type and its JSON envelope.
//! - [`extract`]: the HTTP edge's extractors (principals, path and query parameters).
//!
//! [`Application::build`] assembles the whole application from its settings; `router` puts its
//! parts together with the cross-cutting layers (CORS, body limit, panic catcher, request
//! timeout, request observation).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub mod app;
pub mod auth;
pub mod credentials;
pub mod error;
pub mod extract;
pub mod hub;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod outlet;
pub mod probe_pool;
pub mod rate;
pub mod render;
pub mod routes;
pub mod server;
pub mod signing;
pub mod spool;
pub mod state;
pub mod stream_conn;

pub use app::{AppSettings, Listen, SseSettings, Transcoding};
pub use server::{Application, HttpConfig, shutdown_signal};
pub use state::{MissHook, ReadState};

/// Which browser origins may call the API.
#[derive(Debug, Clone, Default)]
pub enum CorsOrigins {
    /// Any origin (tokens travel in the `Authorization` header, never in cookies, so this does
    /// not expose anything a page could not already send).
    #[default]
    Any,
    /// Only these origins, e.g. `https://academy.example`.
    List(Vec<String>),
}

/// Request headers every CORS preflight allows: what the front end sends on every request
/// (docs/contract.md §1: `Authorization`, `Content-Type`, `X-Client`, `X-Client-Version`,
/// `X-Tenant-Code`) and what jobpulse's own clients send (`If-None-Match`, `Last-Event-ID`,
/// `Idempotency-Key`). [`RouterConfig::cors_headers`] adds more.
pub const CORS_ALLOWED_HEADERS: [&str; 10] = [
    "x-request-id",
    "authorization",
    "content-type",
    "range",
    "x-client",
    "x-client-version",
    "x-tenant-code",
    "if-none-match",
    "last-event-id",
    "idempotency-key",
];

/// Response headers scripts on another origin may read.
pub const CORS_EXPOSED_HEADERS: [&str; 7] = [
    "x-request-id",
    "etag",
    "retry-after",
    "x-poll-after",
    "content-range",
    "accept-ranges",
    "content-length",
];

/// Cross-cutting settings of the router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub cors: CorsOrigins,
    /// Request headers allowed by CORS beyond [`CORS_ALLOWED_HEADERS`] (`--cors-headers`;
    /// names that are not valid header names are refused when the settings are read).
    pub cors_headers: Vec<String>,
    /// Largest request body accepted by routes that do not set their own (uploads do).
    pub body_limit: usize,
    /// Longest a non-streaming request may take.
    pub request_timeout: Duration,
    /// Origins the dashboard's player may fetch media from besides its own (the public URL's,
    /// the bucket's for presigned segments); see [`routes::dashboard::content_security_policy`].
    pub media_origins: Vec<String>,
    /// When a running task is shown `stalled` (`--worker-stalled-after`, docs/contract.md §3a).
    pub liveness: render::Liveness,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            cors: CorsOrigins::Any,
            cors_headers: Vec::new(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            media_origins: Vec::new(),
            liveness: render::Liveness::default(),
        }
    }
}

/// The parts an application is assembled from. Only `read` and `ops` are required: `jobpulse
/// serve` without a database configured still answers every progress poll.
#[derive(Debug)]
pub(crate) struct Parts {
    pub read: ReadState,
    pub ops: routes::ops::OpsState,
    /// Routes that need longer than the request timeout (uploads, SSE), already with state.
    pub long_running: Option<Router>,
    /// Other routes with their state applied.
    pub extra: Option<Router>,
    /// The database-backed routes (media, jobs, lectures, signed files); `None` when no
    /// database is configured — progress reads work without it.
    pub app: Option<state::AppState>,
}

fn cors(config: &CorsOrigins, extra_headers: &[String]) -> CorsLayer {
    let origins = match config {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(
            CORS_ALLOWED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .chain(
                    extra_headers
                        .iter()
                        .filter_map(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok()),
                )
                .collect::<Vec<_>>(),
        )
        .expose_headers(
            CORS_EXPOSED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(600))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error".into(),
    )
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound
}

/// Assembles the application router.
pub(crate) fn router(parts: Parts, config: &RouterConfig) -> Router {
    let mut timed = routes::progress::router(parts.read.clone())
        .merge(routes::batch::router(parts.read.clone()))
        .merge(routes::ingest::router(parts.read))
        .merge(routes::ops::router(parts.ops))
        .merge(routes::dashboard::router(&config.media_origins));
    if let Some(extra) = parts.extra {
        timed = timed.merge(extra);
    }
    let timed = timed.layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        config.request_timeout,
    ));
    let mut app = timed;
    if let Some(long) = parts.long_running {
        app = app.merge(long);
    }
    if let Some(state) = parts.app {
        // Uploads and downloads stream for as long as they take: no request timeout here.
        app = app
            .merge(routes::media::router(state.clone()))
            .merge(routes::direct_upload::router(state.clone()))
            .merge(routes::jobs::router(state.clone()))
            .merge(routes::playback::router(state.clone()))
            .merge(routes::enroll::router(state.clone()))
            .merge(routes::webhooks::router(state.clone()))
            .merge(routes::files::router(state));
    }
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors(&config.cors, &config.cors_headers))
        // Outermost: sees every answer, CORS refusals and panics included.
        .layer(axum::middleware::from_fn(observe::layer))
}

/// The ops state for an application, with a freshly rendered OpenAPI document.
pub fn ops_state(
    store: jobpulse_store::SharedStore,
    checks: Vec<(&'static str, routes::ops::ReadyCheck)>,
) -> routes::ops::OpsState {
    routes::ops::OpsState {
        store,
        prometheus: metrics::install(),
        checks,
        openapi: Arc::new(openapi::document()),
    }
}
