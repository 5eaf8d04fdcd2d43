//! jobpulse's HTTP API (axum + tower-http).
//!
//! # Layout
//!
//! - [`auth`]: JWT verification (no database: the token is the membership proof) and minting.
//! - [`render`]: the browser contract's JSON bodies.
//! - [`state`]: the read side's state — deliberately without a database handle.
//! - [`routes`]: one module per route group, each with a `router()` (the dashboard page at `/`
//!   is one of them: static files compiled into the binary).
//! - [`openapi`]: the OpenAPI document.
//! - [`metrics`]: the Prometheus recorder and hot-path handles.
//! - [`hub`]: fan-out of read-model changes to SSE connections.
//! - [`server`]: binding, connection hardening, graceful shutdown.
//! - [`stream_conn`]: the lean HTTP/1.1 connection of event streams (no hyper buffers).
//! - [`error`]: the one error type and its JSON envelope.
//!
//! [`router`] assembles the whole application from its parts, with the cross-cutting layers
//! (CORS, body limit, panic catcher, request timeout).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub mod auth;
pub mod credentials;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod render;
pub mod routes;
pub mod server;
pub mod signing;
pub mod state;
pub mod stream_conn;

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

/// Cross-cutting settings of the router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub cors: CorsOrigins,
    /// Largest request body accepted by routes that do not set their own (uploads do).
    pub body_limit: usize,
    /// Longest a non-streaming request may take.
    pub request_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            cors: CorsOrigins::Any,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The parts an application is assembled from. Only `read` and `ops` are required: `jobpulse
/// serve` without a database configured still answers every progress poll.
#[derive(Debug)]
pub struct Parts {
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

fn cors(config: &CorsOrigins) -> CorsLayer {
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
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-tenant-code"),
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::ETAG,
            HeaderName::from_static("x-poll-after"),
        ])
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
pub fn router(parts: Parts, config: &RouterConfig) -> Router {
    let mut timed = routes::progress::router(parts.read.clone())
        .merge(routes::batch::router(parts.read.clone()))
        .merge(routes::ingest::router(parts.read))
        .merge(routes::ops::router(parts.ops))
        .merge(routes::dashboard::router());
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
            .merge(routes::jobs::router(state.clone()))
            .merge(routes::enroll::router(state.clone()))
            .merge(routes::files::router(state));
    }
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors(&config.cors))
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
