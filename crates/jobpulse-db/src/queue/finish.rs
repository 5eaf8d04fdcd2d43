//! A worker ending its attempt: success, failure (retry or dead), or acknowledged cancel.
//!
//! Each call is one transaction that first re-checks the lease (`attempt`, `lease_owner`,
//! RUNNING) and fails with [`DbError::LeaseLost`] — writing nothing — when it no longer holds.

use std::time::Duration;

use jobpulse_domain::{JobResult, JobStatus, Text, VideoStatus};

use super::{Claim, ClaimedTask, FailOutcome};
use crate::ai_jobs::{apply_job_change, lock_ai_job, store_result};
use crate::conn::{Conn, Tx, dual, ms, now_ms};
use crate::model::{AiJob, Video, VideoJobState, clean_message};
use crate::outbox::Committed;
use crate::videos::{apply_video_change, lock_video};
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

/// Moves the claim's `video_jobs` row out of RUNNING, fenced by the lease.
async fn finish_video_job(
    c: Conn<'_>,
    claim: &Claim,
    job_id: i64,
    to: VideoJobState,
    run_after: Option<i64>,
    code: Option<&str>,
    message: Option<&str>,
) -> Result<(), DbError> {
    let n = dual!(c, |c, d| {
        sqlx::query(
            "UPDATE video_jobs SET state = $1, run_after = COALESCE($2, run_after), \
             error_code = $3, error_message = COALESCE($4, error_message), lease_until = NULL, \
             updated_at = $5 \
             WHERE id = $6 AND attempt = $7 AND lease_owner = $8 AND state = 'RUNNING'",
        )
        .bind(to.as_str())
        .bind(run_after)
        .bind(code)
        .bind(message)
        .bind(now_ms())
        .bind(job_id)
        .bind(i64::from(claim.attempt()))
        .bind(&claim.worker_id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if n == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost)
    }
}

/// The claim's video, unless it was deleted (or restarted) while the attempt ran.
pub(super) async fn claimed_video(
    tx: &mut Tx,
    claim: &Claim,
    video: &Video,
) -> Result<Option<Video>, DbError> {
    Ok(lock_video(tx.conn(), video.id)
        .await?
        .filter(|v| v.deleted_at_ms.is_none() && v.fence.generation == claim.generation()))
}

/// Closes the job as CANCELLED after its video went away mid-attempt.
pub(super) async fn discard_video_job(c: Conn<'_>, job_id: i64) -> Result<(), DbError> {
    dual!(c, |c, d| {
        sqlx::query(
            "UPDATE video_jobs SET state = 'CANCELLED', error_code = 'deleted', \
             lease_until = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(now_ms())
        .bind(job_id)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The AI job of the claim, if the claim still holds its lease.
pub(super) async fn leased_ai_job(
    tx: &mut Tx,
    claim: &Claim,
    job: &AiJob,
) -> Result<AiJob, DbError> {
    lock_ai_job(tx.conn(), &job.job_id)
        .await?
        .filter(|j| {
            j.status == JobStatus::Running
                && j.attempt == claim.attempt()
                && j.lease_owner.as_deref() == Some(claim.worker_id.as_str())
        })
        .ok_or(DbError::LeaseLost)
}

fn video_of(claim: &Claim) -> Result<(i64, &Video), DbError> {
    match &claim.task {
        ClaimedTask::Video { job_id, video } => Ok((*job_id, video)),
        ClaimedTask::Ai(_) => Err(DbError::Invalid("not a video claim".into())),
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
        let (video, entry) = apply_video_change(tx.conn(), &cur, &next).await?;
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
        let ClaimedTask::Ai(job) = &claim.task else {
            return Err(DbError::Invalid("not an AI job claim".into()));
        };
        if !outcome.status.is_terminal() || !JobStatus::Running.can_transition(outcome.status) {
            return Err(DbError::IllegalTransition {
                from: JobStatus::Running.as_str(),
                to: outcome.status.as_str(),
            });
        }
        let fence = claim.final_fence(seq)?;
        let mut tx = self.begin().await?;
        let cur = leased_ai_job(&mut tx, claim, job).await?;
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
        let (done, entry) = apply_job_change(tx.conn(), &cur, &next).await?;
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
        let run_after = match outcome {
            FailOutcome::Retrying { run_after_ms } => Some(run_after_ms),
            FailOutcome::Dead => None,
        };
        let fence = claim.between_fence();
        let mut tx = self.begin().await?;
        let entry = match &claim.task {
            ClaimedTask::Video { job_id, video } => {
                let (to, code) = match (retry, retryable) {
                    (true, _) => (VideoJobState::RetryWait, "retryable"),
                    (false, true) => (VideoJobState::Dead, "exhausted"),
                    (false, false) => (VideoJobState::Dead, "permanent"),
                };
                finish_video_job(
                    tx.conn(),
                    claim,
                    *job_id,
                    to,
                    run_after,
                    Some(code),
                    Some(&message),
                )
                .await?;
                let Some(cur) = claimed_video(&mut tx, claim, video).await? else {
                    discard_video_job(tx.conn(), *job_id).await?;
                    tx.commit().await?;
                    return Err(DbError::Cancelled);
                };
                let next = Video {
                    status: if retry {
                        VideoStatus::RetryWait
                    } else {
                        VideoStatus::Failed
                    },
                    fence,
                    attempt: claim.attempt(),
                    error_reason: Some(message.clone()),
                    ..cur.clone()
                };
                apply_video_change(tx.conn(), &cur, &next).await?.1
            }
            ClaimedTask::Ai(job) => {
                let cur = leased_ai_job(&mut tx, claim, job).await?;
                let next = AiJob {
                    status: if retry {
                        JobStatus::Retrying
                    } else {
                        JobStatus::Failed
                    },
                    fence: claim.between_fence(),
                    run_after_ms: run_after.unwrap_or(cur.run_after_ms),
                    lease_until_ms: None,
                    error_message: Some(message.clone()),
                    ..cur.clone()
                };
                apply_job_change(tx.conn(), &cur, &next).await?.1
            }
        };
        self.commit(tx, true).await?;
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
        let fence = claim.between_fence();
        let mut tx = self.begin().await?;
        let entry = match &claim.task {
            ClaimedTask::Video { job_id, video } => {
                finish_video_job(
                    tx.conn(),
                    claim,
                    *job_id,
                    VideoJobState::Cancelled,
                    None,
                    Some("cancelled"),
                    Some("cancelled"),
                )
                .await?;
                match claimed_video(&mut tx, claim, video).await? {
                    // Deleted: the delete already published its tombstone.
                    None => None,
                    Some(cur) => {
                        let next = Video {
                            status: VideoStatus::Failed,
                            fence,
                            attempt: claim.attempt(),
                            error_reason: Some("cancelled".into()),
                            ..cur.clone()
                        };
                        Some(apply_video_change(tx.conn(), &cur, &next).await?.1)
                    }
                }
            }
            ClaimedTask::Ai(job) => {
                let cur = leased_ai_job(&mut tx, claim, job).await?;
                let next = AiJob {
                    status: JobStatus::Failed,
                    fence: claim.between_fence(),
                    lease_until_ms: None,
                    error_message: Some("cancelled".into()),
                    ..cur.clone()
                };
                Some(apply_job_change(tx.conn(), &cur, &next).await?.1)
            }
        };
        self.commit(tx, entry.is_some()).await?;
        tracing::info!(tenant.id = %claim.tenant, job.id = %claim.job_ref(), "job cancelled by its worker");
        Ok(Committed::new((), entry.into_iter().collect()))
    }
}
