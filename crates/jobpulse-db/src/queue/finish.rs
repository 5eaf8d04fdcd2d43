//! A worker ending its attempt: success, failure (retry or dead), or acknowledged cancel.
//!
//! Each call is one transaction that first re-checks the lease (`attempt`, `lease_owner`,
//! RUNNING) and fails with [`DbError::LeaseLost`] — writing nothing — when it no longer holds.

use std::time::Duration;

use jobpulse_domain::{Fence, JobResult, JobStatus, Text, VideoStatus};

use super::release::notify_in;
use super::table::ai::leased_ai_job;
use super::table::video::video_of;
use super::table::video_jobs::{claimed_video, discard_video_job, finish_video_job};
use super::table::{AiTable, End, Ended, TaskTable, VideoTable};
use super::{Claim, FailOutcome, Queue};
use crate::ai_jobs::store_result;
use crate::conn::{ms, now_ms};
use crate::model::{AiJob, Video, VideoJobState, clean_message};
use crate::outbox::{Committed, apply_change};

use crate::{Db, DbError};

/// How an AI job's attempt ended, as its handler reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AiOutcome {
    /// DONE, or another terminal status (REVIEW_REQUIRED, FALLBACK_TO_GPU, REJECTED_BAD_INPUT,
    /// FAILED).
    pub status: JobStatus,
    /// The whole result, kept in the database only (it may hold secrets such as credentials).
    pub full_result: Option<serde_json::Value>,
    /// What the read model shows (inline when small and safe, or a reference).
    pub read_result: Option<JobResult>,
    /// Shown with the status; with DONE clients treat it as a failure.
    pub error_message: Option<String>,
}

impl AiOutcome {
    pub fn done(full_result: serde_json::Value, read_result: JobResult) -> Self {
        Self {
            status: JobStatus::Done,
            full_result: Some(full_result),
            read_result: Some(read_result),
            error_message: None,
        }
    }
}

impl Db {
    /// Ends the claim's attempt with `end` at `fence` in one transaction: the table's part
    /// ([`TaskTable::end`]), then — for a job given back — a wake-up for the workers of every
    /// process.
    pub(super) async fn end_attempt(
        &self,
        claim: &Claim,
        end: End<'_>,
        fence: Fence,
    ) -> Result<Ended, DbError> {
        match claim.queue() {
            Queue::Video => self.end_in::<VideoTable>(claim, end, fence).await,
            Queue::Ai => self.end_in::<AiTable>(claim, end, fence).await,
        }
    }

    async fn end_in<T: TaskTable>(
        &self,
        claim: &Claim,
        end: End<'_>,
        fence: Fence,
    ) -> Result<Ended, DbError> {
        let mut tx = self.begin().await?;
        let ended = T::end(&mut tx, claim, end, fence).await?;
        let wrote = matches!(ended, Ended::Written { .. });
        if matches!(end, End::Release { .. })
            && matches!(
                ended,
                Ended::Written {
                    cancelled: false,
                    ..
                }
            )
        {
            notify_in(&mut tx, T::QUEUE).await?;
        }
        self.commit(tx, wrote).await?;
        Ok(ended)
    }
}

impl Db {
    /// Ends a transcode attempt with success: READY with `hls_path` and `duration_secs`, fence
    /// `(g, attempt, seq)`. `seq` must be above every progress seq the worker wrote (values
    /// below [`Claim::FIRST_PROGRESS_SEQ`] are raised to it). If the video was deleted while
    /// the attempt ran, the job is closed and [`DbError::Cancelled`] is returned.
    pub async fn complete_video(
        &self,
        claim: &Claim,
        hls_path: &str,
        duration_secs: u32,
        seq: u64,
    ) -> Result<Committed<Video>, DbError> {
        let (job_id, video) = video_of(claim)?;
        let hls = Text::parse(hls_path, "hls_path", Text::MAX_MESSAGE)?;
        let fence = claim.final_fence(seq)?;
        let mut tx = self.begin().await?;
        finish_video_job(
            tx.conn(),
            claim,
            job_id,
            VideoJobState::Succeeded,
            None,
            None,
            None,
        )
        .await?;
        let Some(cur) = claimed_video(&mut tx, claim, video).await? else {
            discard_video_job(tx.conn(), job_id).await?;
            tx.commit().await?;
            return Err(DbError::Cancelled);
        };
        let next = Video {
            status: VideoStatus::Ready,
            fence,
            attempt: claim.attempt(),
            hls_path: Some(hls.as_str().to_owned()),
            duration_secs: Some(duration_secs),
            error_reason: None,
            ..cur.clone()
        };
        let (video, entry) = apply_change(tx.conn(), &cur, &next).await?;
        self.commit(tx, true).await?;
        tracing::info!(tenant.id = %claim.tenant, video.id = %video.id, attempt = claim.attempt(), "video ready");
        Ok(Committed::one(video, entry))
    }

