//! A video's transcode job rows (`video_jobs`): find the active one, enqueue, end or stop one.
//! The queue moves them while they run; these are the video operations' part.

use jobpulse_domain::VideoId;

use crate::DbError;
use crate::conn::{Conn, RowExt, dual, now_ms};
use crate::model::{CancelOutcome, Video, VideoJob, VideoJobState, clean_message, video_job_cols};

/// The active (QUEUED, RUNNING, RETRY_WAIT) job of a video, locked on PostgreSQL.
pub(crate) async fn active_video_job(
    c: Conn<'_>,
    video: VideoId,
) -> Result<Option<VideoJob>, DbError> {
    dual!(c, |c, d| {
        let sql = d.pick(
            concat!(
                "SELECT ",
                video_job_cols!(),
                " FROM video_jobs WHERE video_id = $1 \
                 AND state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT') FOR NO KEY UPDATE"
            ),
            concat!(
                "SELECT ",
                video_job_cols!(),
                " FROM video_jobs WHERE video_id = $1 \
                 AND state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT')"
            ),
        );
        sqlx::query(sql)
            .bind(video.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| VideoJob::from_row(&r))
            .transpose()
    })
}

/// Ends a job that is still in `job.state` at `job.attempt` (compare-and-set); false when it
/// moved on meanwhile.
pub(crate) async fn end_video_job(
    c: Conn<'_>,
    job: &VideoJob,
    to: VideoJobState,
    code: &str,
    message: Option<&str>,
) -> Result<bool, DbError> {
    let message = message.map(clean_message);
    let n = dual!(c, |c, d| {
        sqlx::query(
            "UPDATE video_jobs SET state = $1, error_code = $2, \
             error_message = COALESCE($3, error_message), lease_until = NULL, updated_at = $4 \
             WHERE id = $5 AND state = $6 AND attempt = $7",
        )
        .bind(to.as_str())
        .bind(code)
        .bind(message)
        .bind(now_ms())
        .bind(job.id)
        .bind(job.state.as_str())
        .bind(i64::from(job.attempt))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub(crate) async fn insert_video_job(
    c: Conn<'_>,
    video: &Video,
    max_attempts: u32,
) -> Result<i64, DbError> {
    let now = now_ms();
    dual!(c, |c, d| {
        let row = sqlx::query(
            "INSERT INTO video_jobs (tenant_id, video_id, generation, state, max_attempts, \
             run_after, created_at, updated_at) VALUES ($1, $2, $3, 'QUEUED', $4, $5, $5, $5) \
             RETURNING id",
        )
        .bind(video.tenant.get())
        .bind(video.id.get())
        .bind(i64::from(video.fence.generation))
        .bind(i64::from(max_attempts))
        .bind(now)
        .fetch_one(&mut *c)
        .await;
        match row {
            Ok(r) => r.int("id"),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(DbError::Conflict(
                format!("video {} already has an active job", video.id),
            )),
            Err(e) => Err(e.into()),
        }
    })
}

/// Ends a waiting job (CANCELLED) or asks a running one to stop.
pub(super) async fn stop_video_job(
    c: Conn<'_>,
    job: &VideoJob,
    reason: &str,
) -> Result<CancelOutcome, DbError> {
    if job.state == VideoJobState::Running {
        dual!(c, |c, d| {
            sqlx::query(
                "UPDATE video_jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2",
            )
            .bind(now_ms())
            .bind(job.id)
            .execute(&mut *c)
            .await?;
        });
        return Ok(CancelOutcome::Requested);
    }
    if !end_video_job(c, job, VideoJobState::Cancelled, reason, Some(reason)).await? {
        return Err(DbError::Conflict(format!(
            "job {} changed concurrently",
            job.id
        )));
    }
    Ok(CancelOutcome::Ended)
}
