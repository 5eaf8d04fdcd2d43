//! Completion webhooks in the database: the endpoints a tenant's staff register, and the
//! deliveries each state change enqueues **in its own transaction** (an outbox of the
//! webhooks: a change and its deliveries commit together, so none is lost across a crash).
//!
//! - `enqueue`: the event a committed change stands for, and one delivery per subscribed
//!   endpoint (called from `outbox::apply_change`).
//! - [`deliveries`]: what the sender (`jobpulse_webhooks::Sender`) claims, settles and what the
//!   deliveries listing reads.
//!
//! Checking that a URL may be called (scheme, SSRF) is the caller's job
//! (`jobpulse_webhooks::guard`); this module bounds the sizes and stores.

pub(crate) mod enqueue;

pub mod deliveries;

use base64::Engine as _;
use jobpulse_domain::TenantId;
use serde::Serialize;

use crate::conn::{RowExt, dual, now_ms};
use crate::{Db, DbError};

pub use deliveries::{
    AttemptRecord, DeliveryPage, DeliveryState, DueDelivery, Settle, WebhookAttempt,
    WebhookDelivery,
};

/// Longest endpoint URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Most endpoints one tenant may register (removed ones do not count).
pub const MAX_ENDPOINTS_PER_TENANT: i64 = 20;

/// An event an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum WebhookEvent {
    /// A video became READY.
    #[serde(rename = "video.ready")]
    VideoReady,
    /// A video became FAILED.
    #[serde(rename = "video.failed")]
    VideoFailed,
    /// A video's attempt failed and it waits for another (RETRY_WAIT).
    #[serde(rename = "video.retry_wait")]
    VideoRetryWait,
    /// A job became DONE.
    #[serde(rename = "job.done")]
    JobDone,
    /// A job ended otherwise than DONE: FAILED, REJECTED_BAD_INPUT (found by the worker),
    /// FALLBACK_TO_GPU or REVIEW_REQUIRED (the payload's `data.status` says which).
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A job's attempt failed and it waits for another (RETRYING).
    #[serde(rename = "job.retrying")]
    JobRetrying,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 6] = [
        Self::VideoReady,
        Self::VideoFailed,
        Self::VideoRetryWait,
        Self::JobDone,
        Self::JobFailed,
        Self::JobRetrying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VideoReady => "video.ready",
            Self::VideoFailed => "video.failed",
            Self::VideoRetryWait => "video.retry_wait",
            Self::JobDone => "job.done",
            Self::JobFailed => "job.failed",
            Self::JobRetrying => "job.retrying",
        }
    }

    /// The event named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A registered endpoint (without its secret, which is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at_ms: i64,
}

/// A new endpoint and its signing secret (`whsec_<base64 of 32 random bytes>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

/// The settled deliveries [`Db::purge_webhook_deliveries`] deletes (`$1` before, `$2` limit);
/// both of its statements pick the same rows (a total order).
macro_rules! purge_pick {
    () => {
        "SELECT id FROM webhook_deliveries WHERE state <> 'PENDING' AND updated_at < $1 \
         ORDER BY updated_at, id LIMIT $2"
    };
}

/// A random id: `prefix` and 32 hex digits (128 random bits).
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Events as stored (a JSON array of names); unknown names are skipped.
fn events_from(json: &str) -> Result<Vec<WebhookEvent>, DbError> {
    let names: Vec<String> = serde_json::from_str(json).map_err(DbError::corrupt)?;
    Ok(names
        .iter()
        .filter_map(|n| WebhookEvent::parse(n))
        .collect())
}

fn events_json(events: &[WebhookEvent]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
}

fn endpoint_from(r: &impl RowExt) -> Result<WebhookEndpoint, DbError> {
    Ok(WebhookEndpoint {
        id: r.text("id")?,
        tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
        url: r.text("url")?,
        events: events_from(&r.text("events")?)?,
        created_at_ms: r.int("created_at")?,
    })
}

/// Deduplicates `events` (first occurrence kept) and refuses an empty list.
fn check_events(events: &[WebhookEvent]) -> Result<Vec<WebhookEvent>, DbError> {
    let mut out = Vec::new();
    for e in events {
        if !out.contains(e) {
            out.push(*e);
        }
    }
    if out.is_empty() {
        return Err(DbError::Invalid(
            "events must name at least one event".into(),
        ));
    }
    Ok(out)
}

