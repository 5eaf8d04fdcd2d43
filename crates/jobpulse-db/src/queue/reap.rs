//! The reaper: RUNNING jobs whose lease expired (their worker crashed or hung) become RETRY_WAIT
//! / RETRYING — or FAILED after the last attempt, or when a cancel was pending — so the read
//! model shows what happened before another worker claims the job. Its writes use
//! `between_attempts`, so anything the lost worker still sends is stale.
//!
//! Any process may reap (workers do it every few seconds); the compare-and-set on
//! `(state, attempt, lease_until)` makes concurrent reapers and late heartbeats harmless.

use std::time::Duration;

use jobpulse_domain::{Fence, JobStatus, VideoStatus};
use tokio_util::sync::CancellationToken;

use super::{Queue, ReapReport};
use crate::ai_jobs::{apply_job_change, lock_ai_job};
use crate::conn::{Conn, Dialect, RowExt, dual, ms, now_ms};
use crate::model::{AiJob, Video, VideoJob, VideoJobState, clean_message, video_job_cols};
use crate::videos::{apply_video_change, lock_video};
use crate::{Db, DbError};

const BATCH: i64 = 100;
const LOST: &str = "the worker stopped responding (lease expired)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Retry,
    Dead,
    Cancelled,
}

fn verdict(attempt: u32, max_attempts: u32, cancel_requested: bool) -> Verdict {
    if cancel_requested {
        Verdict::Cancelled
    } else if attempt >= max_attempts {
        Verdict::Dead
    } else {
        Verdict::Retry
    }
}

impl Db {
    /// One reaper pass over `queue` (at most 100 jobs; call again while it reports work).
    pub async fn reap_expired(&self, queue: Queue) -> Result<ReapReport, DbError> {
        let report = match queue {
            Queue::Video => self.reap_videos().await?,
            Queue::Ai => self.reap_ai().await?,
        };
        for (n, outcome) in [
            (report.retrying, "retry"),
            (report.dead, "dead"),
            (report.cancelled, "cancelled"),
        ] {
            if n > 0 {
                metrics::counter!(
                    "jobpulse_queue_reaped_total",
                    "queue" => queue.as_str(),
                    "outcome" => outcome
                )
                .increment(u64::from(n));
            }
        }
        Ok(report)
    }

