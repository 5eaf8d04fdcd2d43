//! AI/tool jobs: submit (idempotent), reject at submit, read, cancel, results; and the one
//! checked path every job state change goes through (`apply_job_change`).
//!
//! An AI job's queue state *is* its contract status: PENDING and RETRYING wait, RUNNING holds a
//! lease, the rest are terminal.

use std::time::Duration;

use jobpulse_domain::{JobId, JobResult, JobStatus, JobType, TenantId};

use crate::conn::{Conn, Dialect, RowExt, dual, now_ms};
use crate::model::{AiJob, CancelOutcome, ai_job_cols, clean_message};
use crate::outbox::{self, Committed, OutboxEntry};
use crate::tenants::lecture_in;
use crate::{Db, DbError};

/// What a caller submits.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAiJob {
    pub tenant: TenantId,
    pub job_type: JobType,
    /// Job-type specific parameters (a JSON object).
    pub payload: serde_json::Value,
    /// Must belong to `tenant` when given.
    pub lecture_id: Option<i64>,
    pub input_file_key: Option<String>,
    /// The same key for the same tenant returns the existing job instead of a new one.
    pub idempotency_key: Option<String>,
    /// The submitting user (the token's `user_id`).
    pub created_by: Option<String>,
    /// `None`: the queue default.
    pub max_attempts: Option<u32>,
    /// How long one attempt may run (enforced by the worker).
    pub timeout: Duration,
}

impl NewAiJob {
    pub fn new(tenant: TenantId, job_type: JobType) -> Self {
        Self {
            tenant,
            job_type,
            payload: serde_json::Value::Object(serde_json::Map::new()),
            lecture_id: None,
            input_file_key: None,
            idempotency_key: None,
            created_by: None,
            max_attempts: None,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The job a submit returned, and whether this call created it (`false`: an earlier submit with
/// the same idempotency key did).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: AiJob,
    pub created: bool,
}

/// Random job id: 16 url-safe characters (96 bits), within the contract's `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn new_job_id() -> Result<JobId, DbError> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let s: String = (0..16)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    JobId::parse(&s).map_err(DbError::corrupt)
}

fn lock_sql(d: Dialect) -> &'static str {
    d.pick(
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
    )
}

/// Loads a job (any tenant), locking its row on PostgreSQL.
pub(crate) async fn lock_ai_job(c: Conn<'_>, id: &JobId) -> Result<Option<AiJob>, DbError> {
    dual!(c, |c, d| {
        sqlx::query(lock_sql(d))
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| AiJob::from_row(&r))
            .transpose()
    })
}

