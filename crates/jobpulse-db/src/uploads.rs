//! Direct uploads (docs/contract.md §7): the browser sends the bytes to storage itself, between an
//! upload init and a complete.
//!
//! - [`Db::create_pending_video`]: the video row at `PENDING` (fence 1.0.1) and its
//!   `video_uploads` row (the content type the upload URL is signed for, the open multipart
//!   upload), published like any state change, so the progress URL answers `PENDING` at once.
//! - [`Db::complete_upload`]: `PENDING → UPLOADED` (next seq of the same attempt) with its queued
//!   transcode job, in one transaction. The row's status decides: a video that is no longer
//!   `PENDING` is answered as it is, so completing twice never queues twice (and two completes
//!   racing each other meet at the compare-and-set of `outbox::apply_change`).
//! - [`Db::fail_upload`]: `PENDING → FAILED` with a reason (`source_not_found_or_empty`).
//! - [`Db::abandoned_uploads`] / [`Db::remove_abandoned_upload`]: PENDING videos whose upload
//!   never completed, for the API's clean-up (it removes the object and the multipart upload
//!   first, then the row).

use jobpulse_domain::{TenantId, VideoId, VideoStatus};

use crate::conn::{Conn, RowExt, dual, now_ms};
use crate::model::{Video, video_cols};
use crate::outbox::apply_change;
use crate::outbox::{self, Committed};
use crate::tenants::check_title;
use crate::videos::{check_file_key, insert_video_job, lock_video};
use crate::{Db, DbError};

/// What only a PENDING video needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoUpload {
    pub video_id: VideoId,
    pub tenant: TenantId,
    /// The `Content-Type` the single-upload URL is signed for.
    pub content_type: String,
    /// The open multipart upload (S3's upload id, or file storage's staging id).
    pub multipart_id: Option<String>,
    pub created_at_ms: i64,
}

impl VideoUpload {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        Ok(Self {
            video_id: VideoId::new(r.int("video_id")?).map_err(DbError::corrupt)?,
            tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
            content_type: r.text("content_type")?,
            multipart_id: r.opt_text("multipart_id")?,
            created_at_ms: r.int("created_at")?,
        })
    }
}

/// The outcome of [`Db::complete_upload`].
#[derive(Debug, Clone)]
pub enum UploadCompletion {
    /// The video was PENDING: it is UPLOADED now, with a queued transcode job.
    Queued(Video),
    /// The video had already left PENDING (completed before, failed, deleted …): nothing was
    /// written; this is its current row.
    Already(Video),
}

impl UploadCompletion {
    pub fn video(&self) -> &Video {
        match self {
            UploadCompletion::Queued(v) | UploadCompletion::Already(v) => v,
        }
    }
}