    /// Ends an AI attempt with a terminal outcome, storing the full result (database only) and
    /// publishing the read-model result. Fence `(g, attempt, seq)` as for
    /// [`Db::complete_video`].
    pub async fn complete_ai_job(
        &self,
        claim: &Claim,
        outcome: AiOutcome,
        seq: u64,
    ) -> Result<Committed<AiJob>, DbError> {
        if !outcome.status.is_terminal() || !JobStatus::Running.can_transition(outcome.status) {
            return Err(DbError::IllegalTransition {
                from: JobStatus::Running.as_str(),
                to: outcome.status.as_str(),
            });
        }
        let fence = claim.final_fence(seq)?;
        let mut tx = self.begin().await?;
        let cur = leased_ai_job(&mut tx, claim).await?;
        if outcome.full_result.is_some() || outcome.read_result.is_some() {
            store_result(
                tx.conn(),
                &cur,
                outcome.full_result.as_ref(),
                outcome.read_result.as_ref(),
            )
            .await?;
        }
        let next = AiJob {
            status: outcome.status,
            fence,
            lease_until_ms: None,
            error_message: outcome.error_message.as_deref().map(clean_message),
            ..cur.clone()
        };
        let (done, entry) = apply_change(tx.conn(), &cur, &next).await?;
        self.commit(tx, true).await?;
        tracing::info!(
            tenant.id = %claim.tenant,
            job.id = %done.job_id,
            status = done.status.as_str(),
            attempt = claim.attempt(),
            "job finished"
        );
        Ok(Committed::one(done, entry))
    }

    /// Ends an attempt with an error. With attempts left and `retryable`, the job waits for its
    /// backoff (RETRY_WAIT / RETRYING); otherwise it is dead and the task FAILED with `error`.
    pub async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        retryable: bool,
    ) -> Result<Committed<FailOutcome>, DbError> {
        let message = clean_message(error);
        let retry = retryable && claim.attempt() < claim.max_attempts;
        let outcome = if retry {
            let delay = self.options().queue.backoff.delay(claim.attempt());
            FailOutcome::Retrying {
                run_after_ms: now_ms().saturating_add(ms(delay)),
            }
        } else {
            FailOutcome::Dead
        };
        let end = match outcome {
            FailOutcome::Retrying { run_after_ms } => End::Retry {
                run_after: run_after_ms,
                message: &message,
            },
            FailOutcome::Dead => End::Dead {
                code: if retryable { "exhausted" } else { "permanent" },
                message: &message,
            },
        };
        let entry = match self.end_attempt(claim, end, claim.between_fence()).await? {
            Ended::Written { entry, .. } => entry,
            Ended::Gone => return Err(DbError::Cancelled),
        };
        if let FailOutcome::Retrying { run_after_ms } = outcome {
            let left = run_after_ms.saturating_sub(now_ms()).max(0);
            let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
            self.signals().wake_after(claim.queue(), left);
        }
        let result = if retry { "retry" } else { "dead" };
        metrics::counter!(
            "jobpulse_queue_failures_total",
            "queue" => claim.queue().as_str(),
            "outcome" => result
        )
        .increment(1);
        tracing::warn!(
            tenant.id = %claim.tenant,
            job.id = %claim.job_ref(),
            attempt = claim.attempt(),
            outcome = result,
            error = %message,
            "job attempt failed"
        );
        Ok(Committed::one(outcome, entry))
    }

    /// Acknowledges a cancel seen on a heartbeat: the job ends (video job CANCELLED and the
    /// video FAILED "cancelled" unless it was deleted; AI job FAILED "cancelled").
    pub async fn cancelled(&self, claim: &Claim) -> Result<Committed<()>, DbError> {
        let entry = match self
            .end_attempt(claim, End::Cancelled, claim.between_fence())
            .await?
        {
            Ended::Written { entry, .. } => Some(entry),
            // Deleted: the delete already published its tombstone.
            Ended::Gone => None,
        };
        tracing::info!(tenant.id = %claim.tenant, job.id = %claim.job_ref(), "job cancelled by its worker");
        Ok(Committed::new((), entry.into_iter().collect()))
    }
}
