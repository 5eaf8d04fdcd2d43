//! The students and enrollments of a tenant as the API and the exports read them, and the
//! soft delete.

use jobpulse_domain::TenantId;

use super::{Student, find_by_identity, student_from};
use crate::conn::{RowExt, dual, now_ms};
use crate::{Db, DbError};

impl Db {
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