    /// Reaps `queue` every `every` until `shutdown` (each worker process runs one per queue it
    /// serves; several reapers are harmless).
    pub async fn run_reaper(&self, queue: Queue, every: Duration, shutdown: CancellationToken) {
        loop {
            loop {
                match self.reap_expired(queue).await {
                    Ok(r) if r.retrying + r.dead + r.cancelled >= BATCH as u32 => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(queue = queue.as_str(), error = %e, "reaper pass failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn reap_videos(&self) -> Result<ReapReport, DbError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let jobs = expired_video_jobs(tx.conn(), now).await?;
        let mut report = ReapReport::default();
        let mut wrote = false;
        let mut soonest: Option<Duration> = None;
        for job in jobs {
            let v = verdict(job.attempt, job.max_attempts, job.cancel_requested);
            let video = lock_video(tx.conn(), job.video_id)
                .await?
                .filter(|x| x.deleted_at_ms.is_none() && x.fence.generation == job.generation);
            let (to, code) = match (v, &video) {
                (_, None) => (VideoJobState::Cancelled, "deleted"),
                (Verdict::Retry, _) => (VideoJobState::RetryWait, "lease_expired"),
                (Verdict::Dead, _) => (VideoJobState::Dead, "lease_expired"),
                (Verdict::Cancelled, _) => (VideoJobState::Cancelled, "cancelled"),
            };
            let delay = self.options().queue.backoff.delay(job.attempt);
            let run_after = now.saturating_add(ms(delay));
            if !reap_video_job(tx.conn(), &job, to, run_after, code, now).await? {
                continue;
            }
            let Some(cur) = video else {
                report.cancelled += 1;
                continue;
            };
            let (status, error) = match v {
                Verdict::Retry => (VideoStatus::RetryWait, LOST),
                Verdict::Dead => (VideoStatus::Failed, LOST),
                Verdict::Cancelled => (VideoStatus::Failed, "cancelled"),
            };
            let next = Video {
                status,
                fence: Fence::between_attempts(job.generation, job.attempt),
                attempt: job.attempt,
                error_reason: Some(clean_message(error)),
                ..cur.clone()
            };
            apply_video_change(tx.conn(), &cur, &next).await?;
            wrote = true;
            match v {
                Verdict::Retry => {
                    report.retrying += 1;
                    soonest = Some(soonest.map_or(delay, |s: Duration| s.min(delay)));
                }
                Verdict::Dead => report.dead += 1,
                Verdict::Cancelled => report.cancelled += 1,
            }
            tracing::warn!(
                tenant.id = %job.tenant,
                video.id = %job.video_id,
                attempt = job.attempt,
                verdict = ?v,
                "reaped an expired video job"
            );
        }
        self.commit(tx, wrote).await?;
        if let Some(delay) = soonest {
            self.signals().wake_after(Queue::Video, delay);
        }
        Ok(report)
    }

    async fn reap_ai(&self) -> Result<ReapReport, DbError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let ids = expired_ai_jobs(tx.conn(), now).await?;
        let mut report = ReapReport::default();
        let mut wrote = false;
        let mut soonest: Option<Duration> = None;
        for id in ids {
            let Some(cur) = lock_ai_job(tx.conn(), &id).await? else {
                continue;
            };
            if cur.status != JobStatus::Running || cur.lease_until_ms.is_none_or(|t| t > now) {
                continue;
            }
            let v = verdict(cur.attempt, cur.max_attempts, cur.cancel_requested);
            let delay = self.options().queue.backoff.delay(cur.attempt);
            let (status, error) = match v {
                Verdict::Retry => (JobStatus::Retrying, LOST),
                Verdict::Dead => (JobStatus::Failed, LOST),
                Verdict::Cancelled => (JobStatus::Failed, "cancelled"),
            };
            let next = AiJob {
                status,
                fence: Fence::between_attempts(cur.fence.generation, cur.attempt),
                run_after_ms: now.saturating_add(ms(delay)),
                lease_until_ms: None,
                error_message: Some(clean_message(error)),
                ..cur.clone()
            };
            apply_job_change(tx.conn(), &cur, &next).await?;
            wrote = true;
            match v {
                Verdict::Retry => {
                    report.retrying += 1;
                    soonest = Some(soonest.map_or(delay, |s: Duration| s.min(delay)));
                }
                Verdict::Dead => report.dead += 1,
                Verdict::Cancelled => report.cancelled += 1,
            }
            tracing::warn!(
                tenant.id = %cur.tenant,
                job.id = %cur.job_id,
                attempt = cur.attempt,
                verdict = ?v,
                "reaped an expired job"
            );
        }
        self.commit(tx, wrote).await?;
        if let Some(delay) = soonest {
            self.signals().wake_after(Queue::Ai, delay);
        }
        Ok(report)
    }
}

async fn expired_video_jobs(c: Conn<'_>, now: i64) -> Result<Vec<VideoJob>, DbError> {
    dual!(c, |c, d| {
        let sql = d.pick(
            concat!(
                "SELECT ",
                video_job_cols!(),
                " FROM video_jobs WHERE state = 'RUNNING' AND lease_until <= $1 \
                 ORDER BY id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
            ),
            concat!(
                "SELECT ",
                video_job_cols!(),
                " FROM video_jobs WHERE state = 'RUNNING' AND lease_until <= $1 \
                 ORDER BY id LIMIT $2"
            ),
        );
        sqlx::query(sql)
            .bind(now)
            .bind(BATCH)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(VideoJob::from_row)
            .collect()
    })
}

async fn expired_ai_jobs(c: Conn<'_>, now: i64) -> Result<Vec<jobpulse_domain::JobId>, DbError> {
    dual!(c, |c, d| {
        let sql = match d {
            Dialect::Postgres => {
                "SELECT job_id FROM ai_jobs WHERE status = 'RUNNING' AND lease_until <= $1 \
                 ORDER BY job_id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
            }
            Dialect::Sqlite => {
                "SELECT job_id FROM ai_jobs WHERE status = 'RUNNING' AND lease_until <= $1 \
                 ORDER BY job_id LIMIT $2"
            }
        };
        sqlx::query(sql)
            .bind(now)
            .bind(BATCH)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| jobpulse_domain::JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt))
            .collect()
    })
}

/// Compare-and-set: only a job still RUNNING at this attempt with an expired lease moves.
async fn reap_video_job(
    c: Conn<'_>,
    job: &VideoJob,
    to: VideoJobState,
    run_after: i64,
    code: &str,
    now: i64,
) -> Result<bool, DbError> {
    let message = clean_message(if code == "lease_expired" { LOST } else { code });
    let n = dual!(c, |c, d| {
        sqlx::query(
            "UPDATE video_jobs SET state = $1, run_after = $2, error_code = $3, \
             error_message = $4, lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND state = 'RUNNING' AND attempt = $7 AND lease_until <= $5",
        )
        .bind(to.as_str())
        .bind(run_after)
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(job.id)
        .bind(i64::from(job.attempt))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}
