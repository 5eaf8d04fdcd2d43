//! Tenants: creation with a lecture and a session, the demo tenant, codes are unique.

use jobpulse_db::DbError;

use crate::helpers::{Backend, both, test_db};

async fn tenants_and_demo(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let demo = t.db.ensure_demo_tenant().await?;
    assert_eq!(demo.tenant_id.get(), 1);
    let again = t.db.ensure_demo_tenant().await?;
    assert_eq!(demo, again, "idempotent");
    let tenant = t.db.get_tenant(demo.tenant_id).await?.expect("demo exists");
    assert_eq!(tenant.code, "demo");
    assert!(
        t.db.get_lecture(demo.tenant_id, demo.lecture_id)
            .await?
            .is_some()
    );

    // The next generated id does not collide with the explicit id 1.
    let acme = t.db.create_tenant("acme", "Acme Academy").await?;
    assert_eq!(acme.tenant_id.get(), 2);
    assert_ne!(acme.lecture_id, demo.lecture_id);
    assert!(
        t.db.get_lecture(demo.tenant_id, acme.lecture_id)
            .await?
            .is_none(),
        "another tenant's lecture is invisible"
    );
    assert_eq!(
        t.db.get_tenant_by_code("acme").await?.map(|x| x.id),
        Some(acme.tenant_id)
    );

    let (lecture, session) = t.db.create_lecture(acme.tenant_id, "Algebra II").await?;
    let got =
        t.db.get_lecture(acme.tenant_id, lecture)
            .await?
            .expect("created");
    assert_eq!(got.title, "Algebra II");
    assert!(session > acme.session_id);
    assert!(t.db.get_lecture(demo.tenant_id, lecture).await?.is_none());

    let dup = t.db.create_tenant("acme", "Other").await;
    assert!(matches!(dup, Err(DbError::Duplicate(_))), "{dup:?}");
    let bad = t.db.create_tenant("Bad Code", "x").await;
    assert!(matches!(bad, Err(DbError::Invalid(_))), "{bad:?}");
    let empty = t.db.create_tenant("ok", "   ").await;
    assert!(matches!(empty, Err(DbError::Invalid(_))), "{empty:?}");
    Ok(())
}
both!(tenants_and_demo);

async fn demo_refuses_a_taken_code(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    t.db.create_tenant("first", "First").await?; // takes id 1
    let err = t.db.ensure_demo_tenant().await;
    assert!(matches!(err, Err(DbError::Conflict(_))), "{err:?}");
    Ok(())
}
both!(demo_refuses_a_taken_code);

async fn lectures_are_listed_with_their_sessions(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let other = t.db.create_tenant("b", "B").await?;
    let (l2, s2) = t.db.create_lecture(a.tenant_id, "Geometry").await?;
    let list = t.db.list_lectures(a.tenant_id).await?;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, a.lecture_id);
    assert_eq!(list[0].sessions.len(), 1);
    assert_eq!(list[0].sessions[0].id, a.session_id);
    assert_eq!(
        (list[1].id, list[1].title.as_str(), list[1].sessions[0].id),
        (l2, "Geometry", s2)
    );
    let theirs = t.db.list_lectures(other.tenant_id).await?;
    assert_eq!(theirs.len(), 1, "only the tenant's own lectures");
    assert_eq!(theirs[0].id, other.lecture_id);
    Ok(())
}
both!(lectures_are_listed_with_their_sessions);

async fn a_lectures_sessions_are_listed_for_its_tenant_only(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let other = t.db.create_tenant("b", "B").await?;
    let sessions =
        t.db.list_lecture_sessions(a.tenant_id, a.lecture_id)
            .await?;
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].id, sessions[0].lecture_id),
        (a.session_id, a.lecture_id)
    );
    assert!(
        t.db.list_lecture_sessions(other.tenant_id, a.lecture_id)
            .await?
            .is_empty(),
        "another tenant's lecture has no sessions for you"
    );
    Ok(())
}
both!(a_lectures_sessions_are_listed_for_its_tenant_only);