fn check_job_change(cur: &AiJob, next: &AiJob) -> Result<(), DbError> {
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

/// Writes a checked job change and its outbox row (inside the caller's transaction).
///
/// The update is a compare-and-set on what `cur` says (status, attempt, generation and lease
/// owner): for a worker this is the lease fence, `WHERE … attempt = ? AND lease_owner = ? AND
/// status = 'RUNNING'`, so a zombie's change matches no row and fails with
/// [`DbError::LeaseLost`].
pub(crate) async fn apply_job_change(
    mut c: Conn<'_>,
    cur: &AiJob,
    next: &AiJob,
) -> Result<(AiJob, OutboxEntry), DbError> {
    check_job_change(cur, next)?;
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
    let updated = lock_ai_job(c.reborrow(), &cur.job_id)
        .await?
        .ok_or(DbError::NotFound("job"))?;
    let entry = outbox::insert(c, &updated.write()?).await?;
    Ok((updated, entry))
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
    /// Submits a job: the row (PENDING, fence 1.0.1), queued, with its outbox row, in one
    /// transaction. With an idempotency key already used by this tenant, returns that job
    /// (`created == false`, no outbox row); reusing a key for another job type is a `Conflict`.
    pub async fn submit_ai_job(&self, job: NewAiJob) -> Result<Committed<Submitted>, DbError> {
        let out = self.insert_ai_job(job, JobStatus::Pending, None).await?;
        if out.value.created {
            self.signals().ai.notify_one();
        }
        Ok(out)
    }

    /// Records a job refused at submit for bad input: the row goes straight to
    /// REJECTED_BAD_INPUT with `error_message`, is never queued, and is published like any
    /// other, so a client polling its id sees why.
    pub async fn reject_ai_job(
        &self,
        job: NewAiJob,
        error_message: &str,
    ) -> Result<Committed<Submitted>, DbError> {
        self.insert_ai_job(job, JobStatus::RejectedBadInput, Some(error_message))
            .await
    }

    async fn insert_ai_job(
        &self,
        job: NewAiJob,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<Committed<Submitted>, DbError> {
        if !job.payload.is_object() {
            return Err(DbError::Invalid("payload must be a JSON object".into()));
        }
        if let Some(k) = &job.idempotency_key
            && (k.is_empty() || k.len() > 200 || k.chars().any(char::is_control))
        {
            return Err(DbError::Invalid(
                "idempotency key must be 1 to 200 bytes without control characters".into(),
            ));
        }
        let max_attempts = job
            .max_attempts
            .unwrap_or(self.options().queue.default_max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(DbError::Invalid("max attempts must be 1 to 100".into()));
        }
        let timeout = i64::try_from(job.timeout.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let payload = serde_json::to_string(&job.payload).map_err(DbError::corrupt)?;
        let error = error.map(clean_message);
        let id = new_job_id()?;
        let now = now_ms();

        let mut tx = self.begin().await?;
        if let Some(lecture) = job.lecture_id
            && lecture_in(tx.conn(), job.tenant, lecture).await?.is_none()
        {
            return Err(DbError::NotFound("lecture"));
        }
        let inserted = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO ai_jobs (job_id, tenant_id, job_type, status, payload, \
                 input_file_key, lecture_id, idempotency_key, created_by, generation, \
                 fence_attempt, fence_seq, attempt, max_attempts, run_after, error_message, \
                 timeout_secs, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 0, 1, 0, $10, $11, $12, $13, \
                 $11, $11) ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING job_id",
            )
            .bind(id.as_str())
            .bind(job.tenant.get())
            .bind(job.job_type.as_str())
            .bind(status.as_str())
            .bind(&payload)
            .bind(job.input_file_key.as_deref())
            .bind(job.lecture_id)
            .bind(job.idempotency_key.as_deref())
            .bind(job.created_by.as_deref())
            .bind(i64::from(max_attempts))
            .bind(now)
            .bind(error.as_deref())
            .bind(timeout)
            .fetch_optional(&mut *c)
            .await?
            .is_some()
        });
        if !inserted {
            // The idempotency key is taken: answer with the job that holds it.
            let existing = dual!(tx.conn(), |c, d| {
                sqlx::query(concat!(
                    "SELECT ",
                    ai_job_cols!(),
                    " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
                     WHERE j.tenant_id = $1 AND j.idempotency_key = $2"
                ))
                .bind(job.tenant.get())
                .bind(job.idempotency_key.as_deref())
                .fetch_optional(&mut *c)
                .await?
                .map(|r| AiJob::from_row(&r))
                .transpose()?
            });
            let existing = existing.ok_or_else(|| {
                DbError::Conflict("idempotency key conflict without a job".into())
            })?;
            if existing.job_type != job.job_type {
                return Err(DbError::Conflict(
                    "idempotency key already used for another job type".into(),
                ));
            }
            tx.commit().await?;
            return Ok(Committed::new(
                Submitted {
                    job: existing,
                    created: false,
                },
                Vec::new(),
            ));
        }
        let created = lock_ai_job(tx.conn(), &id)
            .await?
            .ok_or(DbError::NotFound("job"))?;
        let entry = outbox::insert(tx.conn(), &created.write()?).await?;
        self.commit(tx, true).await?;
        tracing::info!(
            tenant.id = %job.tenant,
            job.id = %id,
            "job.type" = %job.job_type,
            status = status.as_str(),
            "job submitted"
        );
        Ok(Committed::one(
            Submitted {
                job: created,
                created: true,
            },
            entry,
        ))
    }

    /// A job of `tenant` (another tenant's id → `None`).
    pub async fn get_ai_job(&self, tenant: TenantId, id: &JobId) -> Result<Option<AiJob>, DbError> {
        let mut conn = self.read().await?;
        Ok(dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                ai_job_cols!(),
                " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
                 WHERE j.job_id = $1 AND j.tenant_id = $2"
            ))
            .bind(id.as_str())
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| AiJob::from_row(&r))
            .transpose()?
        }))
    }

    /// The full stored result of a job of `tenant` (may hold secrets; for the result endpoint).
    pub async fn get_ai_result(
        &self,
        tenant: TenantId,
        id: &JobId,
    ) -> Result<Option<serde_json::Value>, DbError> {
        let mut conn = self.read().await?;
        let text = dual!(conn.conn(), |c, d| {
            sqlx::query("SELECT result FROM ai_results WHERE job_id = $1 AND tenant_id = $2")
                .bind(id.as_str())
                .bind(tenant.get())
                .fetch_optional(&mut *c)
                .await?
                .map(|r| r.opt_text("result"))
                .transpose()?
                .flatten()
        });
        text.map(|t| serde_json::from_str(&t).map_err(DbError::corrupt))
            .transpose()
    }

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
                let (_, entry) = apply_job_change(tx.conn(), &cur, &next).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_follow_the_contract() {
        let a = new_job_id().expect("valid");
        assert_eq!(a.as_str().len(), 16);
        assert_ne!(a, new_job_id().expect("valid"));
    }
}

