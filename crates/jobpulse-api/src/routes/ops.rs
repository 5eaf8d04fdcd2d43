//! Operations routes: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use jobpulse_store::SharedStore;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;

/// An extra readiness check (e.g. the database for processes that use one).
pub type ReadyCheck =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static>;

/// State of the operations routes.
#[derive(Clone)]
pub struct OpsState {
    pub store: SharedStore,
    pub prometheus: Option<PrometheusHandle>,
    pub checks: Vec<(&'static str, ReadyCheck)>,
    pub openapi: Arc<String>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field("store", &self.store.backend())
            .field(
                "checks",
                &self.checks.iter().map(|c| c.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .with_state(state)
}

/// Health and readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Per dependency: `ok` or why not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Response {
    axum::Json(Health {
        status: "ok",
        checks: Vec::new(),
    })
    .into_response()
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Dependencies reachable", body = Health),
              (status = 503, description = "A dependency is unreachable", body = Health)))]
pub async fn readyz(State(state): State<OpsState>) -> Response {
    let mut checks = Vec::new();
    let store = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await;
    checks.push(match store {
        Ok(Ok(())) => Check {
            name: "read_model",
            ok: true,
            error: None,
        },
        Ok(Err(e)) => Check {
            name: "read_model",
            ok: false,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            name: "read_model",
            ok: false,
            error: Some("timed out".into()),
        },
    });
    for (name, check) in &state.checks {
        let r = tokio::time::timeout(CHECK_TIMEOUT, check()).await;
        checks.push(match r {
            Ok(Ok(())) => Check {
                name,
                ok: true,
                error: None,
            },
            Ok(Err(e)) => Check {
                name,
                ok: false,
                error: Some(e),
            },
            Err(_) => Check {
                name,
                ok: false,
                error: Some("timed out".into()),
            },
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Health {
            status: if ok { "ok" } else { "unavailable" },
            checks,
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<OpsState>) -> Response {
    let body = state
        .prometheus
        .as_ref()
        .map(crate::metrics::render)
        .unwrap_or_default();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "ops",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub async fn openapi(State(state): State<OpsState>) -> Response {
    let mut res = state.openapi.as_str().to_owned().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
