//! AI jobs: idempotent submit, rejection at submit, reads across tenants.

use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{Caps, DbError, NewAiJob, Queue};
use jobpulse_domain::{Fence, JobStatus, JobType};

use crate::helpers::{Backend, both, test_db};

fn excel() -> JobType {
    JobType::parse("excel_parsing").expect("valid")
}

async fn idempotent_submit(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let other = t.db.create_tenant("b", "B").await?;
    let mut new = NewAiJob::new(a.tenant_id, excel());
    new.idempotency_key = Some("upload-42".into());
    new.lecture_id = Some(a.lecture_id);
    new.payload = serde_json::json!({"sheet": 1});
    new.created_by = Some("7".into());

    let first = t.db.submit_ai_job(new.clone()).await?;
    assert!(first.value.created);
    assert_eq!(first.outbox.len(), 1);
    let job = first.value.job.clone();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.fence, Fence::new(1, 0, 1)?);
    assert_eq!(job.payload, serde_json::json!({"sheet": 1}));
    assert!(
        job.job_id.as_str().len() == 16,
        "ids are 16 url-safe characters: {}",
        job.job_id
    );

    let second = t.db.submit_ai_job(new.clone()).await?;
    assert!(!second.value.created);
    assert!(second.outbox.is_empty());
    assert_eq!(second.value.job.job_id, job.job_id);
    let rows = t.raw_int("SELECT COUNT(*) FROM ai_jobs").await?;
    assert_eq!(rows, 1);

    let mut other_type = new.clone();
    other_type.job_type = JobType::parse("ppt_generation")?;
    let r = t.db.submit_ai_job(other_type).await;
    assert!(matches!(r, Err(DbError::Conflict(_))), "{r:?}");

    // The key is per tenant.
    let mut theirs = new.clone();
    theirs.tenant = other.tenant_id;
    theirs.lecture_id = Some(other.lecture_id);
    let theirs = t.db.submit_ai_job(theirs).await?;
    assert!(theirs.value.created);
    assert_ne!(theirs.value.job.job_id, job.job_id);

    // Without a key every submit is new.
    let plain = NewAiJob::new(a.tenant_id, excel());
    let x = t.db.submit_ai_job(plain.clone()).await?.value.job.job_id;
    let y = t.db.submit_ai_job(plain).await?.value.job.job_id;
    assert_ne!(x, y);

    assert!(t.db.get_ai_job(a.tenant_id, &job.job_id).await?.is_some());
    assert!(
        t.db.get_ai_job(other.tenant_id, &job.job_id)
            .await?
            .is_none(),
        "another tenant's job is not found"
    );

    // Input checks.
    let mut bad = NewAiJob::new(a.tenant_id, excel());
    bad.lecture_id = Some(other.lecture_id);
    let r = t.db.submit_ai_job(bad).await;
    assert!(matches!(r, Err(DbError::NotFound("lecture"))), "{r:?}");
    let mut bad = NewAiJob::new(a.tenant_id, excel());
    bad.payload = serde_json::json!([1, 2]);
    assert!(matches!(
        t.db.submit_ai_job(bad).await,
        Err(DbError::Invalid(_))
    ));
    let mut bad = NewAiJob::new(a.tenant_id, excel());
    bad.max_attempts = Some(0);
    assert!(matches!(
        t.db.submit_ai_job(bad).await,
        Err(DbError::Invalid(_))
    ));

    t.drain().await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "PENDING");
    assert_eq!(
        snap.state.job_type.as_ref().map(JobType::as_str),
        Some("excel_parsing")
    );
    Ok(())
}
both!(idempotent_submit);

