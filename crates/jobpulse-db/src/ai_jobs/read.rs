//! Reading AI jobs: one job, its full result, and a page of a tenant's jobs.

use jobpulse_domain::{JobId, JobStatus, JobType, TenantId};

use crate::conn::{RowExt, dual, page_limit};
use crate::model::{AiJob, ai_job_cols};
use crate::{Db, DbError};

impl Db {
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
            .bind(page_limit(filter.limit))
            .bind(filter.hide_staff_only)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(AiJob::from_row)
            .collect()
        })
    }
}
