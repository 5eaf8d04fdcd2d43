//! [`VideoTable`]: transcode jobs. The lease lives on the `video_jobs` row (one per video
//! generation); what users see is the `videos` row. Lock order as everywhere: the job row, then
//! the video row.

use jobpulse_domain::{Fence, TaskKey, VideoStatus};

use super::{ClaimParams, Claimed, End, Ended, Expired, Reap, Reaped, TaskTable, Verdict};
use crate::DbError;

use super::video_jobs::{
    claimed_video, discard_video_job, finish_video_job, reap_video_job, release_video_job,
};
use crate::conn::{RowId, Tx};
use crate::model::{Video, VideoJob, VideoJobState, clean_message, video_job_cols};
use crate::outbox::apply_change;
use crate::queue::{Claim, ClaimedTask, Queue};
use crate::videos::{end_video_job, lock_video};

/// Transcode jobs (see the module docs).
pub(in crate::queue) struct VideoTable;

/// The claim statement (`claim_sql`): a QUEUED job, or a RETRY_WAIT one whose backoff passed.
macro_rules! video_claim_sql {
    ($lock:literal) => {
        crate::queue::table::claim_sql!(
            table: "video_jobs",
            key: "id",
            state: "state",
            waiting: "QUEUED",
            again: "RETRY_WAIT",
            also_set: "",
            order: "j.id",
            lock: $lock,
            returning: video_job_cols!(),
        )
    };
}

/// The claim's job row id and video; `Invalid` for an AI claim.
pub(in crate::queue) fn video_of(claim: &Claim) -> Result<(i64, &Video), DbError> {
    match &claim.task {
        ClaimedTask::Video { job_id, video } => Ok((*job_id, video)),
        ClaimedTask::Ai(_) => Err(DbError::Invalid("not a video claim".into())),
    }
}

impl TaskTable for VideoTable {
    lease_sql! {
        queue: Queue::Video, lock: 0x6a70_7671 /* "jpvq" */, table: "video_jobs", key: "id",
        state: "state", cols: video_job_cols!(), from: "video_jobs j",
    }
    const CLAIM_SQL: (&'static str, &'static str) = (
        video_claim_sql!("FOR NO KEY UPDATE OF j SKIP LOCKED"),
        video_claim_sql!(""),
    );
    type Picked = VideoJob;
    type Row = VideoJob;

    fn expired(j: VideoJob) -> Expired<VideoJob> {
        let label = format!("video {} job {}", j.video_id, j.id);
        let attempts = (j.attempt, j.max_attempts);
        Expired::new(j.tenant, label, attempts, j.cancel_requested, j)
    }