/// Which jobs [`Db::list_ai_jobs`] returns.
#[derive(Debug, Clone, Default)]
pub struct AiJobFilter {
    pub status: Option<JobStatus>,
    pub job_type: Option<JobType>,
    /// Keyset pagination: only jobs created strictly before this `(created_at_ms, job_id)`.
    pub before: Option<(i64, JobId)>,
    /// At most this many (clamped to 1..=200).
    pub limit: u32,
    /// Leave out the staff-only job types ([`JobType::is_staff_only`]) in the query itself, so
    /// that a page, its length and its keyset cursor are built from visible jobs only (a cursor
    /// taken from a hidden job would disclose its id and time).
    pub hide_staff_only: bool,
}

/// [`JobType::is_staff_only`] as SQL (PostgreSQL and SQLite alike); the test
/// `staff_only_types_are_hidden_in_the_query` keeps the two in step.
macro_rules! staff_only_sql {
    () => {
        "(j.job_type = 'excel_parsing' OR j.job_type LIKE '%\\_export' ESCAPE '\\')"
    };
}

impl Db {
    /// Jobs of `tenant`, newest first.
    pub async fn list_ai_jobs(
        &self,
        tenant: TenantId,
        filter: &AiJobFilter,
    ) -> Result<Vec<AiJob>, DbError> {
        let limit = i64::from(filter.limit.clamp(1, 200));
        let (before_ms, before_id) = match &filter.before {
            Some((ms, id)) => (Some(*ms), Some(id.as_str().to_owned())),
            None => (None, None),
        };
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(concat!(
                "SELECT ",
                ai_job_cols!(),
                " FROM ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id \
                 WHERE j.tenant_id = $1 AND ($2 IS NULL OR j.status = $2) \
                 AND ($3 IS NULL OR j.job_type = $3) \
                 AND ($4 IS NULL OR j.created_at < $4 OR (j.created_at = $4 AND j.job_id < $5)) \
                 AND NOT ($7 AND ",
                staff_only_sql!(),
                ") ORDER BY j.created_at DESC, j.job_id DESC LIMIT $6"
            ))
            .bind(tenant.get())
            .bind(filter.status.map(JobStatus::as_str))
            .bind(filter.job_type.as_ref().map(JobType::as_str))
            .bind(before_ms)
            .bind(before_id)
            .bind(limit)
            .bind(filter.hide_staff_only)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(AiJob::from_row)
            .collect()
        })
    }
}
