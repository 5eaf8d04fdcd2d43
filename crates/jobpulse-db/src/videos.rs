//! Videos: upload, list, read, user retry, delete and cancel; and the one checked path every
//! video state change goes through (`Tracked`, applied by `outbox::apply_change`).
//!
//! Lock order, everywhere: the video's job row first, then the video row. Keeping one order
//! means two transactions touching the same video wait for each other instead of deadlocking.

use jobpulse_domain::{TenantId, VideoId, VideoStatus, Write};

use crate::conn::{Conn, FromRow, RowExt, RowId, dual, fetch_by_id, now_ms};
use crate::model::{CancelOutcome, Video, video_cols};
use crate::outbox::{self, Committed, Tracked, apply_change};
use crate::tenants::check_title;
use crate::webhooks::enqueue::Event;
use crate::{Db, DbError};

mod jobs;
mod read;

use jobs::stop_video_job;
pub(crate) use jobs::{active_video_job, end_video_job, insert_video_job};
pub use read::VideoFilter;

pub(crate) fn check_file_key(key: &str) -> Result<(), DbError> {
    if key.is_empty() || key.len() > 1024 || key.chars().any(char::is_control) {
        return Err(DbError::Invalid(
            "file key must be 1 to 1024 bytes without control characters".into(),
        ));
    }
    Ok(())
}

/// Reads a video by id, locking its row on PostgreSQL.
const LOCK_SQL: (&str, &str) = (
    concat!(
        "SELECT ",
        video_cols!(),
        " FROM videos WHERE id = $1 FOR NO KEY UPDATE"
    ),
    concat!("SELECT ", video_cols!(), " FROM videos WHERE id = $1"),
);

impl FromRow for Video {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        Video::from_row(r)
    }
}

/// Loads a video (any tenant, deleted or not), locking its row on PostgreSQL.
pub(crate) async fn lock_video(c: Conn<'_>, id: VideoId) -> Result<Option<Video>, DbError> {
    fetch_by_id(c, LOCK_SQL, RowId::Int(id.get())).await
}

impl Tracked for Video {
    fn write(&self) -> Result<Write, DbError> {
        Video::write(self)
    }

    fn event(cur: &Self, now: &Self) -> Option<Event> {
        if cur.status == now.status {
            return None;
        }
        Event::of_video(now)
    }

    /// Same generation → `can_transition`; next generation → a restart of a FAILED video at
    /// UPLOADED, or a deletion; the fence only grows.
    fn check(cur: &Self, next: &Self) -> Result<(), DbError> {
        let illegal = DbError::IllegalTransition {
            from: cur.status.as_str(),
            to: next.status.as_str(),
        };
        if cur.deleted_at_ms.is_some() {
            return Err(DbError::NotFound("video"));
        }
        if next.fence <= cur.fence {
            return Err(DbError::Conflict(format!(
                "video {} fence must grow ({} -> {})",
                cur.id, cur.fence, next.fence
            )));
        }
        let (g, ng) = (cur.fence.generation, next.fence.generation);
        let ok = if next.deleted_at_ms.is_some() {
            ng == g + 1
        } else if ng == g {
            cur.status.can_transition(next.status)
        } else {
            ng == g + 1 && cur.status.can_restart() && next.status == VideoStatus::Uploaded
        };
        if ok { Ok(()) } else { Err(illegal) }
    }

