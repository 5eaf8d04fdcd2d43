//! Reading videos: one, a page of a tenant's, and a video's transcode jobs.

use jobpulse_domain::{TenantId, VideoId, VideoStatus};

use crate::conn::{dual, page_limit};
use crate::model::{Video, VideoJob, video_cols, video_job_cols};
use crate::{Db, DbError};

/// Filters of [`Db::list_videos`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoFilter {
    pub status: Option<VideoStatus>,
    pub session_id: Option<i64>,
    /// Only videos with a smaller id (keyset pagination, newest first).
    pub before_id: Option<VideoId>,
    /// At most this many (clamped to 1..=200).
    pub limit: u32,
}

impl Db {
    /// A video of `tenant`; another tenant's id or a deleted video → `None`.
    pub async fn get_video(&self, tenant: TenantId, id: VideoId) -> Result<Option<Video>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                video_cols!(),
                " FROM videos WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
            ))
            .bind(id.get())
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| Video::from_row(&r))
            .transpose()
        })
    }

    /// Videos of `tenant`, newest first (not deleted).
    pub async fn list_videos(
        &self,
        tenant: TenantId,
        filter: &VideoFilter,
    ) -> Result<Vec<Video>, DbError> {
        let limit = page_limit(filter.limit);
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                video_cols!(),
                " FROM videos WHERE tenant_id = $1 AND deleted_at IS NULL \
                 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR session_id = $3) \
                 AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
            ))
            .bind(tenant.get())
            .bind(filter.status.map(VideoStatus::as_str))
            .bind(filter.session_id)
            .bind(filter.before_id.map(VideoId::get))
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(Video::from_row)
            .collect()
        })
    }

    /// The transcode jobs of a video of `tenant`, oldest first.
    pub async fn video_jobs(
        &self,
        tenant: TenantId,
        video: VideoId,
    ) -> Result<Vec<VideoJob>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                video_job_cols!(),
                " FROM video_jobs WHERE video_id = $1 AND tenant_id = $2 ORDER BY id"
            ))
            .bind(video.get())
            .bind(tenant.get())
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(VideoJob::from_row)
            .collect()
        })
    }
}
