//! What an operator alerts on, read from the database: queue depth and the age of the oldest
//! runnable job per queue, jobs that failed for good recently, and the outbox lag.
//!
//! Every query reads only indexed, bounded sets (active jobs through their partial indexes,
//! recent failures through the `updated_at` indexes), so a process can run [`Db::ops_stats`]
//! every few seconds however long the job history grows. The numbers come from the shared
//! database, so any process that has one (each `serve` replica, `up`) reports the whole
//! system's queues — workers need not be scraped for them.

use crate::Db;
use crate::conn::{RowExt, dual, now_ms};
use crate::error::DbError;

/// One snapshot; see the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpsStats {
    /// `(queue, state, jobs)` for the active states of each queue (states with no job are
    /// listed with 0, so a gauge drops back to 0).
    pub jobs: Vec<(&'static str, &'static str, u64)>,
    /// `(queue, seconds)`: how long the oldest job that could run has waited (0 when none).
    pub oldest_runnable_age_secs: Vec<(&'static str, f64)>,
    /// `(queue, jobs)` that failed for good within [`RECENT_FAILURE_WINDOW_MS`].
    pub failed_recently: Vec<(&'static str, u64)>,
    /// Outbox rows not yet published to the read model.
    pub outbox_pending: u64,
    /// Age of the oldest unpublished outbox row in seconds (0 when the outbox is empty).
    pub outbox_oldest_age_secs: f64,
    /// Per queue and tenant with active jobs: how many could run now and how many run (with a
    /// live lease, as the claim's per-tenant cap counts them). The busiest
    /// [`TENANTS_LISTED`] tenants of each queue, by waiting jobs.
    pub tenants: Vec<TenantLoad>,
}

/// One tenant's share of a queue (see [`OpsStats::tenants`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLoad {
    pub queue: &'static str,
    pub tenant: i64,
    /// Jobs that could be claimed now (QUEUED/PENDING, or retries whose wait is over).
    pub waiting: u64,
    /// RUNNING jobs whose lease is live.
    pub running: u64,
}

impl TenantLoad {
    /// Whether this tenant has work waiting that a per-tenant cap of `cap` holds back.
    pub fn capped(&self, cap: Option<u32>) -> bool {
        cap.is_some_and(|c| self.waiting > 0 && self.running >= u64::from(c))
    }
}

/// Tenants listed per queue in [`OpsStats::tenants`] (bounds the metrics' label values).
pub const TENANTS_LISTED: i64 = 50;

/// The window of [`OpsStats::failed_recently`]: one hour.
pub const RECENT_FAILURE_WINDOW_MS: i64 = 3_600_000;

const VIDEO_ACTIVE: [&str; 3] = ["QUEUED", "RUNNING", "RETRY_WAIT"];
const AI_ACTIVE: [&str; 3] = ["PENDING", "RUNNING", "RETRYING"];

fn age_secs(now: i64, since: Option<i64>) -> f64 {
    since.map_or(0.0, |t| (now.saturating_sub(t)).max(0) as f64 / 1000.0)
}

