//! Deliveries: claimed by the sender under a lease, settled after each attempt, listed with
//! their attempts.
//!
//! A claim moves a due delivery's `next_attempt_at` forward by the lease and stamps it with a
//! random token; the sender's settle is a compare-and-set on that token. A sender killed
//! mid-delivery therefore leaves the delivery due again once the lease ends, and another
//! sender (or the restarted one) sends it again with the same `webhook-id`: at-least-once.
//! On PostgreSQL the claim reads `FOR UPDATE SKIP LOCKED`, so several hosts claim different
//! deliveries; SQLite's single writer serialises claims.

use std::time::Duration;

use jobpulse_domain::TenantId;
use serde::Serialize;

use super::random_id;
use crate::conn::{Conn, RowExt, dual, ms, now_ms, to_u32};
use crate::model::clean_message;
use crate::{Db, DbError};

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Not delivered yet; due at `next_attempt_at`.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Given up (retry window over, or the endpoint removed); `last_error` says why.
    Dead,
}

impl DeliveryState {
    fn parse(s: &str) -> Result<Self, DbError> {
        match s {
            "PENDING" => Ok(Self::Pending),
            "DELIVERED" => Ok(Self::Delivered),
            "DEAD" => Ok(Self::Dead),
            other => Err(DbError::corrupt(format!("delivery state {other}"))),
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAttempt {
    pub attempt: u32,
    pub at_ms: i64,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// Why the attempt failed (connection refused, timeout, non-2xx, refused address, …).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A delivery as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// The `webhook-id` header (the same on every attempt).
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The body sent (the event), as JSON.
    pub payload: serde_json::Value,
    /// The attempts, oldest first (the last [`ATTEMPTS_LISTED`] at most).
    pub attempt_log: Vec<WebhookAttempt>,
}

/// Most attempts listed per delivery (the newest are kept).
pub const ATTEMPTS_LISTED: usize = 30;

/// A page of the deliveries listing, newest first; `next` is the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryPage {
    pub items: Vec<WebhookDelivery>,
    pub next: Option<String>,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    /// The endpoint was removed after the delivery was enqueued.
    pub endpoint_removed: bool,
    pub payload: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// When the first attempt started (this one's start if it is the first).
    pub first_attempt_at_ms: i64,
    pub lease_token: String,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub at_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Try again at this time (ms since the epoch).
    Retry(i64),
    /// Give up, with the reason shown in the listing.
    Dead(String),
}

async fn due_ids(c: Conn<'_>, now: i64, limit: i64) -> Result<Vec<String>, DbError> {
    dual!(c, |c, d| {
        let sql = d.pick(
            "SELECT id FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            "SELECT id FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
        );
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(|r| r.text("id")).collect()
    })
}

fn due_from(r: &impl RowExt, token: String) -> Result<DueDelivery, DbError> {
    Ok(DueDelivery {
        id: r.text("id")?,
        endpoint_id: r.text("endpoint_id")?,
        url: r.text("url")?,
        secret: r.text("secret")?,
        endpoint_removed: r.opt_int("disabled_at")?.is_some(),
        payload: r.text("payload")?,
        attempts: to_u32(r.int("attempts")?, "attempts")?,
        first_attempt_at_ms: r.int("first_attempt_at")?,
        lease_token: token,
    })
}

fn status_from(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

fn delivery_from(r: &impl RowExt) -> Result<WebhookDelivery, DbError> {
    let state = DeliveryState::parse(&r.text("state")?)?;
    Ok(WebhookDelivery {
        id: r.text("id")?,
        endpoint_id: r.text("endpoint_id")?,
        event_type: r.text("event_type")?,
        state,
        attempts: to_u32(r.int("attempts")?, "attempts")?,
        next_attempt_at_ms: (state == DeliveryState::Pending)
            .then(|| r.int("next_attempt_at"))
            .transpose()?,
        last_status: status_from(r.opt_int("last_status")?),
        last_error: r.opt_text("last_error")?,
        created_at_ms: r.int("created_at")?,
        updated_at_ms: r.int("updated_at")?,
        payload: serde_json::from_str(&r.text("payload")?).map_err(DbError::corrupt)?,
        attempt_log: Vec::new(),
    })
}

fn attempt_from(r: &impl RowExt) -> Result<(String, WebhookAttempt), DbError> {
    Ok((
        r.text("delivery_id")?,
        WebhookAttempt {
            attempt: to_u32(r.int("attempt")?, "attempt")?,
            at_ms: r.int("at")?,
            status: status_from(r.opt_int("status")?),
            error: r.opt_text("error")?,
            duration_ms: r.int("duration_ms")?,
        },
    ))
}

impl Db {
    /// Claims up to `limit` due deliveries for `lease` (see the module docs).
    pub async fn claim_webhook_deliveries(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>, DbError> {
        let now = now_ms();
        let limit = i64::try_from(limit.clamp(1, 100)).unwrap_or(1);
        // A read first: an idle sender never opens a write transaction (SQLite's write lock).
        let any = {
            let mut conn = self.read().await?;
            dual!(conn.conn(), |c, d| {
                sqlx::query(
                    "SELECT id FROM webhook_deliveries \
                     WHERE state = 'PENDING' AND next_attempt_at <= $1 LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&mut *c)
                .await?
                .is_some()
            })
        };
        if !any {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let ids = due_ids(tx.conn(), now, limit).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let token = random_id("");
            let row = dual!(tx.conn(), |c, d| {
                let row = sqlx::query(
                    "UPDATE webhook_deliveries SET lease_token = $2, next_attempt_at = $3, \
                     first_attempt_at = COALESCE(first_attempt_at, $4), updated_at = $4 \
                     WHERE id = $1 AND state = 'PENDING' \
                     RETURNING id, endpoint_id, payload, attempts, first_attempt_at",
                )
                .bind(&id)
                .bind(&token)
                .bind(now.saturating_add(ms(lease)))
                .bind(now)
                .fetch_optional(&mut *c)
                .await?;
                match row {
                    None => None,
                    Some(_) => {
                        let full = sqlx::query(
                            "SELECT d.id, d.endpoint_id, d.payload, d.attempts, \
                             d.first_attempt_at, e.url, e.secret, e.disabled_at \
                             FROM webhook_deliveries d \
                             JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
                        )
                        .bind(&id)
                        .fetch_one(&mut *c)
                        .await?;
                        Some(due_from(&full, token)?)
                    }
                }
            });
            out.extend(row);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records an attempt of a claimed delivery and what becomes of it. False (nothing written)
    /// when the claim was lost: the lease ran out and another sender took the delivery.
    pub async fn settle_webhook_delivery(
        &self,
        due: &DueDelivery,
        attempt: &AttemptRecord,
        next: &Settle,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let (state, next_at, reason) = match next {
            Settle::Delivered => ("DELIVERED", now, attempt.error.clone()),
            Settle::Retry(at) => ("PENDING", *at, attempt.error.clone()),
            Settle::Dead(reason) => ("DEAD", now, Some(reason.clone())),
        };
        let reason = reason.map(|r| clean_message(&r));
        let status = attempt.status.map(i64::from);
        let mut tx = self.begin().await?;
        let n = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, \
                 attempts = attempts + 1, last_status = $5, last_error = $6, lease_token = NULL, \
                 updated_at = $7 WHERE id = $1 AND lease_token = $2 AND state = 'PENDING' \
                 RETURNING attempts",
            )
            .bind(&due.id)
            .bind(&due.lease_token)
            .bind(state)
            .bind(next_at)
            .bind(status)
            .bind(&reason)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.int("attempts"))
            .transpose()?
        });
        let Some(number) = n else {
            return Ok(false);
        };
        let error = attempt.error.as_deref().map(clean_message);
        dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&due.id)
            .bind(number)
            .bind(attempt.at_ms)
            .bind(status)
            .bind(&error)
            .bind(attempt.duration_ms)
            .execute(&mut *c)
            .await?;
        });
        tx.commit().await?;
        Ok(true)
    }

