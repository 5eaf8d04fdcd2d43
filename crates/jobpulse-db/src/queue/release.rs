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

use super::table::{End, Ended};
use super::{Claim, Queue};
use crate::conn::{Dialect, Tx, dual, now_ms};
use crate::model::clean_message;
use crate::notify::{AI_CHANNEL, VIDEO_CHANNEL};
use crate::outbox::Committed;
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

/// Wakes waiting workers of every process (PostgreSQL delivers it at commit); the enqueue
/// triggers only fire for new jobs.
pub(super) async fn notify_in(tx: &mut Tx, queue: Queue) -> Result<(), DbError> {
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
        let end = End::Release {
            message: &message,
            now: now_ms(),
        };
        let (outcome, entry) = match self.end_attempt(claim, end, claim.between_fence()).await? {
            Ended::Written { entry, cancelled } if cancelled => (ReleaseOutcome::Cancelled, entry),
            Ended::Written { entry, .. } => (ReleaseOutcome::Released, entry),
            Ended::Gone => return Err(DbError::Cancelled),
        };
        let queue = claim.queue();
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
