//! Migrations: applying them again (and from two handles at once) changes nothing.

use crate::helpers::{Backend, both, tenant, test_db};

async fn migrations_apply_twice(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    // `test_db` migrated once; run again, and concurrently from a second handle.
    t.db.migrate().await?;
    let other = t.second_handle().await?;
    let (a, c) = tokio::join!(t.db.migrate(), other.migrate());
    a?;
    c?;
    let applied = t
        .raw_int("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .await?;
    let versions = t
        .raw_int("SELECT COUNT(DISTINCT version) FROM _sqlx_migrations")
        .await?;
    assert_eq!(applied, versions, "each migration is recorded once");
    assert_eq!(
        applied, 8,
        "0001_init, 0002_ai_claim_order, 0003_video_uploads, 0004_enrollment_session, \
         0005_job_input_retention, 0006_ai_claim_heads, 0007_video_retry_fields and 0008_webhooks"
    );
    // The schema works after the repeated runs.
    let seed = t.db.create_tenant("acme", "Acme").await?;
    assert!(t.db.get_tenant(seed.tenant_id).await?.is_some());
    assert!(t.db.get_tenant(tenant(999)).await?.is_none());
    other.close().await;
    Ok(())
}
both!(migrations_apply_twice);

async fn ping_and_kind(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    t.db.ping().await?;
    let expected = match b {
        Backend::Postgres => jobpulse_db::DbKind::Postgres,
        Backend::Sqlite => jobpulse_db::DbKind::Sqlite,
    };
    assert_eq!(t.db.kind(), expected);
    Ok(())
}
both!(ping_and_kind);

#[tokio::test]
async fn unknown_urls_are_refused() {
    let err = jobpulse_db::Db::connect("mysql://localhost/x").await;
    assert!(matches!(err, Err(jobpulse_db::DbError::BadUrl)), "{err:?}");
}
