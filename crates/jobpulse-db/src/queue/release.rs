//! A worker giving its job back unfinished (an orderly shutdown), without using up an attempt.
//!
//! Why not [`Db::fail`]: a deploy that stops workers mid-job is not the job's fault. `fail`
//! would spend an attempt per stop, wait out the backoff, and on the last attempt even declare
//! the job FAILED. `release` puts the job back runnable at once and raises `max_attempts` by one,
//! so the attempts left are what they were before the claim.
//!
//! The attempt number itself still grows on the next claim: it is part of the read-model fence,
//! and the release is published at `between_attempts(g, n) = (g, n + 1, 0)` so that anything the
//! stopped attempt still sends is stale. Users therefore see "attempt 2" after a shutdown, which
//! is true: a second attempt runs.
//!
//! A cancel that arrived meanwhile wins: the job ends as [`Db::cancelled`] would end it.

use jobpulse_domain::{JobStatus, VideoStatus};

use super::finish::{claimed_video, discard_video_job, leased_ai_job};
use super::{Claim, ClaimedTask, Queue};
use crate::ai_jobs::apply_job_change;
use crate::conn::{Conn, Dialect, RowExt, Tx, dual, now_ms};
use crate::model::{AiJob, Video, clean_message};
use crate::notify::{AI_CHANNEL, VIDEO_CHANNEL};
use crate::outbox::Committed;
use crate::videos::apply_video_change;
use crate::{Db, DbError};

/// What [`Db::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The job waits again (RETRY_WAIT / RETRYING), runnable at once, with as many attempts
    /// left as before the claim.
    Released,
    /// A cancel was pending: the job ended as cancelled (video FAILED / job FAILED "cancelled").
    Cancelled,
}

/// Moves the claim's job row back to RETRY_WAIT (or CANCELLED when a cancel is pending),
/// fenced by the lease; returns whether a cancel was pending.
async fn release_video_job(
    c: Conn<'_>,
    claim: &Claim,
    job_id: i64,
    message: &str,
    now: i64,
) -> Result<bool, DbError> {
    let row = dual!(c, |c, d| {
        sqlx::query(
            "UPDATE video_jobs SET \
             state = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'RETRY_WAIT' END, \
             max_attempts = CASE WHEN cancel_requested THEN max_attempts \
                                 ELSE max_attempts + 1 END, \
             error_code = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'released' END, \
             error_message = CASE WHEN cancel_requested THEN 'cancelled' ELSE $1 END, \
             run_after = $2, lease_until = NULL, updated_at = $2 \
             WHERE id = $3 AND attempt = $4 AND lease_owner = $5 AND state = 'RUNNING' \
             RETURNING cancel_requested",
        )
        .bind(message)
        .bind(now)
        .bind(job_id)
        .bind(i64::from(claim.attempt()))
        .bind(&claim.worker_id)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.flag("cancel_requested"))
        .transpose()?
    });
    row.ok_or(DbError::LeaseLost)
}

/// Wakes waiting workers of every process (PostgreSQL delivers it at commit); the enqueue
/// triggers only fire for new jobs.
async fn notify_in(tx: &mut Tx, queue: Queue) -> Result<(), DbError> {
    if tx.dialect() != Dialect::Postgres {
        return Ok(());
    }
    let channel = match queue {
        Queue::Video => VIDEO_CHANNEL,
        Queue::Ai => AI_CHANNEL,
    };
    dual!(tx.conn(), |c, d| {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

impl Db {
    /// Gives a claimed job back unfinished without using up an attempt (see the module docs):
    /// RETRY_WAIT / RETRYING with `reason`, runnable at once, fence `(g, attempt + 1, 0)`. When a
    /// cancel was requested meanwhile the job ends cancelled instead. Fails with
    /// [`DbError::LeaseLost`] (nothing written) when the claim no longer holds the lease, and
    /// with [`DbError::Cancelled`] when the video was deleted (the job is closed).
    pub async fn release(
        &self,
        claim: &Claim,
        reason: &str,
    ) -> Result<Committed<ReleaseOutcome>, DbError> {
        let message = clean_message(reason);
        let fence = claim.between_fence();
        let now = now_ms();
        let mut tx = self.begin().await?;
        let (outcome, entry) = match &claim.task {
            ClaimedTask::Video { job_id, video } => {
                let cancel = release_video_job(tx.conn(), claim, *job_id, &message, now).await?;
                let Some(cur) = claimed_video(&mut tx, claim, video).await? else {
                    discard_video_job(tx.conn(), *job_id).await?;
                    tx.commit().await?;
                    return Err(DbError::Cancelled);
                };
                let (status, error, outcome) = if cancel {
                    (VideoStatus::Failed, "cancelled", ReleaseOutcome::Cancelled)
                } else {
                    (
                        VideoStatus::RetryWait,
                        message.as_str(),
                        ReleaseOutcome::Released,
                    )
                };
                let next = Video {
                    status,
                    fence,
                    attempt: claim.attempt(),
                    error_reason: Some(error.to_owned()),
                    ..cur.clone()
                };
                (outcome, apply_video_change(tx.conn(), &cur, &next).await?.1)
            }
            ClaimedTask::Ai(job) => {
                let cur = leased_ai_job(&mut tx, claim, job).await?;
                let (status, error, outcome) = if cur.cancel_requested {
                    (JobStatus::Failed, "cancelled", ReleaseOutcome::Cancelled)
                } else {
                    (
                        JobStatus::Retrying,
                        message.as_str(),
                        ReleaseOutcome::Released,
                    )
                };
                let next = AiJob {
                    status,
                    fence,
                    run_after_ms: now,
                    lease_until_ms: None,
                    error_message: Some(error.to_owned()),
                    ..cur.clone()
                };
                let (_, entry) = apply_job_change(tx.conn(), &cur, &next).await?;
                if outcome == ReleaseOutcome::Released {
                    dual!(tx.conn(), |c, d| {
                        sqlx::query(
                            "UPDATE ai_jobs SET max_attempts = max_attempts + 1 WHERE job_id = $1",
                        )
                        .bind(cur.job_id.as_str())
                        .execute(&mut *c)
                        .await?;
                    });
                }
                (outcome, entry)
            }
        };
        let queue = claim.queue();
        if outcome == ReleaseOutcome::Released {
            notify_in(&mut tx, queue).await?;
        }
        self.commit(tx, true).await?;
        if outcome == ReleaseOutcome::Released {
            self.signals().queue(queue).notify_one();
        }
        metrics::counter!(
            "jobpulse_queue_released_total",
            "queue" => queue.as_str(),
            "outcome" => match outcome {
                ReleaseOutcome::Released => "released",
                ReleaseOutcome::Cancelled => "cancelled",
            }
        )
        .increment(1);
        tracing::info!(
            tenant.id = %claim.tenant,
            job.id = %claim.job_ref(),
            attempt = claim.attempt(),
            outcome = ?outcome,
            reason = %message,
            "job given back by its worker"
        );
        Ok(Committed::one(outcome, entry))
    }
}
