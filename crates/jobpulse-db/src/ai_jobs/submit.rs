//! Submitting AI jobs: idempotent submits, and jobs refused at submit.

use std::time::Duration;

use jobpulse_domain::{JobId, JobStatus, JobType, TenantId};

use super::lock_ai_job;
use crate::conn::{dual, now_ms};
use crate::model::{AiJob, ai_job_cols, clean_message};
use crate::outbox::{self, Committed};
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
fn new_job_id() -> Result<JobId, DbError> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let s: String = (0..16)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    JobId::parse(&s).map_err(DbError::corrupt)
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