    /// Deliveries to a tenant's endpoint, newest first, `limit` (1 to 100) per page, from the
    /// cursor `before` (a delivery id of the previous page's `next`). `NotFound` for another
    /// tenant's, a removed or an unknown endpoint.
    pub async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        endpoint: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<DeliveryPage, DbError> {
        if self.get_webhook_endpoint(tenant, endpoint).await?.is_none() {
            return Err(DbError::NotFound("webhook endpoint"));
        }
        let limit = i64::from(limit.clamp(1, 100));
        let mut conn = self.read().await?;
        let mut items: Vec<WebhookDelivery> = dual!(conn.conn(), |c, d| {
            let rows = sqlx::query(
                "SELECT id, endpoint_id, event_type, state, attempts, next_attempt_at, \
                 last_status, last_error, created_at, updated_at, payload \
                 FROM webhook_deliveries d WHERE endpoint_id = $1 AND tenant_id = $2 \
                 AND ($3 IS NULL OR (created_at, id) < \
                   (SELECT created_at, id FROM webhook_deliveries WHERE id = $3 AND endpoint_id = $1)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(endpoint)
            .bind(tenant.get())
            .bind(before)
            .bind(limit + 1)
            .fetch_all(&mut *c)
            .await?;
            rows.iter().map(delivery_from).collect::<Result<_, _>>()?
        });
        let more = items.len() > usize::try_from(limit).unwrap_or(100);
        items.truncate(usize::try_from(limit).unwrap_or(100));
        let ids: Vec<String> = items.iter().map(|d| d.id.clone()).collect();
        let ids = serde_json::to_string(&ids).map_err(DbError::corrupt)?;
        let attempts: Vec<(String, WebhookAttempt)> = dual!(conn.conn(), |c, d| {
            let sql = d.pick(
                "SELECT delivery_id, attempt, at, status, error, duration_ms FROM webhook_attempts \
                 WHERE delivery_id IN (SELECT jsonb_array_elements_text($1::jsonb)) \
                 ORDER BY delivery_id, attempt",
                "SELECT delivery_id, attempt, at, status, error, duration_ms FROM webhook_attempts \
                 WHERE delivery_id IN (SELECT value FROM json_each($1)) \
                 ORDER BY delivery_id, attempt",
            );
            let rows = sqlx::query(sql).bind(&ids).fetch_all(&mut *c).await?;
            rows.iter().map(attempt_from).collect::<Result<_, _>>()?
        });
        for (id, a) in attempts {
            if let Some(d) = items.iter_mut().find(|d| d.id == id) {
                d.attempt_log.push(a);
            }
        }
        for d in &mut items {
            let extra = d.attempt_log.len().saturating_sub(ATTEMPTS_LISTED);
            d.attempt_log.drain(..extra);
        }
        let next = more.then(|| items.last().map(|d| d.id.clone())).flatten();
        Ok(DeliveryPage { items, next })
    }
}
