//! Completion webhooks (docs/contract.md "Webhooks"): staff register endpoints for their
//! tenant, list and remove them, and list each one's deliveries with their attempts.
//!
//! Staff only (other roles 403), tenant-isolated (another tenant's endpoint is 404). A URL is
//! checked by `jobpulse_webhooks::check_url` (http/https, no loopback, private, link-local, …
//! address unless the operator's allow-list says so): refused with 422 and the reason. These
//! admin routes use the database; the progress routes still never do.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use jobpulse_db::webhooks::{DeliveryPage, MAX_URL_LEN};
use jobpulse_db::{CreatedEndpoint, WebhookEndpoint, WebhookEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{PathParams, QueryParams, Staff};
use crate::state::AppState;

/// Largest registration body, bytes.
const BODY_LIMIT: usize = 8 * 1024;
/// Most event names in one registration.
const MAX_EVENTS: usize = 16;
/// Longest endpoint id or cursor accepted in a path or query.
const MAX_ID_LEN: usize = 64;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/webhooks/", get(list).post(create))
        .route("/api/v1/webhooks/{id}/", delete(remove))
        .route("/api/v1/webhooks/{id}/deliveries/", get(deliveries))
        .with_state(state)
}

/// A registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http(s)://…`, at most 2048 bytes; its host must resolve to public addresses.
    pub url: String,
    /// Event types: `video.ready`, `video.failed`, `video.retry_wait`, `job.done`,
    /// `job.failed`, `job.retrying`.
    pub events: Vec<String>,
}

/// An endpoint as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookRecord {
    #[schema(example = "ep_0123456789abcdef0123456789abcdef")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A new endpoint, with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub endpoint: WebhookRecord,
    /// `whsec_<base64>`: the Standard Webhooks key to verify `webhook-signature` with.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub results: Vec<WebhookRecord>,
}

/// A page of deliveries (newest first) with their attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Each: `id` (the `webhook-id`), `event_type`, `state` (PENDING, DELIVERED, DEAD),
    /// `attempts`, `next_attempt_at_ms`, `last_status`, `last_error` (why it failed or went
    /// dead), `payload`, `attempt_log` (`attempt`, `at_ms`, `status`, `error`, `duration_ms`).
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<serde_json::Value>,
    /// The next page, if any.
    pub next: Option<String>,
}

/// Query of the deliveries listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1..=100, default 20.
    pub limit: Option<u32>,
    /// Cursor from `next`.
    pub before: Option<String>,
}

fn record(e: &WebhookEndpoint) -> WebhookRecord {
    WebhookRecord {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.iter().map(|v| v.as_str().to_owned()).collect(),
        created_at: e.created_at_ms,
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(ApiError::BadRequest("malformed id".into()));
    }
    Ok(())
}

fn parse_events(names: &[String]) -> Result<Vec<WebhookEvent>, ApiError> {
    if names.is_empty() || names.len() > MAX_EVENTS {
        return Err(ApiError::Unprocessable(format!(
            "events: 1 to {MAX_EVENTS} event types"
        )));
    }
    names
        .iter()
        .map(|n| {
            WebhookEvent::parse(n).ok_or_else(|| {
                let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                ApiError::Unprocessable(format!(
                    "unknown event {:?}; known: {}",
                    n.chars().take(64).collect::<String>(),
                    known.join(", ")
                ))
            })
        })
        .collect()
}

#[utoipa::path(post, operation_id = "create_webhook", path = "/api/v1/webhooks/", tag = "webhooks",
    request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody),
              (status = 422, description = "Unknown event, URL not http(s), too long, or its host resolves to a loopback/private/link-local/… address", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Staff(p): Staff,
    body: Body,
) -> Result<Response, ApiError> {
    let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!(
            "a registration is at most {} KiB",
            BODY_LIMIT / 1024
        ))
    })?;
    let req: CreateWebhook = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let events = parse_events(&req.events)?;
    if req.url.len() > MAX_URL_LEN {
        return Err(ApiError::Unprocessable(format!(
            "url: at most {MAX_URL_LEN} bytes"
        )));
    }
    jobpulse_webhooks::check_url(&req.url, &state.limits.webhook_allow)
        .await
        .map_err(|e| ApiError::Unprocessable(format!("url: {e}")))?;
    let CreatedEndpoint { endpoint, secret } = state
        .db
        .create_webhook_endpoint(p.tenant, &req.url, &events)
        .await?;
    let out = CreatedWebhook {
        endpoint: record(&endpoint),
        secret,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[utoipa::path(get, operation_id = "list_webhooks", path = "/api/v1/webhooks/", tag = "webhooks",
    responses((status = 200, body = WebhookList), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Staff(p): Staff) -> Result<Response, ApiError> {
    let eps = state.db.list_webhook_endpoints(p.tenant).await?;
    Ok(Json(WebhookList {
        results: eps.iter().map(record).collect(),
    })
    .into_response())
}

#[utoipa::path(delete, operation_id = "delete_webhook", path = "/api/v1/webhooks/{id}/", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed; its pending deliveries go dead (\"endpoint removed\")"),
              (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Staff(p): Staff,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    state.db.remove_webhook_endpoint(p.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, operation_id = "webhook_deliveries", path = "/api/v1/webhooks/{id}/deliveries/", tag = "webhooks",
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = DeliveryList),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Staff(p): Staff,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if let Some(b) = &q.before {
        check_id(b)?;
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let DeliveryPage { items, next } = state
        .db
        .webhook_deliveries(p.tenant, &id, q.before.as_deref(), limit)
        .await?;
    let results = items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let next = next.map(|c| format!("/api/v1/webhooks/{id}/deliveries/?limit={limit}&before={c}"));
    Ok(Json(DeliveryList { results, next }).into_response())
}
