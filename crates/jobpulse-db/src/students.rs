//! Students, enrollments and the per-row ledger of spreadsheet imports.
//!
//! [`Db::import_student_row`] is the excel import's one write per sheet row: in one transaction
//! it checks whether this job already recorded the row (a retried attempt then gets the recorded
//! outcome back, credentials included, and changes nothing), finds the student by identity
//! (tenant, name, normalised parent phone — soft-deleted ones included), creates, restores or
//! reuses them, enrolls them in the lecture (and the session of the [`EnrollTarget`], when one is
//! given), and records the outcome. An import is therefore
//! idempotent per job, row by row.

use jobpulse_domain::{JobId, TenantId};
use serde::Serialize;

use crate::conn::{Conn, RowExt, dual, now_ms};
use crate::model::clean_message;
use crate::tenants::lecture_in;
use crate::{Db, DbError};

/// One sheet row, already validated and normalised by the import handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentInput {
    pub name: String,
    pub phone: Option<String>,
    /// Normalised (digits only); part of the student's identity.
    pub parent_phone: String,
    pub school: Option<String>,
    pub grade: Option<String>,
}

/// Credentials for a student this row creates. `password` is reported once in the job's full
/// result (and kept in the import ledger so a retried attempt can report it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredentials {
    pub login_id: String,
    pub password: String,
    pub password_hash: String,
}

/// What happened to one sheet row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    Created,
    Duplicate,
    Restored,
    Failed,
}

impl ImportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Duplicate => "duplicate",
            Self::Restored => "restored",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Created, Self::Duplicate, Self::Restored, Self::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One recorded row of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRow {
    pub job_id: JobId,
    /// The sheet's 1-based row number.
    pub row_number: u32,
    pub outcome: ImportOutcome,
    pub name: Option<String>,
    pub student_id: Option<i64>,
    pub login_id: Option<String>,
    /// Only for `Created`.
    pub initial_password: Option<String>,
    /// Only for `Failed`.
    pub error: Option<String>,
}

/// A student (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Student {
    pub id: i64,
    pub tenant: TenantId,
    pub name: String,
    pub phone: Option<String>,
    pub parent_phone: String,
    pub school: Option<String>,
    pub grade: Option<String>,
    pub login_id: String,
    pub created_by_job: Option<String>,
    pub deleted_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

fn student_from(r: &impl RowExt) -> Result<Student, DbError> {
    Ok(Student {
        id: r.int("id")?,
        tenant: TenantId::new(r.int("tenant_id")?).map_err(DbError::corrupt)?,
        name: r.text("name")?,
        phone: r.opt_text("phone")?,
        parent_phone: r.text("parent_phone")?,
        school: r.opt_text("school")?,
        grade: r.opt_text("grade")?,
        login_id: r.text("login_id")?,
        created_by_job: r.opt_text("created_by_job")?,
        deleted_at_ms: r.opt_int("deleted_at")?,
        created_at_ms: r.int("created_at")?,
    })
}

fn import_row_from(r: &impl RowExt) -> Result<ImportRow, DbError> {
    let outcome = r.text("outcome")?;
    Ok(ImportRow {
        job_id: JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt)?,
        row_number: u32::try_from(r.int("row_number")?).map_err(DbError::corrupt)?,
        outcome: ImportOutcome::parse(&outcome)
            .ok_or_else(|| DbError::corrupt(format!("import outcome {outcome}")))?,
        name: r.opt_text("name")?,
        student_id: r.opt_int("student_id")?,
        login_id: r.opt_text("login_id")?,
        initial_password: r.opt_text("initial_password")?,
        error: r.opt_text("error")?,
    })
}

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

