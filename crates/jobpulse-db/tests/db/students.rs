//! The excel import's primitives: per-row idempotency, duplicates, restores, enrollment.

use anyhow::Context;
use jobpulse_db::{DbError, ImportOutcome, NewAiJob, NewCredentials, StudentInput};
use jobpulse_domain::JobType;

use crate::helpers::{Backend, both, test_db};

fn input(name: &str, parent: &str) -> StudentInput {
    StudentInput {
        name: name.into(),
        phone: Some("01011112222".into()),
        parent_phone: parent.into(),
        school: Some("Hana High".into()),
        grade: Some("2".into()),
    }
}

fn creds(login: &str) -> NewCredentials {
    NewCredentials {
        login_id: login.into(),
        password: format!("pw-{login}"),
        password_hash: format!("hash-{login}"),
    }
}

async fn imports_are_idempotent_per_row(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let excel = JobType::parse("excel_parsing")?;
    let job1 =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, excel.clone()))
            .await?
            .value
            .job
            .job_id;
    let (tenant, lecture) = (a.tenant_id, a.lecture_id);

    let kim = input("김민수", "01012345678");
    let row =
        t.db.import_student_row(tenant, &job1, lecture, 2, &kim, || creds("s0001"))
            .await?;
    assert_eq!(row.outcome, ImportOutcome::Created);
    assert_eq!(row.initial_password.as_deref(), Some("pw-s0001"));

    // A retried attempt gets the recorded outcome, credentials included, and creates nothing.
    let again =
        t.db.import_student_row(tenant, &job1, lecture, 2, &kim, || creds("s9999"))
            .await?;
    assert_eq!(again, row);
    assert_eq!(t.raw_int("SELECT COUNT(*) FROM students").await?, 1);

    // Login id collision: nothing written, the caller retries with another id.
    let lee = input("이영희", "01087654321");
    let clash =
        t.db.import_student_row(tenant, &job1, lecture, 3, &lee, || creds("s0001"))
            .await;
    assert!(
        matches!(clash, Err(DbError::Duplicate("login_id"))),
        "{clash:?}"
    );
    let lee_row =
        t.db.import_student_row(tenant, &job1, lecture, 3, &lee, || creds("s0002"))
            .await?;
    assert_eq!(lee_row.outcome, ImportOutcome::Created);

    let failed =
        t.db.record_failed_row(tenant, &job1, 4, Some("박"), "parent phone is required")
            .await?;
    assert_eq!(failed.outcome, ImportOutcome::Failed);
    let failed_again =
        t.db.record_failed_row(tenant, &job1, 4, Some("박"), "other")
            .await?;
    assert_eq!(failed_again, failed);

    let rows = t.db.import_rows(&job1).await?;
    let outcomes: Vec<_> = rows.iter().map(|r| (r.row_number, r.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (2, ImportOutcome::Created),
            (3, ImportOutcome::Created),
            (4, ImportOutcome::Failed)
        ]
    );

    // A second import of the same people: duplicates; after a soft delete: restored.
    let job2 =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, excel.clone()))
            .await?
            .value
            .job
            .job_id;
    let dup =
        t.db.import_student_row(tenant, &job2, lecture, 2, &kim, || creds("never"))
            .await?;
    assert_eq!(dup.outcome, ImportOutcome::Duplicate);
    assert_eq!(dup.student_id, row.student_id);
    assert_eq!(dup.login_id.as_deref(), Some("s0001"));
    assert_eq!(dup.initial_password, None);
    let lee_id = lee_row.student_id.context("created")?;
    assert!(t.db.delete_student(tenant, lee_id).await?);
    let found =
        t.db.find_student(tenant, "이영희", "01087654321")
            .await?
            .context("soft-deleted students are still found")?;
    assert!(found.deleted_at_ms.is_some());
    let restored =
        t.db.import_student_row(tenant, &job2, lecture, 3, &lee, || creds("never"))
            .await?;
    assert_eq!(restored.outcome, ImportOutcome::Restored);
    assert_eq!(restored.student_id, Some(lee_id));

    let enrolled = t.db.list_lecture_students(tenant, lecture).await?;
    let names: Vec<_> = enrolled.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["김민수", "이영희"], "each enrolled once, by name");

    // Other tenants see nothing and cannot use this lecture.
    let other = t.db.create_tenant("b", "B").await?;
    assert!(
        t.db.list_lecture_students(other.tenant_id, lecture)
            .await?
            .is_empty()
    );
    let job3 =
        t.db.submit_ai_job(NewAiJob::new(other.tenant_id, excel))
            .await?
            .value
            .job
            .job_id;
    let r =
        t.db.import_student_row(other.tenant_id, &job3, lecture, 2, &kim, || creds("x"))
            .await;
    assert!(matches!(r, Err(DbError::NotFound("lecture"))), "{r:?}");
    assert!(
        t.db.find_student(other.tenant_id, "김민수", "01012345678")
            .await?
            .is_none()
    );
    Ok(())
}
both!(imports_are_idempotent_per_row);