    fn row_id(claim: &Claim) -> Result<RowId<'_>, DbError> {
        Ok(RowId::Int(video_of(claim)?.0))
    }

    async fn start(tx: &mut Tx, job: VideoJob, p: &ClaimParams<'_>) -> Result<Claimed, DbError> {
        let video = lock_video(tx.conn(), job.video_id).await?;
        let consistent = video.as_ref().filter(|v| {
            v.deleted_at_ms.is_none()
                && v.fence.generation == job.generation
                && v.status.can_transition(VideoStatus::Processing)
        });
        let Some(cur) = consistent else {
            // Should not happen (deletes and retries close jobs in the same transaction), but a
            // job that cannot run must not block the queue head forever.
            tracing::error!(
                video.id = %job.video_id,
                job.id = job.id,
                "claimed a job inconsistent with its video; closing it"
            );
            end_video_job(
                tx.conn(),
                &job,
                VideoJobState::Cancelled,
                "inconsistent",
                Some("job does not match its video"),
            )
            .await?;
            return Ok(Claimed::Skipped);
        };
        let fence = Fence::claim(job.generation, job.attempt)?;
        let next = Video {
            status: VideoStatus::Processing,
            fence,
            attempt: job.attempt,
            max_attempts: Some(job.max_attempts),
            retry_at_ms: None,
            ..cur.clone()
        };
        let (video, entry) = apply_change(tx.conn(), cur, &next).await?;
        Ok(Claimed::Claim(Box::new(Claim {
            tenant: video.tenant,
            key: TaskKey::video(video.tenant, video.id),
            fence,
            max_attempts: job.max_attempts,
            worker_id: p.worker.to_owned(),
            lease: p.lease,
            outbox: entry,
            task: ClaimedTask::Video {
                job_id: job.id,
                video,
            },
        })))
    }

    async fn end(tx: &mut Tx, claim: &Claim, end: End<'_>, fence: Fence) -> Result<Ended, DbError> {
        let (job_id, video) = video_of(claim)?;
        let cancelled = match end {
            End::Retry { run_after, message } => {
                finish_video_job(
                    tx.conn(),
                    claim,
                    job_id,
                    VideoJobState::RetryWait,
                    Some(run_after),
                    Some("retryable"),
                    Some(message),
                )
                .await?;
                false
            }
            End::Dead { code, message } => {
                finish_video_job(
                    tx.conn(),
                    claim,
                    job_id,
                    VideoJobState::Dead,
                    None,
                    Some(code),
                    Some(message),
                )
                .await?;
                false
            }
            End::Cancelled => {
                finish_video_job(
                    tx.conn(),
                    claim,
                    job_id,
                    VideoJobState::Cancelled,
                    None,
                    Some("cancelled"),
                    Some("cancelled"),
                )
                .await?;
                true
            }
            End::Release { message, now } => {
                release_video_job(tx.conn(), claim, job_id, message, now).await?
            }
        };
        let Some(cur) = claimed_video(tx, claim, video).await? else {
            // Deleted (or restarted): the delete published its own tombstone.
            if end != End::Cancelled {
                discard_video_job(tx.conn(), job_id).await?;
            }
            return Ok(Ended::Gone);
        };
        let released = matches!(end, End::Release { .. }) && !cancelled;
        let (status, error, retry_at_ms) = match end {
            End::Retry { message, run_after } => (VideoStatus::RetryWait, message, Some(run_after)),
            End::Release { message, now } if !cancelled => {
                (VideoStatus::RetryWait, message, Some(now))
            }
            End::Dead { message, .. } => (VideoStatus::Failed, message, None),
            End::Cancelled | End::Release { .. } => (VideoStatus::Failed, "cancelled", None),
        };
        let next = Video {
            status,
            fence,
            attempt: claim.attempt(),
            error_reason: Some(error.to_owned()),
            // A release gives the attempt back (the job's max_attempts + 1).
            max_attempts: Some(claim.max_attempts + u32::from(released)),
            retry_at_ms,
            ..cur.clone()
        };
        let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
        Ok(Ended::Written { entry, cancelled })
    }

    async fn reap(tx: &mut Tx, r: Reap<'_, VideoJob>) -> Result<Reaped, DbError> {
        let (row, verdict) = (&r.job.row, r.verdict);
        let video = lock_video(tx.conn(), row.video_id)
            .await?
            .filter(|x| x.deleted_at_ms.is_none() && x.fence.generation == row.generation);
        let (to, code) = match (verdict, &video) {
            (_, None) => (VideoJobState::Cancelled, "deleted"),
            (Verdict::Retry, _) => (VideoJobState::RetryWait, "lease_expired"),
            (Verdict::Dead, _) => (VideoJobState::Dead, "lease_expired"),
            (Verdict::Cancelled, _) => (VideoJobState::Cancelled, "cancelled"),
        };
        if !reap_video_job(tx.conn(), row, to, r.run_after, code, r.now).await? {
            return Ok(Reaped::Skipped);
        }
        let Some(cur) = video else {
            return Ok(Reaped::Closed);
        };
        let status = match verdict {
            Verdict::Retry => VideoStatus::RetryWait,
            Verdict::Dead | Verdict::Cancelled => VideoStatus::Failed,
        };
        let next = Video {
            status,
            fence: Fence::between_attempts(row.generation, row.attempt),
            attempt: row.attempt,
            error_reason: Some(clean_message(verdict.message())),
            max_attempts: Some(row.max_attempts),
            retry_at_ms: matches!(verdict, Verdict::Retry).then_some(r.run_after),
            ..cur.clone()
        };
        apply_change(tx.conn(), &cur, &next).await?;
        Ok(Reaped::Moved)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::video_job_cols;

    #[test]
    fn an_expired_lease_is_never_reclaimed_without_the_reaper() {
        let video_sql = video_claim_sql!("");
        let taken_from = &video_sql[video_sql.find("WHERE (").expect("a WHERE")..];
        assert!(
            !taken_from[..taken_from.find("AND (").expect("caps")].contains("'RUNNING'"),
            "an expired lease is never re-claimed without the reaper: {taken_from}"
        );
    }
}
