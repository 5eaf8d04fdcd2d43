//! Retention of the initial passwords an import issued.
//!
//! An `excel_parsing` import creates student accounts and hands their initial passwords to staff
//! (the DONE answer, the result endpoint). Until then they live, sealed ([`crate::sealed`]),
//! in two places in the database: the import's ledger (`import_rows.initial_password`, so a
//! retried attempt can report what an earlier attempt issued) and the stored full result
//! (`ai_results.result`, its `credentials_sealed`; `credentials` in results written before
//! passwords were sealed). The read model's copy is sealed too, and stops opening at the same
//! retention (it cannot be rewritten once the job is terminal).
//!
//! [`Db::purge_credentials`] removes both once the job has ended more than a retention period
//! ago: the ledger's passwords become NULL, and the result loses its `credentials` and gains
//! `"credentials_purged": true`, so the result endpoint (and the dashboard) can say why there is
//! nothing to download. Students' password hashes are untouched: the accounts keep working.
//! Workers run it periodically (`AiWorkerConfig::credentials_retention`). Every ended job
//! qualifies — DONE, FAILED, REJECTED_BAD_INPUT and the other terminal statuses alike — since a
//! failed import may have issued passwords before it failed.
//!
//! # Job inputs
//!
//! A job's uploaded input (`ai_jobs.input_file_key`: an import's spreadsheet, with names and
//! phone numbers) is needed only while an attempt may still run. [`Db::expired_job_inputs`]
//! lists the inputs of jobs that ended more than a retention ago (0 by default: as soon as the
//! job ends); the AI workers delete each object from storage and then [`Db::forget_job_input`]
//! clears the key, so a pass that fails between the two is repeated and never leaves a key to
//! a deleted object behind unnoticed. Running or waiting jobs are never listed.

use std::time::Duration;

use jobpulse_domain::{JobId, TenantId};

use crate::conn::{RowExt, dual, ms, now_ms};
use crate::{Db, DbError};

/// An ended job's input file that its retention let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredInput {
    pub job_id: JobId,
    pub tenant: TenantId,
    /// The storage key (`ai_jobs.input_file_key`).
    pub key: String,
}

/// The key a purged result carries instead of `credentials`.
pub const PURGED_KEY: &str = "credentials_purged";

impl Db {
    /// Removes the initial passwords of at most `batch` jobs that ended before `older_than` ago
    /// (see the module docs); returns how many jobs it purged. Call again while it returns
    /// `batch`. Running jobs are never touched: a retry may still need its ledger.
    pub async fn purge_credentials(
        &self,
        older_than: Duration,
        batch: u32,
    ) -> Result<u32, DbError> {
        let cutoff = now_ms().saturating_sub(ms(older_than));
        // Looked up outside a write transaction: most passes find nothing, and on SQLite a
        // write transaction would hold off every other writer meanwhile.
        let mut conn = self.read().await?;
        let ids: Vec<String> = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT j.job_id FROM ai_jobs j \
                 WHERE j.status NOT IN ('PENDING', 'RUNNING', 'RETRYING') AND j.updated_at < $1 \
                 AND EXISTS (SELECT 1 FROM import_rows r \
                             WHERE r.job_id = j.job_id AND r.initial_password IS NOT NULL) \
                 ORDER BY j.updated_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(i64::from(batch))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.text("job_id"))
            .collect::<Result<_, _>>()?
        });
        drop(conn);
        if ids.is_empty() {
            return Ok(0);
        }
        // Every statement below is idempotent, so a concurrent purge of the same job is harmless.
        let mut tx = self.begin().await?;
        for id in &ids {
            let result: Option<String> = dual!(tx.conn(), |c, d| {
                sqlx::query(
                    "UPDATE import_rows SET initial_password = NULL \
                     WHERE job_id = $1 AND initial_password IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
                sqlx::query("SELECT result FROM ai_results WHERE job_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| r.opt_text("result"))
                    .transpose()?
                    .flatten()
            });
            let Some(purged) = result.as_deref().and_then(without_credentials) else {
                continue;
            };
            dual!(tx.conn(), |c, d| {
                sqlx::query("UPDATE ai_results SET result = $1 WHERE job_id = $2")
                    .bind(&purged)
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
            });
        }
        tx.commit().await?;
        let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        if n > 0 {
            metrics::counter!("jobpulse_credentials_purged_jobs_total").increment(u64::from(n));
            tracing::info!(jobs = n, "purged the initial passwords of finished imports");
        }
        Ok(n)
    }
}

impl Db {
    /// The inputs of at most `batch` jobs that ended before `older_than` ago and still have
    /// one (oldest first); see the module docs.
    pub async fn expired_job_inputs(
        &self,
        older_than: Duration,
        batch: u32,
    ) -> Result<Vec<ExpiredInput>, DbError> {
        let cutoff = now_ms().saturating_sub(ms(older_than));
        let mut conn = self.read().await?;
        let inputs = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT job_id, tenant_id, input_file_key FROM ai_jobs \
                 WHERE input_file_key IS NOT NULL AND updated_at <= $1 \
                 AND status NOT IN ('PENDING', 'RUNNING', 'RETRYING') \
                 ORDER BY updated_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(i64::from(batch))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| {
                Ok(ExpiredInput {
                    job_id: JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt)?,
                    tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
                    key: r.text("input_file_key")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
        });
        Ok(inputs)
    }

    /// Clears an ended job's input key once its object is deleted; `false` when the job no
    /// longer holds that key (another worker was first) or is not ended.
    pub async fn forget_job_input(&self, input: &ExpiredInput) -> Result<bool, DbError> {
        let mut conn = self.read().await?;
        let n = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "UPDATE ai_jobs SET input_file_key = NULL \
                 WHERE job_id = $1 AND input_file_key = $2 \
                 AND status NOT IN ('PENDING', 'RUNNING', 'RETRYING')",
            )
            .bind(input.job_id.as_str())
            .bind(&input.key)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }
}

/// `result` without its `credentials`, marked as purged; `None` when it has none (or is not a
/// JSON object), so there is nothing to rewrite.
fn without_credentials(result: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(result).ok()?;
    let obj = v.as_object_mut()?;
    let clear = obj.remove("credentials");
    let sealed = obj.remove(crate::sealed::SEALED_CREDENTIALS_KEY);
    clear.or(sealed)?;
    obj.insert(PURGED_KEY.to_owned(), serde_json::Value::Bool(true));
    serde_json::to_string(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_credentials_go() {
        let r = r#"{"created":2,"credentials":[{"name":"김","login_id":"a","password":"p"}],"failed":[]}"#;
        let out: serde_json::Value =
            serde_json::from_str(&without_credentials(r).expect("rewritten")).expect("json");
        assert_eq!(
            out,
            serde_json::json!({"created": 2, "failed": [], "credentials_purged": true})
        );
        assert_eq!(without_credentials(r#"{"created":0}"#), None);
        let sealed = r#"{"created":1,"credentials":[],"credentials_sealed":"sealed:v1:xx"}"#;
        let out: serde_json::Value =
            serde_json::from_str(&without_credentials(sealed).expect("rewritten")).expect("json");
        assert_eq!(
            out,
            serde_json::json!({"created": 1, "credentials_purged": true})
        );
        assert_eq!(without_credentials("not json"), None);
    }
}