    /// The update is also a compare-and-set on the status and generation read, so a concurrent
    /// change makes it fail instead of being overwritten.
    async fn update(mut c: Conn<'_>, cur: &Self, next: &Self) -> Result<Self, DbError> {
        let updated = dual!(c.reborrow(), |c, d| {
            sqlx::query(concat!(
                "UPDATE videos SET status = $1, generation = $2, fence_attempt = $3, fence_seq = $4, \
                 attempt = $5, error_reason = $6, hls_path = $7, duration_secs = $8, \
                 updated_at = $9, deleted_at = $10, max_attempts = $11, retry_at = $12 \
                 WHERE id = $13 AND status = $14 AND generation = $15 AND deleted_at IS NULL \
                 RETURNING ",
                video_cols!()
            ))
            .bind(next.status.as_str())
            .bind(i64::from(next.fence.generation))
            .bind(i64::from(next.fence.attempt))
            .bind(i64::try_from(next.fence.seq).unwrap_or(i64::MAX))
            .bind(i64::from(next.attempt))
            .bind(next.error_reason.as_deref())
            .bind(next.hls_path.as_deref())
            .bind(next.duration_secs.map(i64::from))
            .bind(now_ms())
            .bind(next.deleted_at_ms)
            .bind(next.max_attempts.map(i64::from))
            .bind(next.retry_at_ms)
            .bind(cur.id.get())
            .bind(cur.status.as_str())
            .bind(i64::from(cur.fence.generation))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| Video::from_row(&r))
            .transpose()?
        });
        updated.ok_or_else(|| DbError::Conflict(format!("video {} changed concurrently", cur.id)))
    }
}

impl Db {
    /// Records an uploaded video: the row (UPLOADED, fence 1.0.1), its queued transcode job and
    /// the outbox row, in one transaction. `session_id` must belong to `tenant`.
    pub async fn create_video(
        &self,
        tenant: TenantId,
        session_id: Option<i64>,
        title: &str,
        file_key: &str,
    ) -> Result<Committed<Video>, DbError> {
        let title = check_title(title, "title")?;
        check_file_key(file_key)?;
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
                 VALUES ($1, $2, $3, 'UPLOADED', $4, 1, 0, 1, $5, $5) RETURNING ",
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
        insert_video_job(tx.conn(), &video, self.options().queue.default_max_attempts).await?;
        let entry = outbox::insert(tx.conn(), &video.write()?).await?;
        self.commit(tx, true).await?;
        self.signals().video.notify_one();
        tracing::info!(tenant.id = %tenant, video.id = %video.id, "video uploaded");
        Ok(Committed::one(video, entry))
    }

    /// A user retry of a FAILED video: a new generation back at UPLOADED (fence g+1.0.1) with a
    /// new queued job. Any other status → `IllegalTransition` (nothing written).
    pub async fn retry_video(
        &self,
        tenant: TenantId,
        id: VideoId,
    ) -> Result<Committed<Video>, DbError> {
        let mut tx = self.begin().await?;
        let cur = lock_video(tx.conn(), id)
            .await?
            .filter(|v| v.tenant == tenant && v.deleted_at_ms.is_none())
            .ok_or(DbError::NotFound("video"))?;
        if !cur.status.can_restart() {
            return Err(DbError::IllegalTransition {
                from: cur.status.as_str(),
                to: VideoStatus::Uploaded.as_str(),
            });
        }
        let next = Video {
            status: VideoStatus::Uploaded,
            fence: cur.fence.next_generation(),
            attempt: 0,
            error_reason: None,
            hls_path: None,
            duration_secs: None,
            ..cur.clone()
        };
        let (video, entry) = apply_change(tx.conn(), &cur, &next).await?;
        insert_video_job(tx.conn(), &video, self.options().queue.default_max_attempts).await?;
        self.commit(tx, true).await?;
        self.signals().video.notify_one();
        tracing::info!(tenant.id = %tenant, video.id = %id, generation = video.fence.generation, "video retried");
        Ok(Committed::one(video, entry))
    }

    /// Soft-deletes a video: its active job ends (QUEUED/RETRY_WAIT → CANCELLED) or is asked to
    /// stop (RUNNING → cancel requested), and a new-generation tombstone (g+1.0.1) hides it in
    /// the read model, even a READY record.
    pub async fn delete_video(
        &self,
        tenant: TenantId,
        id: VideoId,
    ) -> Result<Committed<()>, DbError> {
        let mut tx = self.begin().await?;
        let job = active_video_job(tx.conn(), id)
            .await?
            .filter(|j| j.tenant == tenant);
        let cur = lock_video(tx.conn(), id)
            .await?
            .filter(|v| v.tenant == tenant && v.deleted_at_ms.is_none())
            .ok_or(DbError::NotFound("video"))?;
        if let Some(job) = &job {
            stop_video_job(tx.conn(), job, "deleted").await?;
        }
        let next = Video {
            fence: cur.fence.next_generation(),
            deleted_at_ms: Some(now_ms()),
            ..cur.clone()
        };
        let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
        self.commit(tx, true).await?;
        tracing::info!(tenant.id = %tenant, video.id = %id, "video deleted");
        Ok(Committed::one((), entry))
    }

