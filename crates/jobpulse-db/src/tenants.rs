//! Tenants, their lectures and sessions.

use jobpulse_domain::TenantId;

use crate::conn::{Conn, Dialect, RowExt, dual, now_ms};
use crate::model::{Lecture, Session, Tenant, TenantSeed};
use crate::{Db, DbError};

/// The demo tenant `jobpulse up` creates on an empty database (docs/contract.md §6).
pub const DEMO_TENANT_ID: i64 = 1;
pub const DEMO_TENANT_CODE: &str = "demo";

fn check_code(code: &str) -> Result<(), DbError> {
    let ok = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(
            "tenant code must be 1 to 64 characters of a-z, 0-9, '_' or '-'".into(),
        ))
    }
}

pub(crate) fn check_title(s: &str, field: &str) -> Result<String, DbError> {
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 || n > 200 || t.chars().any(char::is_control) {
        return Err(DbError::Invalid(format!(
            "{field} must be 1 to 200 printable characters"
        )));
    }
    Ok(t.to_owned())
}

fn tenant_from(r: &impl RowExt) -> Result<Tenant, DbError> {
    Ok(Tenant {
        id: TenantId::new(r.int("id")?).map_err(DbError::corrupt)?,
        code: r.text("code")?,
        name: r.text("name")?,
        created_at_ms: r.int("created_at")?,
    })
}

/// Inserts a lecture and a session under it; returns their ids.
async fn seed_lecture(
    mut c: Conn<'_>,
    tenant: i64,
    lecture: &str,
    session: &str,
) -> Result<(i64, i64), DbError> {
    let now = now_ms();
    let lecture_id = dual!(c.reborrow(), |c, d| {
        sqlx::query(
            "INSERT INTO lectures (tenant_id, title, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(tenant)
        .bind(lecture)
        .bind(now)
        .fetch_one(&mut *c)
        .await?
        .int("id")?
    });
    let session_id = dual!(c, |c, d| {
        sqlx::query(
            "INSERT INTO sessions (tenant_id, lecture_id, title, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(tenant)
        .bind(lecture_id)
        .bind(session)
        .bind(now)
        .fetch_one(&mut *c)
        .await?
        .int("id")?
    });
    Ok((lecture_id, session_id))
}

impl Db {
    /// Creates a tenant with one lecture and one session (`jobpulse tenant add`).
    pub async fn create_tenant(&self, code: &str, name: &str) -> Result<TenantSeed, DbError> {
        check_code(code)?;
        let name = check_title(name, "tenant name")?;
        let mut tx = self.begin().await?;
        let id = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO tenants (code, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (code) DO NOTHING RETURNING id",
            )
            .bind(code)
            .bind(&name)
            .bind(now_ms())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.int("id"))
            .transpose()?
        });
        let id = id.ok_or(DbError::Duplicate("tenant code"))?;
        let (lecture_id, session_id) =
            seed_lecture(tx.conn(), id, "Lecture 1", "Session 1").await?;
        tx.commit().await?;
        Ok(TenantSeed {
            tenant_id: TenantId::new(id).map_err(DbError::corrupt)?,
            lecture_id,
            session_id,
        })
    }

    /// Makes sure the demo tenant (id 1, code `demo`) exists with a lecture and a session, and
    /// returns them. Idempotent; refuses (`Conflict`) when id 1 or code `demo` belong to
    /// something else.
    pub async fn ensure_demo_tenant(&self) -> Result<TenantSeed, DbError> {
        let mut tx = self.begin().await?;
        let dialect = tx.dialect();
        let existing = dual!(tx.conn(), |c, d| {
            sqlx::query("SELECT id, code FROM tenants WHERE id = $1 OR code = $2 ORDER BY id")
                .bind(DEMO_TENANT_ID)
                .bind(DEMO_TENANT_CODE)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| Ok((r.int("id")?, r.text("code")?)))
                .collect::<Result<Vec<_>, DbError>>()?
        });
        match existing.as_slice() {
            [] => {
                dual!(tx.conn(), |c, d| {
                    sqlx::query(
                        "INSERT INTO tenants (id, code, name, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(DEMO_TENANT_ID)
                    .bind(DEMO_TENANT_CODE)
                    .bind("Demo academy")
                    .bind(now_ms())
                    .execute(&mut *c)
                    .await?;
                });
                if dialect == Dialect::Postgres {
                    // An explicit id does not advance the identity sequence; move it past it so
                    // the next generated id does not collide.
                    dual!(tx.conn(), |c, d| {
                        sqlx::query(
                            "SELECT setval(pg_get_serial_sequence('tenants', 'id'), \
                             (SELECT MAX(id) FROM tenants))",
                        )
                        .execute(&mut *c)
                        .await?;
                    });
                }
            }
            [(id, code)] if *id == DEMO_TENANT_ID && code == DEMO_TENANT_CODE => {}
            _ => {
                return Err(DbError::Conflict(
                    "tenant id 1 or code 'demo' already belongs to another tenant".into(),
                ));
            }
        }
        let seeded = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "SELECT s.lecture_id, s.id FROM sessions s \
                 WHERE s.tenant_id = $1 ORDER BY s.id LIMIT 1",
            )
            .bind(DEMO_TENANT_ID)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| Ok::<_, DbError>((r.int("lecture_id")?, r.int("id")?)))
            .transpose()?
        });
        let (lecture_id, session_id) = match seeded {
            Some(ids) => ids,
            None => seed_lecture(tx.conn(), DEMO_TENANT_ID, "Demo lecture", "Demo session").await?,
        };
        tx.commit().await?;
        Ok(TenantSeed {
            tenant_id: TenantId::new(DEMO_TENANT_ID).map_err(DbError::corrupt)?,
            lecture_id,
            session_id,
        })
    }

    pub async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query("SELECT id, code, name, created_at FROM tenants WHERE id = $1")
                .bind(id.get())
                .fetch_optional(&mut *c)
                .await?
                .map(|r| tenant_from(&r))
                .transpose()
        })
    }

    pub async fn get_tenant_by_code(&self, code: &str) -> Result<Option<Tenant>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query("SELECT id, code, name, created_at FROM tenants WHERE code = $1")
                .bind(code)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| tenant_from(&r))
                .transpose()
        })
    }

    /// A lecture of `tenant` (another tenant's id → `None`).
    pub async fn get_lecture(&self, tenant: TenantId, id: i64) -> Result<Option<Lecture>, DbError> {
        let mut conn = self.read().await?;
        lecture_in(conn.conn(), tenant, id).await
    }

    /// The sessions of a lecture of `tenant`, oldest first (another tenant's lecture → none).
    pub async fn list_lecture_sessions(
        &self,
        tenant: TenantId,
        lecture_id: i64,
    ) -> Result<Vec<Session>, DbError> {
        let mut conn = self.read().await?;
        dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT id, lecture_id, title, created_at FROM sessions \
                 WHERE lecture_id = $1 AND tenant_id = $2 ORDER BY id",
            )
            .bind(lecture_id)
            .bind(tenant.get())
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| {
                Ok(Session {
                    id: r.int("id")?,
                    lecture_id: r.int("lecture_id")?,
                    title: r.text("title")?,
                    created_at_ms: r.int("created_at")?,
                })
            })
            .collect()
        })
    }

    /// Adds a session to a lecture of `tenant`; `None` when the tenant has no such lecture.
    pub async fn create_session(
        &self,
        tenant: TenantId,
        lecture_id: i64,
        title: &str,
    ) -> Result<Option<i64>, DbError> {
        let title = check_title(title, "session title")?;
        let mut tx = self.begin().await?;
        if lecture_in(tx.conn(), tenant, lecture_id).await?.is_none() {
            return Ok(None);
        }
        let id = dual!(tx.conn(), |c, d| {
            sqlx::query(
                "INSERT INTO sessions (tenant_id, lecture_id, title, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(tenant.get())
            .bind(lecture_id)
            .bind(&title)
            .bind(now_ms())
            .fetch_one(&mut *c)
            .await?
            .int("id")?
        });
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Adds a lecture (with one session) to a tenant.
    pub async fn create_lecture(
        &self,
        tenant: TenantId,
        title: &str,
    ) -> Result<(i64, i64), DbError> {
        let title = check_title(title, "lecture title")?;
        let mut tx = self.begin().await?;
        let ids = seed_lecture(tx.conn(), tenant.get(), &title, "Session 1").await?;
        tx.commit().await?;
        Ok(ids)
    }
}

pub(crate) async fn lecture_in(
    c: Conn<'_>,
    tenant: TenantId,
    id: i64,
) -> Result<Option<Lecture>, DbError> {
    dual!(c, |c, d| {
        sqlx::query("SELECT id, tenant_id, title FROM lectures WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant.get())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| {
                Ok(Lecture {
                    id: r.int("id")?,
                    tenant,
                    title: r.text("title")?,
                })
            })
            .transpose()
    })
}