impl Db {
    /// One snapshot of the queues and the outbox (a handful of indexed queries).
    pub async fn ops_stats(&self) -> Result<OpsStats, DbError> {
        let now = now_ms();
        let since = now - RECENT_FAILURE_WINDOW_MS;
        let mut conn = self.read().await?;
        let (
            video_counts,
            ai_counts,
            video_oldest,
            ai_oldest,
            video_failed,
            ai_failed,
            outbox,
            tenant_rows,
        ) = dual!(conn.conn(), |c, d| {
            let mut video = Vec::new();
            for r in sqlx::query(
                "SELECT state, COUNT(*) AS n FROM video_jobs \
                     WHERE state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT') GROUP BY state",
            )
            .fetch_all(&mut *c)
            .await?
            {
                video.push((r.text("state")?, r.int("n")?));
            }
            let mut ai = Vec::new();
            for r in sqlx::query(
                "SELECT status, COUNT(*) AS n FROM ai_jobs \
                     WHERE status IN ('PENDING', 'RUNNING', 'RETRYING') GROUP BY status",
            )
            .fetch_all(&mut *c)
            .await?
            {
                ai.push((r.text("status")?, r.int("n")?));
            }
            let video_oldest = sqlx::query(
                "SELECT MIN(run_after) AS t FROM video_jobs \
                     WHERE state IN ('QUEUED', 'RETRY_WAIT') AND run_after <= $1",
            )
            .bind(now)
            .fetch_one(&mut *c)
            .await?
            .opt_int("t")?;
            let ai_oldest = sqlx::query(
                "SELECT MIN(run_after) AS t FROM ai_jobs \
                     WHERE status IN ('PENDING', 'RETRYING') AND run_after <= $1",
            )
            .bind(now)
            .fetch_one(&mut *c)
            .await?
            .opt_int("t")?;
            let video_failed = sqlx::query(
                "SELECT COUNT(*) AS n FROM videos WHERE updated_at >= $1 AND status = 'FAILED'",
            )
            .bind(since)
            .fetch_one(&mut *c)
            .await?
            .int("n")?;
            let ai_failed = sqlx::query(
                "SELECT COUNT(*) AS n FROM ai_jobs WHERE updated_at >= $1 AND status = 'FAILED'",
            )
            .bind(since)
            .fetch_one(&mut *c)
            .await?
            .int("n")?;
            let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS t FROM outbox")
                .fetch_one(&mut *c)
                .await?;
            let mut tenants = Vec::new();
            for (queue, sql) in [
                (
                    "video",
                    "SELECT tenant_id, \
                         SUM(CASE WHEN state = 'QUEUED' OR (state = 'RETRY_WAIT' AND run_after <= $1) \
                             THEN 1 ELSE 0 END) AS waiting, \
                         SUM(CASE WHEN state = 'RUNNING' AND lease_until > $1 THEN 1 ELSE 0 END) \
                             AS running \
                         FROM video_jobs WHERE state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT') \
                         GROUP BY tenant_id ORDER BY waiting DESC, tenant_id LIMIT $2",
                ),
                (
                    "ai",
                    "SELECT tenant_id, \
                         SUM(CASE WHEN status = 'PENDING' OR (status = 'RETRYING' AND run_after <= $1) \
                             THEN 1 ELSE 0 END) AS waiting, \
                         SUM(CASE WHEN status = 'RUNNING' AND lease_until > $1 THEN 1 ELSE 0 END) \
                             AS running \
                         FROM ai_jobs WHERE status IN ('PENDING', 'RUNNING', 'RETRYING') \
                         GROUP BY tenant_id ORDER BY waiting DESC, tenant_id LIMIT $2",
                ),
            ] {
                for r in sqlx::query(sql)
                    .bind(now)
                    .bind(TENANTS_LISTED)
                    .fetch_all(&mut *c)
                    .await?
                {
                    tenants.push(TenantLoad {
                        queue,
                        tenant: r.int("tenant_id")?,
                        waiting: u64::try_from(r.int("waiting")?).unwrap_or(0),
                        running: u64::try_from(r.int("running")?).unwrap_or(0),
                    });
                }
            }
            (
                video,
                ai,
                video_oldest,
                ai_oldest,
                video_failed,
                ai_failed,
                (row.int("n")?, row.opt_int("t")?),
                tenants,
            )
        });
        let count = |rows: &[(String, i64)], state: &str| {
            rows.iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0))
        };
        let mut jobs = Vec::new();
        for state in VIDEO_ACTIVE {
            jobs.push(("video", state, count(&video_counts, state)));
        }
        for state in AI_ACTIVE {
            jobs.push(("ai", state, count(&ai_counts, state)));
        }
        Ok(OpsStats {
            jobs,
            oldest_runnable_age_secs: vec![
                ("video", age_secs(now, video_oldest)),
                ("ai", age_secs(now, ai_oldest)),
            ],
            failed_recently: vec![
                ("video", u64::try_from(video_failed).unwrap_or(0)),
                ("ai", u64::try_from(ai_failed).unwrap_or(0)),
            ],
            outbox_pending: u64::try_from(outbox.0).unwrap_or(0),
            outbox_oldest_age_secs: age_secs(now, outbox.1),
            tenants: tenant_rows,
        })
    }
}
