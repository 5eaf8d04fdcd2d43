//! The `video_jobs` row statements of [`super::VideoTable`]: each moves the lease row out of
//! RUNNING as a compare-and-set — on the lease (a worker's final write) or on its expiry (the
//! reaper).

use crate::DbError;
use crate::conn::{Conn, FromRow, RowExt, Tx, dual, now_ms};
use crate::model::{Video, VideoJob, VideoJobState, clean_message};
use crate::queue::Claim;
use crate::videos::lock_video;

impl FromRow for VideoJob {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        VideoJob::from_row(r)
    }
}

/// Moves the claim's `video_jobs` row out of RUNNING, fenced by the lease.
pub(in crate::queue) async fn finish_video_job(
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
pub(in crate::queue) async fn claimed_video(
    tx: &mut Tx,
    claim: &Claim,
    video: &Video,
) -> Result<Option<Video>, DbError> {
    Ok(lock_video(tx.conn(), video.id)
        .await?
        .filter(|v| v.deleted_at_ms.is_none() && v.fence.generation == claim.generation()))
}

/// Closes the job as CANCELLED after its video went away mid-attempt.
pub(in crate::queue) async fn discard_video_job(c: Conn<'_>, job_id: i64) -> Result<(), DbError> {
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

/// Moves the claim's job row back to RETRY_WAIT (or CANCELLED when a cancel is pending),
/// fenced by the lease; returns whether a cancel was pending.
pub(super) async fn release_video_job(
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

/// Compare-and-set: only a job still RUNNING at this attempt with an expired lease moves.
pub(super) async fn reap_video_job(
    c: Conn<'_>,
    job: &VideoJob,
    to: VideoJobState,
    run_after: i64,
    code: &str,
    now: i64,
) -> Result<bool, DbError> {
    let message = clean_message(if code == "lease_expired" {
        super::LOST
    } else {
        code
    });
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
