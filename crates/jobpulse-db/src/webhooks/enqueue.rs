//! Enqueueing deliveries inside the transaction of the state change they announce.
//!
//! [`Event::of_video`] / [`Event::of_job`] say which event (if any) a row's new state stands for;
//! [`enqueue`] inserts one delivery per live endpoint of the tenant subscribed to it. The payload
//! is the Standard Webhooks shape `{"type", "timestamp", "data"}`; `data` carries the ids and the
//! status fields the progress endpoints show (never credentials or a job's full result).

use jobpulse_domain::{JobStatus, TenantId, VideoStatus};
use serde_json::json;

use super::{WebhookEvent, events_from, random_id};
use crate::conn::{Conn, RowExt, dual, now_ms};
use crate::{AiJob, DbError, Video};

/// An event to announce: its type, tenant and `data` object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) tenant: TenantId,
    pub(crate) kind: WebhookEvent,
    pub(crate) data: serde_json::Value,
}

impl Event {
    /// The event of a video now in `v`'s state (reached from another status), if any.
    pub(crate) fn of_video(v: &Video) -> Option<Self> {
        if v.deleted_at_ms.is_some() {
            return None;
        }
        let kind = match v.status {
            VideoStatus::Ready => WebhookEvent::VideoReady,
            VideoStatus::Failed => WebhookEvent::VideoFailed,
            VideoStatus::RetryWait => WebhookEvent::VideoRetryWait,
            _ => return None,
        };
        Some(Self {
            tenant: v.tenant,
            kind,
            data: json!({
                "tenant_id": v.tenant.get(),
                "video_id": v.id.get(),
                "session_id": v.session_id,
                "status": v.status.as_str(),
                "attempt": v.attempt,
                "hls_path": v.hls_path,
                "duration": v.duration_secs,
                "error_reason": v.error_reason,
            }),
        })
    }

    /// The event of a job now in `j`'s state (reached from another status), if any.
    pub(crate) fn of_job(j: &AiJob) -> Option<Self> {
        let kind = match j.status {
            JobStatus::Done => WebhookEvent::JobDone,
            // Every other end (`data.status` says which).
            JobStatus::Failed
            | JobStatus::RejectedBadInput
            | JobStatus::FallbackToGpu
            | JobStatus::ReviewRequired => WebhookEvent::JobFailed,
            JobStatus::Retrying => WebhookEvent::JobRetrying,
            JobStatus::Pending | JobStatus::Running => return None,
        };
        Some(Self {
            tenant: j.tenant,
            kind,
            data: json!({
                "tenant_id": j.tenant.get(),
                "job_id": j.job_id.as_str(),
                "job_type": j.job_type.as_str(),
                "status": j.status.as_str(),
                "attempt": j.attempt,
                "error_message": j.error_message,
            }),
        })
    }
}

/// RFC 3339 UTC time of `ms` (milliseconds since the Unix epoch).
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Inserts one delivery of `event` per live endpoint of its tenant subscribed to it (inside the
/// caller's transaction); how many.
pub(crate) async fn enqueue(mut c: Conn<'_>, event: &Event) -> Result<usize, DbError> {
    let endpoints: Vec<(String, String)> = dual!(c.reborrow(), |c, d| {
        let rows = sqlx::query(
            "SELECT id, events FROM webhook_endpoints \
             WHERE tenant_id = $1 AND disabled_at IS NULL ORDER BY id",
        )
        .bind(event.tenant.get())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.text("events")?)))
            .collect::<Result<_, DbError>>()?
    });
    let now = now_ms();
    let payload = json!({
        "type": event.kind.as_str(),
        "timestamp": rfc3339(now),
        "data": event.data,
    })
    .to_string();
    let mut n = 0;
    for (endpoint, events) in endpoints {
        if !events_from(&events)?.contains(&event.kind) {
            continue;
        }
        dual!(c.reborrow(), |c, d| {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_type, payload, \
                 next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
            )
            .bind(random_id("msg_"))
            .bind(&endpoint)
            .bind(event.tenant.get())
            .bind(event.kind.as_str())
            .bind(&payload)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        n += 1;
    }
    if n > 0 {
        metrics::counter!("jobpulse_webhook_enqueued_total").increment(n as u64);
    }
    Ok(n)
}
