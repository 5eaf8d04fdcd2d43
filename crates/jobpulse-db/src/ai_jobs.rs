//! AI/tool jobs: submit (idempotent), reject at submit, read, cancel, results; and the one
//! checked change of a job row (`Tracked`, applied by `outbox::apply_change`).
//!
//! An AI job's queue state *is* its contract status: PENDING and RETRYING wait, RUNNING holds a
//! lease, the rest are terminal.

use jobpulse_domain::{JobId, JobResult, JobStatus, TenantId, Write};

use crate::conn::{Conn, FromRow, RowExt, RowId, dual, fetch_by_id, now_ms};
use crate::model::{AiJob, CancelOutcome, ai_job_cols};
use crate::outbox::{Committed, Tracked, apply_change};
use crate::webhooks::enqueue::Event;
use crate::{Db, DbError};

mod read;
mod submit;

pub use read::AiJobFilter;
pub use submit::{NewAiJob, Submitted};

/// Reads a job by id with its result summary, locking the job row on PostgreSQL.
const LOCK_SQL: (&str, &str) = (
    concat!(
        "SELECT ",
        ai_job_cols!(),
        " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
         WHERE j.job_id = $1 FOR NO KEY UPDATE OF j"
    ),
    concat!(
        "SELECT ",
        ai_job_cols!(),
        " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id WHERE j.job_id = $1"
    ),
);

impl FromRow for AiJob {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        AiJob::from_row(r)
    }
}

/// Loads a job (any tenant), locking its row on PostgreSQL.
pub(crate) async fn lock_ai_job(c: Conn<'_>, id: &JobId) -> Result<Option<AiJob>, DbError> {
    fetch_by_id(c, LOCK_SQL, RowId::Text(id.as_str())).await
}

impl Tracked for AiJob {
    fn event(cur: &Self, now: &Self) -> Option<Event> {
        if cur.status == now.status {
            return None;
        }
        Event::of_job(now)
    }

    fn check(cur: &Self, next: &Self) -> Result<(), DbError> {
        if next.fence <= cur.fence {
            return Err(DbError::Conflict(format!(
                "job {} fence must grow ({} -> {})",
                cur.job_id, cur.fence, next.fence
            )));
        }
        if next.fence.generation == cur.fence.generation && cur.status.can_transition(next.status) {
            Ok(())
        } else {
            Err(DbError::IllegalTransition {
                from: cur.status.as_str(),
                to: next.status.as_str(),
            })
        }
    }

    /// The update is a compare-and-set on what `cur` says (status, attempt, generation and
    /// lease owner): for a worker this is the lease fence, `WHERE … attempt = ? AND lease_owner
    /// = ? AND status = 'RUNNING'`, so a zombie's change matches no row and fails with
    /// [`DbError::LeaseLost`].
    async fn update(mut c: Conn<'_>, cur: &Self, next: &Self) -> Result<Self, DbError> {
        let n = dual!(c.reborrow(), |c, d| {
            let sql = d.pick(
                "UPDATE ai_jobs SET status = $1, generation = $2, fence_attempt = $3, fence_seq = $4, \
                 attempt = $5, run_after = $6, lease_owner = $7, lease_until = $8, \
                 cancel_requested = $9, error_message = $10, updated_at = $11 \
                 WHERE job_id = $12 AND status = $13 AND attempt = $14 AND generation = $15 \
                 AND lease_owner IS NOT DISTINCT FROM $16",
                "UPDATE ai_jobs SET status = $1, generation = $2, fence_attempt = $3, fence_seq = $4, \
                 attempt = $5, run_after = $6, lease_owner = $7, lease_until = $8, \
                 cancel_requested = $9, error_message = $10, updated_at = $11 \
                 WHERE job_id = $12 AND status = $13 AND attempt = $14 AND generation = $15 \
                 AND lease_owner IS $16",
            );
            sqlx::query(sql)
                .bind(next.status.as_str())
                .bind(i64::from(next.fence.generation))
                .bind(i64::from(next.fence.attempt))
                .bind(i64::try_from(next.fence.seq).unwrap_or(i64::MAX))
                .bind(i64::from(next.attempt))
                .bind(next.run_after_ms)
                .bind(next.lease_owner.as_deref())
                .bind(next.lease_until_ms)
                .bind(next.cancel_requested)
                .bind(next.error_message.as_deref())
                .bind(now_ms())
                .bind(cur.job_id.as_str())
                .bind(cur.status.as_str())
                .bind(i64::from(cur.attempt))
                .bind(i64::from(cur.fence.generation))
                .bind(cur.lease_owner.as_deref())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if n != 1 {
            return Err(if cur.status == JobStatus::Running {
                DbError::LeaseLost
            } else {
                DbError::Conflict(format!("job {} changed concurrently", cur.job_id))
            });
        }
        lock_ai_job(c, &cur.job_id)
            .await?
            .ok_or(DbError::NotFound("job"))
    }

    fn write(&self) -> Result<Write, DbError> {
        AiJob::write(self)
    }
}

/// Stores a job's full result and its read-model projection (replacing an earlier one).
pub(crate) async fn store_result(
    c: Conn<'_>,
    job: &AiJob,
    full: Option<&serde_json::Value>,
    summary: Option<&JobResult>,
) -> Result<(), DbError> {
    let full = full
        .map(serde_json::to_string)
        .transpose()
        .map_err(DbError::corrupt)?;
    let summary = summary
        .map(serde_json::to_string)
        .transpose()
        .map_err(DbError::corrupt)?;
    dual!(c, |c, d| {
        sqlx::query(
            "INSERT INTO ai_results (job_id, tenant_id, result, summary, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO UPDATE \
             SET result = excluded.result, summary = excluded.summary",
        )
        .bind(job.job_id.as_str())
        .bind(job.tenant.get())
        .bind(full)
        .bind(summary)
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

impl Db {
    /// Cancels a job. PENDING or RETRYING ends at once as FAILED "cancelled"; RUNNING is asked
    /// to stop (its worker sees it on its next heartbeat and calls [`Db::cancelled`]).
    pub async fn cancel_ai_job(
        &self,
        tenant: TenantId,
        id: &JobId,
    ) -> Result<Committed<CancelOutcome>, DbError> {
        let mut tx = self.begin().await?;
        let cur = lock_ai_job(tx.conn(), id)
            .await?
            .filter(|j| j.tenant == tenant)
            .ok_or(DbError::NotFound("job"))?;
        match cur.status {
            JobStatus::Pending | JobStatus::Retrying => {
                let next = AiJob {
                    status: JobStatus::Failed,
                    fence: cur.fence.next_seq(),
                    error_message: Some("cancelled".into()),
                    ..cur.clone()
                };
                let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
                self.commit(tx, true).await?;
                tracing::info!(tenant.id = %tenant, job.id = %id, "job cancelled");
                Ok(Committed::one(CancelOutcome::Ended, entry))
            }
            JobStatus::Running => {
                dual!(tx.conn(), |c, d| {
                    sqlx::query(
                        "UPDATE ai_jobs SET cancel_requested = TRUE, updated_at = $1 \
                         WHERE job_id = $2",
                    )
                    .bind(now_ms())
                    .bind(id.as_str())
                    .execute(&mut *c)
                    .await?;
                });
                tx.commit().await?;
                Ok(Committed::new(CancelOutcome::Requested, Vec::new()))
            }
            _ => {
                tx.commit().await?;
                Ok(Committed::new(CancelOutcome::NotActive, Vec::new()))
            }
        }
    }
}