fn check_content_type(ct: &str) -> Result<(), DbError> {
    if ct.is_empty() || ct.len() > 255 || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(DbError::Invalid(
            "content type must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

async fn delete_upload_row(c: Conn<'_>, video: VideoId) -> Result<(), DbError> {
    dual!(c, |c, d| {
        sqlx::query("DELETE FROM video_uploads WHERE video_id = $1")
            .bind(video.get())
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

impl Db {
    /// Creates a video at `PENDING` for a direct upload to `file_key`, with its upload row and
    /// the outbox row, in one transaction. `session_id` must belong to `tenant`.
    pub async fn create_pending_video(
        &self,
        tenant: TenantId,
        session_id: Option<i64>,
        title: &str,
        file_key: &str,
        content_type: &str,
    ) -> Result<Committed<Video>, DbError> {
        let title = check_title(title, "title")?;
        check_file_key(file_key)?;
        check_content_type(content_type)?;
        let mut tx = self.begin().await?;
        if let Some(session) = session_id {
            let found = dual!(tx.conn(), |c, d| {
                sqlx::query("SELECT id FROM sessions WHERE id = $1 AND tenant_id = $2")
                    .bind(session)
                    .bind(tenant.get())
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some()
            });
            if !found {
                return Err(DbError::NotFound("session"));
            }
        }
        let now = now_ms();
        let video = dual!(tx.conn(), |c, d| {
            let row = sqlx::query(concat!(
                "INSERT INTO videos (tenant_id, session_id, title, status, file_key, generation, \
                 fence_attempt, fence_seq, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'PENDING', $4, 1, 0, 1, $5, $5) RETURNING ",
                video_cols!()
            ))
            .bind(tenant.get())
            .bind(session_id)
            .bind(&title)
            .bind(file_key)
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
            Video::from_row(&row)?
        });
        dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO video_uploads (video_id, tenant_id, content_type, multipart_id, \
                 created_at) VALUES ($1, $2, $3, NULL, $4)",
            )
            .bind(video.id.get())
            .bind(tenant.get())
            .bind(content_type)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        let entry = outbox::insert(tx.conn(), &video.write()?).await?;
        self.commit(tx, true).await?;
        tracing::info!(tenant.id = %tenant, video.id = %video.id, "upload started");
        Ok(Committed::one(video, entry))
    }

    /// The upload row of a video of `tenant` (only while it is PENDING).
    pub async fn video_upload(
        &self,
        tenant: TenantId,
        video: VideoId,
    ) -> Result<Option<VideoUpload>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT video_id, tenant_id, content_type, multipart_id, created_at \
                 FROM video_uploads WHERE video_id = $1 AND tenant_id = $2",
            )
            .bind(video.get())
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| VideoUpload::from_row(&r))
            .transpose()
        })
    }

    /// Records the content type of a refreshed upload URL and the open multipart upload
    /// (`None` after an abort). False when the video has no upload row (not PENDING any more).
    pub async fn update_video_upload(
        &self,
        tenant: TenantId,
        video: VideoId,
        content_type: &str,
        multipart_id: Option<&str>,
    ) -> Result<bool, DbError> {
        check_content_type(content_type)?;
        if multipart_id.is_some_and(|m| m.is_empty() || m.len() > 1024) {
            return Err(DbError::Invalid(
                "multipart id must be 1 to 1024 bytes".into(),
            ));
        }
        let mut conn = self.read().await?;
        let n = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "UPDATE video_uploads SET content_type = $1, multipart_id = $2 \
                 WHERE video_id = $3 AND tenant_id = $4",
            )
            .bind(content_type)
            .bind(multipart_id)
            .bind(video.get())
            .bind(tenant.get())
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// `PENDING → UPLOADED` with a queued transcode job; a video that already left PENDING is
    /// returned unchanged ([`UploadCompletion::Already`]). Unknown or another tenant's id, or a
    /// deleted video → `NotFound`.
    pub async fn complete_upload(
        &self,
        tenant: TenantId,
        id: VideoId,
    ) -> Result<Committed<UploadCompletion>, DbError> {
        let mut tx = self.begin().await?;
        let cur = lock_video(tx.conn(), id)
            .await?
            .filter(|v| v.tenant == tenant && v.deleted_at_ms.is_none())
            .ok_or(DbError::NotFound("video"))?;
        if cur.status != VideoStatus::Pending {
            tx.commit().await?;
            return Ok(Committed::new(UploadCompletion::Already(cur), Vec::new()));
        }
        let next = Video {
            status: VideoStatus::Uploaded,
            fence: cur.fence.next_seq(),
            ..cur.clone()
        };
        let (video, entry) = match apply_change(tx.conn(), &cur, &next).await {
            Ok(x) => x,
            Err(DbError::Conflict(_)) => {
                // Another complete won the compare-and-set: answer with what it wrote.
                drop(tx);
                let now = self.get_video(tenant, id).await?;
                let v = now.ok_or(DbError::NotFound("video"))?;
                return Ok(Committed::new(UploadCompletion::Already(v), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        insert_video_job(tx.conn(), &video, self.options().queue.default_max_attempts).await?;
        delete_upload_row(tx.conn(), id).await?;
        self.commit(tx, true).await?;
        self.signals().video.notify_one();
        tracing::info!(tenant.id = %tenant, video.id = %id, "upload completed; video queued");
        Ok(Committed::one(UploadCompletion::Queued(video), entry))
    }

    /// `PENDING → FAILED` with `reason` (e.g. `source_not_found_or_empty`); a video that
    /// already left PENDING is returned unchanged with no outbox row.
    pub async fn fail_upload(
        &self,
        tenant: TenantId,
        id: VideoId,
        reason: &str,
    ) -> Result<Committed<Video>, DbError> {
        let mut tx = self.begin().await?;
        let cur = lock_video(tx.conn(), id)
            .await?
            .filter(|v| v.tenant == tenant && v.deleted_at_ms.is_none())
            .ok_or(DbError::NotFound("video"))?;
        if cur.status != VideoStatus::Pending {
            tx.commit().await?;
            return Ok(Committed::new(cur, Vec::new()));
        }
        let next = Video {
            status: VideoStatus::Failed,
            fence: cur.fence.next_seq(),
            error_reason: Some(reason.to_owned()),
            ..cur.clone()
        };
        let (video, entry) = apply_change(tx.conn(), &cur, &next).await?;
        delete_upload_row(tx.conn(), id).await?;
        self.commit(tx, true).await?;
        tracing::info!(tenant.id = %tenant, video.id = %id, reason, "upload failed");
        Ok(Committed::one(video, entry))
    }

    /// PENDING videos (every tenant) whose upload started before `before_ms`, oldest first, at
    /// most `limit`, with their upload rows.
    pub async fn abandoned_uploads(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Video, VideoUpload)>, DbError> {
        let mut conn = self.read().await?;
        let uploads: Vec<VideoUpload> = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT video_id, tenant_id, content_type, multipart_id, created_at \
                 FROM video_uploads WHERE created_at < $1 ORDER BY created_at LIMIT $2",
            )
            .bind(before_ms)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(VideoUpload::from_row)
            .collect::<Result<_, _>>()?
        });
        drop(conn);
        let mut out = Vec::with_capacity(uploads.len());
        for u in uploads {
            let video = self.get_video_any(u.video_id).await?;
            out.push((video, u));
        }
        Ok(out
            .into_iter()
            .filter_map(|(v, u)| v.map(|v| (v, u)))
            .collect())
    }

    async fn get_video_any(&self, id: VideoId) -> Result<Option<Video>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                video_cols!(),
                " FROM videos WHERE id = $1"
            ))
            .bind(id.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| Video::from_row(&r))
            .transpose()
        })
    }

    /// Removes an abandoned upload's rows: the upload row, and the video (deleted, with a
    /// tombstone for the read model) when it is still PENDING. Returns whether a video was
    /// deleted. Call it after the object and the multipart upload are gone.
    pub async fn remove_abandoned_upload(&self, video: &Video) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let cur = lock_video(tx.conn(), video.id).await?;
        let mut outbox = Vec::new();
        if let Some(cur) =
            cur.filter(|v| v.status == VideoStatus::Pending && v.deleted_at_ms.is_none())
        {
            let next = Video {
                fence: cur.fence.next_generation(),
                deleted_at_ms: Some(now_ms()),
                ..cur.clone()
            };
            let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
            outbox.push(entry);
        }
        delete_upload_row(tx.conn(), video.id).await?;
        let deleted = !outbox.is_empty();
        self.commit(tx, deleted).await?;
        if deleted {
            tracing::info!(tenant.id = %video.tenant, video.id = %video.id, "abandoned upload removed");
        }
        Ok(deleted)
    }
}