impl Db {
    /// Registers an endpoint for `tenant` (the URL was checked by the caller: scheme, SSRF).
    /// Refuses an unknown tenant (`NotFound`), a URL longer than [`MAX_URL_LEN`], no events,
    /// and more than [`MAX_ENDPOINTS_PER_TENANT`] live endpoints (`Invalid`).
    pub async fn create_webhook_endpoint(
        &self,
        tenant: TenantId,
        url: &str,
        events: &[WebhookEvent],
    ) -> Result<CreatedEndpoint, DbError> {
        if url.is_empty() || url.len() > MAX_URL_LEN {
            return Err(DbError::Invalid(format!(
                "url must be 1 to {MAX_URL_LEN} bytes"
            )));
        }
        let events = check_events(events)?;
        if self.get_tenant(tenant).await?.is_none() {
            return Err(DbError::NotFound("tenant"));
        }
        let endpoint = WebhookEndpoint {
            id: random_id("ep_"),
            tenant,
            url: url.to_owned(),
            events,
            created_at_ms: now_ms(),
        };
        let secret = new_secret();
        let mut tx = self.begin().await?;
        let live = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM webhook_endpoints \
                 WHERE tenant_id = $1 AND disabled_at IS NULL",
            )
            .bind(tenant.get())
            .fetch_one(&mut *c)
            .await?
            .int("n")?
        });
        if live >= MAX_ENDPOINTS_PER_TENANT {
            return Err(DbError::Invalid(format!(
                "a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"
            )));
        }
        dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, tenant_id, url, secret, events, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&endpoint.id)
            .bind(tenant.get())
            .bind(&endpoint.url)
            .bind(&secret)
            .bind(events_json(&endpoint.events))
            .bind(endpoint.created_at_ms)
            .execute(&mut *c)
            .await?;
        });
        tx.commit().await?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// The tenant's live endpoints, oldest first.
    pub async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<WebhookEndpoint>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            let rows = sqlx::query(
                "SELECT id, tenant_id, url, events, created_at FROM webhook_endpoints \
                 WHERE tenant_id = $1 AND disabled_at IS NULL ORDER BY created_at, id",
            )
            .bind(tenant.get())
            .fetch_all(&mut *c)
            .await?;
            rows.iter().map(endpoint_from).collect()
        })
    }

    /// One live endpoint of the tenant (`None` for another tenant's or a removed one).
    pub async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT id, tenant_id, url, events, created_at FROM webhook_endpoints \
                 WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NULL",
            )
            .bind(id)
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| endpoint_from(&r))
            .transpose()
        })
    }

    /// Deletes up to `limit` settled (DELIVERED or DEAD) deliveries last changed before
    /// `before_ms`, with their attempts; how many. The sender calls it now and then
    /// (`jobpulse_webhooks::sender`), so the tables stay bounded.
    pub async fn purge_webhook_deliveries(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, DbError> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let mut tx = self.begin().await?;
        let n = dual!(tx.conn(), |c, d| {
            sqlx::query(concat!(
                "DELETE FROM webhook_attempts WHERE delivery_id IN (",
                purge_pick!(),
                ")"
            ))
            .bind(before_ms)
            .bind(limit)
            .execute(&mut *c)
            .await?;
            sqlx::query(concat!(
                "DELETE FROM webhook_deliveries WHERE id IN (",
                purge_pick!(),
                ")"
            ))
            .bind(before_ms)
            .bind(limit)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n)
    }

    /// Removes an endpoint: no new deliveries, and its pending ones go dead ("endpoint
    /// removed"). `NotFound` for another tenant's, a removed or an unknown endpoint.
    pub async fn remove_webhook_endpoint(&self, tenant: TenantId, id: &str) -> Result<(), DbError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let done = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "UPDATE webhook_endpoints SET disabled_at = $3 \
                 WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NULL",
            )
            .bind(id)
            .bind(tenant.get())
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(DbError::NotFound("webhook endpoint"));
        }
        dual!(tx.conn(), |c, d| {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'DEAD', last_error = 'endpoint removed', \
                 lease_token = NULL, updated_at = $2 WHERE endpoint_id = $1 AND state = 'PENDING'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }
}