/// A lecture with its sessions (for pickers in the dashboard).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LectureSessions {
    pub id: i64,
    pub title: String,
    pub sessions: Vec<Session>,
}

impl Db {
    /// The lectures of `tenant` with their sessions, oldest first (at most 500 lectures).
    pub async fn list_lectures(&self, tenant: TenantId) -> Result<Vec<LectureSessions>, DbError> {
        let mut conn = self.read().await?;
        type Row = (i64, String, Option<i64>, Option<String>, Option<i64>);
        let rows: Vec<Row> = dual!(conn.conn(), |c, d| {
            sqlx::query(
                "SELECT l.id AS lecture_id, l.title AS lecture_title, s.id AS session_id, \
                 s.title AS session_title, s.created_at AS session_created \
                 FROM (SELECT id, title FROM lectures WHERE tenant_id = $1 \
                 ORDER BY id LIMIT 500) l LEFT JOIN sessions s ON s.lecture_id = l.id \
                 ORDER BY l.id, s.id",
            )
            .bind(tenant.get())
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.int("lecture_id")?,
                    r.text("lecture_title")?,
                    r.opt_int("session_id")?,
                    r.opt_text("session_title")?,
                    r.opt_int("session_created")?,
                ))
            })
            .collect::<Result<Vec<_>, DbError>>()?
        });
        let mut out: Vec<LectureSessions> = Vec::new();
        for (id, title, sid, stitle, screated) in rows {
            if out.last().is_none_or(|l| l.id != id) {
                out.push(LectureSessions {
                    id,
                    title,
                    sessions: Vec::new(),
                });
            }
            if let (Some(sid), Some(stitle), Some(l)) = (sid, stitle, out.last_mut()) {
                l.sessions.push(Session {
                    id: sid,
                    lecture_id: id,
                    title: stitle,
                    created_at_ms: screated.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}
