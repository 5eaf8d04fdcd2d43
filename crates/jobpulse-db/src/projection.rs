//! The rows as the read model sees them: the write of a task's last state change, and the pages
//! of rows a full repair rebuilds (the read model itself lives in `jobpulse-sync`).

use jobpulse_domain::{TaskId, TaskKey, Write};

use crate::conn::dual;
use crate::model::{AiJob, Video, ai_job_cols, video_cols};
use crate::{Db, DbError};

impl Db {
    /// The write of a task's last state change (a tombstone for a deleted video), or `None`
    /// when the tenant has no such task.
    pub async fn current_write(&self, key: &TaskKey) -> Result<Option<Write>, DbError> {
        let mut conn = self.read().await?;
        let tenant = key.tenant.get();
        match &key.task {
            TaskId::Video(id) => {
                let video = dual!(conn.conn(), |c, d| {
                    sqlx::query(concat!(
                        "SELECT ",
                        video_cols!(),
                        " FROM videos WHERE id = $1 AND tenant_id = $2"
                    ))
                    .bind(id.get())
                    .bind(tenant)
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| Video::from_row(&r))
                    .transpose()?
                });
                video.map(|v| v.write()).transpose()
            }
            TaskId::Job(id) => {
                let job = dual!(conn.conn(), |c, d| {
                    sqlx::query(concat!(
                        "SELECT ",
                        ai_job_cols!(),
                        " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
                         WHERE j.job_id = $1 AND j.tenant_id = $2"
                    ))
                    .bind(id.as_str())
                    .bind(tenant)
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| AiJob::from_row(&r))
                    .transpose()?
                });
                job.map(|j| j.write()).transpose()
            }
        }
    }

    /// Videos to rebuild, by id after `after`, at most `limit`: every live one still in
    /// progress or updated at or after `since` (unix ms), and every one deleted at or after
    /// `deleted_since` (its tombstone).
    pub async fn videos_to_repair(
        &self,
        after: i64,
        since: i64,
        deleted_since: i64,
        limit: i64,
    ) -> Result<Vec<Video>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                video_cols!(),
                " FROM videos WHERE id > $1 AND ( \
                   (deleted_at IS NULL AND (status IN ('PENDING', 'UPLOADED', 'PROCESSING', 'RETRY_WAIT') \
                                            OR updated_at >= $2)) \
                   OR (deleted_at IS NOT NULL AND deleted_at >= $3)) \
                 ORDER BY id LIMIT $4"
            ))
            .bind(after)
            .bind(since)
            .bind(deleted_since)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(Video::from_row)
            .collect()
        })
    }

    /// AI jobs to rebuild, by id after `after`, at most `limit`: every one still in progress
    /// or updated at or after `since` (unix ms).
    pub async fn ai_jobs_to_repair(
        &self,
        after: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AiJob>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                ai_job_cols!(),
                " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
                 WHERE j.job_id > $1 AND (j.status IN ('PENDING', 'RUNNING', 'RETRYING') \
                                          OR j.updated_at >= $2) \
                 ORDER BY j.job_id LIMIT $3"
            ))
            .bind(after)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(AiJob::from_row)
            .collect()
        })
    }
}
