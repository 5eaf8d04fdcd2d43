//! The excel import's writes: one transaction per sheet row ([`Db::import_student_row`]), the
//! failed rows, and the job's import ledger read back ([`Db::import_rows`]).

use jobpulse_domain::{JobId, TenantId};

use super::{
    EnrollTarget, ImportOutcome, ImportRow, NewCredentials, StudentInput, find_by_identity,
    import_row_from,
};
use crate::conn::{Conn, RowExt, dual, now_ms};
use crate::model::clean_message;
use crate::tenants::lecture_in;
use crate::{Db, DbError};

async fn recorded_row(
    c: Conn<'_>,
    job: &JobId,
    row_number: u32,
) -> Result<Option<ImportRow>, DbError> {
    dual!(c, |c, d| {
        sqlx::query(
            "SELECT job_id, row_number, outcome, name, student_id, login_id, initial_password, \
             error FROM import_rows WHERE job_id = $1 AND row_number = $2",
        )
        .bind(job.as_str())
        .bind(i64::from(row_number))
        .fetch_optional(&mut *c)
        .await?
        .map(|r| import_row_from(&r))
        .transpose()
    })
}

async fn record_row(c: Conn<'_>, tenant: TenantId, row: &ImportRow) -> Result<(), DbError> {
    dual!(c, |c, d| {
        sqlx::query(
            "INSERT INTO import_rows (job_id, row_number, tenant_id, outcome, name, student_id, \
             login_id, initial_password, error, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(row.job_id.as_str())
        .bind(i64::from(row.row_number))
        .bind(tenant.get())
        .bind(row.outcome.as_str())
        .bind(row.name.as_deref())
        .bind(row.student_id)
        .bind(row.login_id.as_deref())
        .bind(row.initial_password.as_deref())
        .bind(row.error.as_deref())
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Enrolls a student (already enrolled in the lecture: unchanged, except that an enrollment
/// without a session gets the target's).
async fn enroll(
    c: Conn<'_>,
    tenant: TenantId,
    target: EnrollTarget,
    student_id: i64,
) -> Result<(), DbError> {
    dual!(c, |c, d| {
        sqlx::query(
            "INSERT INTO enrollments (tenant_id, lecture_id, student_id, session_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (lecture_id, student_id) \
             DO UPDATE SET session_id = COALESCE(enrollments.session_id, excluded.session_id)",
        )
        .bind(tenant.get())
        .bind(target.lecture_id)
        .bind(student_id)
        .bind(target.session_id)
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Whether `session` is a session of `lecture` in `tenant`.
async fn session_in(
    c: Conn<'_>,
    tenant: TenantId,
    lecture_id: i64,
    session_id: i64,
) -> Result<bool, DbError> {
    dual!(c, |c, d| {
        sqlx::query("SELECT id FROM sessions WHERE id = $1 AND lecture_id = $2 AND tenant_id = $3")
            .bind(session_id)
            .bind(lecture_id)
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await
            .map(|r| r.is_some())
            .map_err(DbError::from)
    })
}

impl Db {
    /// Imports one sheet row for `job` (see the [`students`](super) module docs). `credentials`
    /// is called only when a new student is created. A `login_id` already taken in the tenant
    /// fails with [`DbError::Duplicate`] and writes nothing: call again with other credentials. When
    /// `credentials` gives `None` (the row has nothing to make a password from), the row may
    /// only find an existing student: a new one fails with `DbError::NotFound("credentials")`
    /// and writes nothing.
    pub async fn import_student_row<F, C>(
        &self,
        tenant: TenantId,
        job: &JobId,
        target: impl Into<EnrollTarget>,
        row_number: u32,
        input: &StudentInput,
        credentials: F,
    ) -> Result<ImportRow, DbError>
    where
        F: FnOnce() -> C + Send,
        C: Into<Option<NewCredentials>>,
    {
        let mut tx = self.begin().await?;
        if let Some(done) = recorded_row(tx.conn(), job, row_number).await? {
            tx.commit().await?;
            return Ok(done);
        }
        let target = target.into();
        if lecture_in(tx.conn(), tenant, target.lecture_id)
            .await?
            .is_none()
        {
            return Err(DbError::NotFound("lecture"));
        }
        if let Some(session) = target.session_id
            && !session_in(tx.conn(), tenant, target.lecture_id, session).await?
        {
            return Err(DbError::NotFound("session"));
        }
        let now = now_ms();
        let existing =
            find_by_identity(tx.conn(), tenant, &input.name, &input.parent_phone).await?;
        let row = match existing {
            Some(s) if s.deleted_at_ms.is_none() => ImportRow {
                outcome: ImportOutcome::Duplicate,
                student_id: Some(s.id),
                login_id: Some(s.login_id),
                ..ImportRow::empty(job, row_number, &input.name)
            },
            Some(s) => {
                dual!(tx.conn(), |c, d| {
                    sqlx::query(
                        "UPDATE students SET deleted_at = NULL, updated_at = $1 WHERE id = $2",
                    )
                    .bind(now)
                    .bind(s.id)
                    .execute(&mut *c)
                    .await?;
                });
                ImportRow {
                    outcome: ImportOutcome::Restored,
                    student_id: Some(s.id),
                    login_id: Some(s.login_id),
                    ..ImportRow::empty(job, row_number, &input.name)
                }
            }
            None => {
                let cred = credentials()
                    .into()
                    .ok_or(DbError::NotFound("credentials"))?;
                let id = dual!(tx.conn(), |c, d| {
                    sqlx::query(
                        "INSERT INTO students (tenant_id, name, phone, parent_phone, school, \
                         grade, login_id, password_hash, created_by_job, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
                         ON CONFLICT (tenant_id, login_id) DO NOTHING RETURNING id",
                    )
                    .bind(tenant.get())
                    .bind(&input.name)
                    .bind(input.phone.as_deref())
                    .bind(&input.parent_phone)
                    .bind(input.school.as_deref())
                    .bind(input.grade.as_deref())
                    .bind(&cred.login_id)
                    .bind(&cred.password_hash)
                    .bind(job.as_str())
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| r.int("id"))
                    .transpose()?
                });
                let id = id.ok_or(DbError::Duplicate("login_id"))?;
                ImportRow {
                    outcome: ImportOutcome::Created,
                    student_id: Some(id),
                    login_id: Some(cred.login_id),
                    initial_password: Some(cred.password),
                    ..ImportRow::empty(job, row_number, &input.name)
                }
            }
        };
        if let Some(id) = row.student_id {
            enroll(tx.conn(), tenant, target, id).await?;
        }
        record_row(tx.conn(), tenant, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records a sheet row that could not be imported (idempotent: a row already recorded for
    /// this job is returned unchanged).
    pub async fn record_failed_row(
        &self,
        tenant: TenantId,
        job: &JobId,
        row_number: u32,
        name: Option<&str>,
        error: &str,
    ) -> Result<ImportRow, DbError> {
        let mut tx = self.begin().await?;
        if let Some(done) = recorded_row(tx.conn(), job, row_number).await? {
            tx.commit().await?;
            return Ok(done);
        }
        let row = ImportRow {
            outcome: ImportOutcome::Failed,
            name: name.map(str::to_owned),
            error: Some(clean_message(error)),
            ..ImportRow::empty(job, row_number, "")
        };
        record_row(tx.conn(), tenant, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Every row recorded for `job`, in sheet order (to build the job's result, also after a
    /// retried attempt).
    pub async fn import_rows(&self, job: &JobId) -> Result<Vec<ImportRow>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT job_id, row_number, outcome, name, student_id, login_id, \
                 initial_password, error FROM import_rows WHERE job_id = $1 ORDER BY row_number",
            )
            .bind(job.as_str())
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(import_row_from)
            .collect()
        })
    }
}
