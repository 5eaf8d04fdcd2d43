//! The bench's scratch database (created beside `DATABASE_URL`'s, dropped at the end) and the
//! seeding of each round's jobs on both sides.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use jobpulse_db::{Db, NewAiJob};
use jobpulse_domain::{JobType, TenantId};
use sqlx::postgres::PgPool;
// The database name is ours (a fixed prefix and our pid), never input.
use sqlx::{AssertSqlSafe, Connection};

/// The bench's own database on the server of `admin_url`.
pub(super) struct Scratch {
    admin_url: String,
    name: String,
}

impl Scratch {
    pub(super) async fn create(admin_url: &str) -> anyhow::Result<(Self, String)> {
        let name = format!("jobpulse_queuebench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let url = crate::old_way::with_database(admin_url, &name);
        Ok((
            Self {
                admin_url: admin_url.to_owned(),
                name,
            },
            url,
        ))
    }

    pub(super) async fn drop_database(self) -> anyhow::Result<()> {
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

/// `jobs` PENDING bare rows, tenants round robin (earlier rounds' rows stay, DONE, as ours
/// do); returns the highest id before them.
pub(super) async fn seed_bare(pool: &PgPool, jobs: u64, tenants: u32) -> anyhow::Result<i64> {
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM bare_jobs")
        .fetch_one(pool)
        .await?;
    sqlx::query(
        "INSERT INTO bare_jobs (tenant_id, status, payload) \
         SELECT 1 + i % $2, 'PENDING', '{}' FROM generate_series(0, $1 - 1) i",
    )
    .bind(i64::try_from(jobs)?)
    .bind(i64::from(tenants))
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE bare_jobs")
        .execute(pool)
        .await?;
    Ok(before)
}

/// `jobs` PENDING AI jobs through `submit_ai_job`, tenants round robin, 8 submitters at once;
/// returns the highest `queue_seq` before them. `pool` is a plain pool on the same database
/// (for VACUUM and the checks).
pub(super) async fn seed_ours(
    db: &Db,
    pool: &PgPool,
    tenants: &[TenantId],
    jobs: u64,
) -> anyhow::Result<i64> {
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(queue_seq), 0) FROM ai_jobs")
        .fetch_one(pool)
        .await?;
    let job_type = JobType::parse("excel_parsing").context("job type")?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (db, next, tenants, job_type) =
            (db.clone(), next.clone(), tenants.to_vec(), job_type.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return anyhow::Ok(());
                }
                let tenant = tenants[usize::try_from(i)? % tenants.len()];
                db.submit_ai_job(NewAiJob::new(tenant, job_type.clone()))
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    // As autovacuum would have by now on a queue that ran for a while.
    sqlx::query("VACUUM ANALYZE ai_jobs").execute(pool).await?;
    sqlx::query("VACUUM ANALYZE outbox").execute(pool).await?;
    Ok(before)
}
