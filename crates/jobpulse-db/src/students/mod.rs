//! Students, enrollments and the per-row ledger of spreadsheet imports.
//!
//! [`Db::import_student_row`](crate::Db::import_student_row) is the excel import's one write per
//! sheet row: in one transaction it checks whether this job already recorded the row (a retried
//! attempt then gets the recorded outcome back, credentials included, and changes nothing), finds
//! the student by identity (tenant, name, normalised parent phone — soft-deleted ones included),
//! creates, restores or reuses them, enrolls them in the lecture (and the session of the
//! [`EnrollTarget`], when one is given), and records the outcome. An import is therefore
//! idempotent per job, row by row.
//!
//! The submodules: `import` (the import's row-by-row writes and its ledger) and `roster` (the
//! students and enrollments as the API and the exports read them).

mod import;
mod roster;

use jobpulse_domain::{JobId, TenantId};
use serde::Serialize;

use crate::DbError;
use crate::conn::{Conn, RowExt, dual};

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