async fn rejected_at_submit(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let out =
        t.db.reject_ai_job(
            NewAiJob::new(a.tenant_id, excel()),
            "the file is not an .xlsx workbook",
        )
        .await?;
    let job = out.value.job;
    assert!(out.value.created);
    assert_eq!(job.status, JobStatus::RejectedBadInput);
    t.relay.publish_now(&out.outbox).await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "REJECTED_BAD_INPUT");
    assert_eq!(
        snap.state.error.as_ref().map(|e| e.as_str()),
        Some("the file is not an .xlsx workbook")
    );
    assert_eq!(
        t.db.outbox_pending().await?,
        0,
        "publish_now deleted its row"
    );
    assert!(
        t.db.claim(Queue::Ai, "w", Duration::from_secs(30), Caps::default())
            .await?
            .is_none(),
        "never queued"
    );
    Ok(())
}
both!(rejected_at_submit);

async fn jobs_are_listed_newest_first_per_tenant(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let other = t.db.create_tenant("b", "B").await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut new = NewAiJob::new(a.tenant_id, excel());
        new.idempotency_key = Some(format!("k{i}"));
        ids.push(t.db.submit_ai_job(new).await?.value.job.job_id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    t.db.submit_ai_job(NewAiJob::new(other.tenant_id, excel()))
        .await?;
    let all =
        t.db.list_ai_jobs(
            a.tenant_id,
            &jobpulse_db::AiJobFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
    let listed: Vec<_> = all.iter().map(|j| j.job_id.clone()).collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed, expected, "newest first, only tenant a's");
    // Keyset pagination continues where the first page stopped.
    let page1 =
        t.db.list_ai_jobs(
            a.tenant_id,
            &jobpulse_db::AiJobFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await?;
    let last = page1.last().context("a page")?;
    let page2 =
        t.db.list_ai_jobs(
            a.tenant_id,
            &jobpulse_db::AiJobFilter {
                limit: 10,
                before: Some((last.created_at_ms, last.job_id.clone())),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(page2.len(), 3);
    assert_eq!(page2[0].job_id, expected[2]);
    let pending =
        t.db.list_ai_jobs(
            a.tenant_id,
            &jobpulse_db::AiJobFilter {
                limit: 50,
                status: Some(JobStatus::Done),
                ..Default::default()
            },
        )
        .await?;
    assert!(pending.is_empty());
    Ok(())
}
both!(jobs_are_listed_newest_first_per_tenant);

/// The query's staff-only rule (`hide_staff_only`) is [`JobType::is_staff_only`], type by type —
/// including names where SQL's `_` wildcard would match what the rule does not.
async fn staff_only_types_are_hidden_in_the_query(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let types = [
        "excel_parsing",
        "attendance_excel_export",
        "_export",
        "ppt_generation",
        "xexport",
        "export_summary",
        "grades_exports",
        "excel_parsing2",
        "a_export_b",
    ];
    for ty in types {
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, JobType::parse(ty)?))
            .await?;
    }
    let listed = |hide: bool| {
        let db = t.db.clone();
        async move {
            let jobs = db
                .list_ai_jobs(
                    a.tenant_id,
                    &jobpulse_db::AiJobFilter {
                        limit: 200,
                        hide_staff_only: hide,
                        ..Default::default()
                    },
                )
                .await?;
            let mut names: Vec<String> = jobs.iter().map(|j| j.job_type.to_string()).collect();
            names.sort();
            anyhow::Ok(names)
        }
    };
    let mut all: Vec<String> = types.iter().map(|s| (*s).to_owned()).collect();
    all.sort();
    assert_eq!(listed(false).await?, all);
    let mut visible: Vec<String> = types
        .iter()
        .filter(|ty| !JobType::parse(ty).is_ok_and(|t| t.is_staff_only()))
        .map(|s| (*s).to_owned())
        .collect();
    visible.sort();
    assert_eq!(listed(true).await?, visible, "the SQL rule is the domain's");
    assert!(
        visible.len() >= 5 && visible.len() < types.len(),
        "{visible:?}"
    );
    Ok(())
}
both!(staff_only_types_are_hidden_in_the_query);
