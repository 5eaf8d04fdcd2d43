//! The baseline: how the old system answered a poll — from PostgreSQL.
//!
//! Per request it verified the token, looked the membership up in the primary database (the
//! tenant check) and read the video joined to its session and lecture (the tenant lives on the
//! lecture). We rebuild exactly that, in a throwaway database, behind the same server stack, so
//! the comparison isolates where the answer comes from.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jobpulse_api::auth::{Audience, Verifier};
use sqlx::postgres::{PgPool, PgPoolOptions};
// The database name is ours (a fixed prefix and our pid), never input.
use sqlx::{AssertSqlSafe, Connection, Row};

#[derive(Clone)]
struct OldState {
    pool: PgPool,
    auth: Arc<Verifier>,
}

/// A throwaway database with the old schema, dropped by [`OldWay::drop_database`].
pub struct OldWay {
    admin_url: String,
    name: String,
    pub pool: PgPool,
}

impl OldWay {
    pub async fn create(
        admin_url: &str,
        tenants: i64,
        videos_per_tenant: i64,
    ) -> anyhow::Result<OldWay> {
        let name = format!("jobpulse_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
            .execute(&mut admin)
            .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let url = with_database(admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&url)
            .await?;
        for stmt in [
            "CREATE TABLE lectures (id BIGSERIAL PRIMARY KEY, tenant_id BIGINT NOT NULL, title TEXT NOT NULL)",
            "CREATE TABLE sessions (id BIGSERIAL PRIMARY KEY, lecture_id BIGINT NOT NULL REFERENCES lectures(id), title TEXT NOT NULL)",
            "CREATE TABLE videos (id BIGSERIAL PRIMARY KEY, session_id BIGINT NOT NULL REFERENCES sessions(id), status TEXT NOT NULL, encoding_progress INT NOT NULL, remaining_seconds INT, step_index INT, step_total INT, step_name TEXT, step_percent INT, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE memberships (user_id BIGINT NOT NULL, tenant_id BIGINT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, tenant_id))",
            "CREATE INDEX ON videos (session_id)",
            "CREATE INDEX ON sessions (lecture_id)",
        ] {
            sqlx::query(stmt).execute(&pool).await?;
        }
        for t in 1..=tenants {
            sqlx::query(
                "INSERT INTO memberships (user_id, tenant_id, role) VALUES (7, $1, 'teacher')",
            )
            .bind(t)
            .execute(&pool)
            .await?;
            let lecture: i64 = sqlx::query(
                "INSERT INTO lectures (tenant_id, title) VALUES ($1, 'lecture') RETURNING id",
            )
            .bind(t)
            .fetch_one(&pool)
            .await?
            .get(0);
            let session: i64 = sqlx::query(
                "INSERT INTO sessions (lecture_id, title) VALUES ($1, 'session') RETURNING id",
            )
            .bind(lecture)
            .fetch_one(&pool)
            .await?
            .get(0);
            sqlx::query(
                "INSERT INTO videos (session_id, status, encoding_progress, remaining_seconds, step_index, step_total, step_name, step_percent) \
                 SELECT $1, 'PROCESSING', 57, 84, 4, 7, '인코딩', 40 FROM generate_series(1, $2)",
            )
            .bind(session)
            .bind(videos_per_tenant)
            .execute(&pool)
            .await?;
        }
        sqlx::query("ANALYZE").execute(&pool).await?;
        Ok(OldWay {
            admin_url: admin_url.to_owned(),
            name,
            pool,
        })
    }

    pub fn router(&self, auth: Arc<Verifier>) -> Router {
        Router::new()
            .route("/old/api/v1/media/videos/{id}/progress/", get(old_progress))
            .with_state(OldState {
                pool: self.pool.clone(),
                auth,
            })
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

pub(crate) fn with_database(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => format!("{url}/{db}"),
    }
}

async fn old_progress(
    State(st): State<OldState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(p) = st.auth.authenticate(&headers, Audience::Browser) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(id) = id.parse::<i64>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let user: i64 = p
        .user_id
        .as_deref()
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let member = sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND tenant_id = $2")
        .bind(user)
        .bind(p.tenant.get())
        .fetch_optional(&st.pool)
        .await;
    match member {
        Ok(Some(_)) => {}
        Ok(None) => return StatusCode::FORBIDDEN.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
    let row = sqlx::query(
        "SELECT v.status, v.encoding_progress, v.remaining_seconds, v.step_index, v.step_total, v.step_name, v.step_percent \
         FROM videos v JOIN sessions s ON s.id = v.session_id JOIN lectures l ON l.id = s.lecture_id \
         WHERE v.id = $1 AND l.tenant_id = $2",
    )
    .bind(id)
    .bind(p.tenant.get())
    .fetch_optional(&st.pool)
    .await;
    let body = match row {
        Ok(Some(r)) => serde_json::json!({
            "id": id,
            "status": r.get::<String, _>(0),
            "progress": r.get::<i32, _>(1),
            "encoding_progress": r.get::<i32, _>(1),
            "encoding_remaining_seconds": r.get::<Option<i32>, _>(2),
            "encoding_step_index": r.get::<Option<i32>, _>(3),
            "encoding_step_total": r.get::<Option<i32>, _>(4),
            "encoding_step_name": r.get::<Option<String>, _>(5),
            "encoding_step_percent": r.get::<Option<i32>, _>(6),
        }),
        Ok(None) => serde_json::json!({"id": id, "status": "UNKNOWN"}),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    (
        [("content-type", "application/json"), ("retry-after", "3")],
        body.to_string(),
    )
        .into_response()
}