    /// Cancels a video's transcoding. A QUEUED or RETRY_WAIT job ends at once (the video becomes
    /// FAILED "cancelled", retryable); a RUNNING one is asked to stop (its worker sees it on its
    /// next heartbeat and calls [`Db::cancelled`]).
    pub async fn cancel_video(
        &self,
        tenant: TenantId,
        id: VideoId,
    ) -> Result<Committed<CancelOutcome>, DbError> {
        let mut tx = self.begin().await?;
        let job = active_video_job(tx.conn(), id)
            .await?
            .filter(|j| j.tenant == tenant);
        let cur = lock_video(tx.conn(), id)
            .await?
            .filter(|v| v.tenant == tenant && v.deleted_at_ms.is_none())
            .ok_or(DbError::NotFound("video"))?;
        let Some(job) = job else {
            tx.commit().await?;
            return Ok(Committed::new(CancelOutcome::NotActive, Vec::new()));
        };
        if stop_video_job(tx.conn(), &job, "cancelled").await? == CancelOutcome::Requested {
            tx.commit().await?;
            return Ok(Committed::new(CancelOutcome::Requested, Vec::new()));
        }
        let next = Video {
            status: VideoStatus::Failed,
            // No attempt is running (the job row is locked and was waiting): the next seq of the
            // last state change orders this after everything written so far.
            fence: cur.fence.next_seq(),
            error_reason: Some("cancelled".to_owned()),
            attempt: job.attempt,
            ..cur.clone()
        };
        let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
        self.commit(tx, true).await?;
        tracing::info!(tenant.id = %tenant, video.id = %id, "video job cancelled");
        Ok(Committed::one(CancelOutcome::Ended, entry))
    }
}

#[cfg(test)]
mod tests {
    use jobpulse_domain::Fence;

    use super::*;

    fn video(status: VideoStatus, fence: Fence) -> Video {
        Video {
            id: VideoId::new(1).expect("valid"),
            tenant: TenantId::new(1).expect("valid"),
            session_id: None,
            title: "t".into(),
            status,
            file_key: "k".into(),
            hls_path: None,
            duration_secs: None,
            error_reason: None,
            attempt: 0,
            fence,
            created_at_ms: 0,
            updated_at_ms: 0,
            deleted_at_ms: None,
            max_attempts: None,
            retry_at_ms: None,
        }
    }

    fn f(g: u32, a: u32, s: u64) -> Fence {
        Fence::new(g, a, s).expect("valid")
    }

    #[test]
    fn the_life_cycle_is_checked() {
        use VideoStatus::*;
        let up = video(Uploaded, f(1, 0, 1));
        assert!(Video::check(&up, &video(Processing, f(1, 1, 1))).is_ok());
        assert!(Video::check(&up, &video(Ready, f(1, 1, 1))).is_err());
        let ready = video(Ready, f(1, 1, 5));
        assert!(Video::check(&ready, &video(Uploaded, f(2, 0, 1))).is_err());
        let failed = video(Failed, f(1, 2, 0));
        assert!(Video::check(&failed, &video(Uploaded, f(2, 0, 1))).is_ok());
        assert!(Video::check(&failed, &video(Uploaded, f(3, 0, 1))).is_err());
        let proc = video(Processing, f(1, 2, 1));
        assert!(
            Video::check(&proc, &video(Processing, f(1, 1, 9))).is_err(),
            "the fence never goes back"
        );
        let mut gone = video(Ready, f(2, 0, 1));
        gone.deleted_at_ms = Some(1);
        assert!(
            Video::check(&ready, &gone).is_ok(),
            "any status may be deleted"
        );
    }
}