/// The student with this identity, active ones first, then the oldest.
async fn find_by_identity(
    c: Conn<'_>,
    tenant: TenantId,
    name: &str,
    parent_phone: &str,
) -> Result<Option<Student>, DbError> {
    dual!(c, |c, d| {
        sqlx::query(
            "SELECT id, tenant_id, name, phone, parent_phone, school, grade, login_id, \
             created_by_job, deleted_at, created_at FROM students \
             WHERE tenant_id = $1 AND name = $2 AND parent_phone = $3 \
             ORDER BY (deleted_at IS NOT NULL), id LIMIT 1",
        )
        .bind(tenant.get())
        .bind(name)
        .bind(parent_phone)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| student_from(&r))
        .transpose()
    })
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

/// Where an import enrolls its students: a lecture and, optionally, one of its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollTarget {
    pub lecture_id: i64,
    pub session_id: Option<i64>,
}

impl From<i64> for EnrollTarget {
    /// The lecture alone (no session recorded).
    fn from(lecture_id: i64) -> Self {
        Self {
            lecture_id,
            session_id: None,
        }
    }
}

impl Db {
    /// Imports one sheet row for `job` (see the module docs). `credentials` is called only
    /// when a new student is created. A `login_id` already taken in the tenant fails with
    /// [`DbError::Duplicate`] and writes nothing: call again with other credentials. When
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

    /// The student of `tenant` with this identity (soft-deleted ones included).
    pub async fn find_student(
        &self,
        tenant: TenantId,
        name: &str,
        parent_phone: &str,
    ) -> Result<Option<Student>, DbError> {
        let mut conn = self.read().await?;
        find_by_identity(conn.conn(), tenant, name, parent_phone).await
    }

    /// Soft-deletes a student of `tenant`; `false` when there is no such active student.
    pub async fn delete_student(&self, tenant: TenantId, id: i64) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let n = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "UPDATE students SET deleted_at = $1, updated_at = $1 \
                 WHERE id = $2 AND tenant_id = $3 AND deleted_at IS NULL",
            )
            .bind(now_ms())
            .bind(id)
            .bind(tenant.get())
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The password hash (Argon2id PHC string) of the active student `login_id` of `tenant`,
    /// for a login check; `None` when there is no such active student.
    pub async fn student_password_hash(
        &self,
        tenant: TenantId,
        login_id: &str,
    ) -> Result<Option<String>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT password_hash FROM students \
                 WHERE tenant_id = $1 AND login_id = $2 AND deleted_at IS NULL",
            )
            .bind(tenant.get())
            .bind(login_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.text("password_hash"))
            .transpose()
        })
    }

    /// The session `student` was enrolled into in a lecture of `tenant`: `None` when not
    /// enrolled, `Some(None)` when enrolled without a session.
    pub async fn enrollment_session(
        &self,
        tenant: TenantId,
        lecture_id: i64,
        student_id: i64,
    ) -> Result<Option<Option<i64>>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT session_id FROM enrollments \
                 WHERE tenant_id = $1 AND lecture_id = $2 AND student_id = $3",
            )
            .bind(tenant.get())
            .bind(lecture_id)
            .bind(student_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.opt_int("session_id"))
            .transpose()
        })
    }

    /// The active students enrolled in a lecture of `tenant`, by name (attendance export).
    pub async fn list_lecture_students(
        &self,
        tenant: TenantId,
        lecture_id: i64,
    ) -> Result<Vec<Student>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT s.id, s.tenant_id, s.name, s.phone, s.parent_phone, s.school, s.grade, \
                 s.login_id, s.created_by_job, s.deleted_at, s.created_at \
                 FROM enrollments e JOIN students s ON s.id = e.student_id \
                 WHERE e.lecture_id = $1 AND e.tenant_id = $2 AND s.tenant_id = $2 \
                 AND s.deleted_at IS NULL ORDER BY s.name, s.id",
            )
            .bind(lecture_id)
            .bind(tenant.get())
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(student_from)
            .collect()
        })
    }
}

impl ImportRow {
    fn empty(job: &JobId, row_number: u32, name: &str) -> Self {
        Self {
            job_id: job.clone(),
            row_number,
            outcome: ImportOutcome::Failed,
            name: (!name.is_empty()).then(|| name.to_owned()),
            student_id: None,
            login_id: None,
            initial_password: None,
            error: None,
        }
    }
}
