//! Repair: after the read model lost everything, the database rebuilds it exactly; the
//! reconciler notices the loss by itself; read-repair is bounded.

use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{AiOutcome, Caps, NewAiJob, Queue};
use jobpulse_domain::{JobResult, JobStatus, JobType, TaskKey};
use jobpulse_store::StatusStore;
use jobpulse_sync::{ReadRepairConfig, Reconciler, read_repair, repair};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestDb, both, eventually, mismatches, test_db};

const LEASE: Duration = Duration::from_secs(30);

/// Every kind of record: each video status, a deleted video, each job status. Returns the keys
/// that must be visible and the key of the deleted video.
async fn every_kind_of_record(t: &TestDb) -> anyhow::Result<(Vec<TaskKey>, TaskKey)> {
    let a = t.db.create_tenant("a", "A").await?;
    let b = t.db.create_tenant("b", "B").await?;
    let mut keys = Vec::new();
    let mut videos = Vec::new();
    for (tenant, n) in [(a.tenant_id, 7), (b.tenant_id, 2)] {
        for i in 0..n {
            let v =
                t.db.create_video(tenant, None, &format!("v{i}"), "k")
                    .await?
                    .value;
            videos.push(v.key());
        }
    }
    keys.extend(videos.iter().cloned());
    // READY, RETRY_WAIT, FAILED, PROCESSING, READY-then-deleted; the rest stay UPLOADED.
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.complete_video(&c, "hls/1.m3u8", 10, 4).await?;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.fail(&c, "flaky", true).await?;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.fail(&c, "broken", false).await?;
    t.db.claim(Queue::Video, "w", LEASE, Caps::default())
        .await?
        .context("job")?;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.complete_video(&c, "hls/2.m3u8", 10, 2).await?;
    let deleted = c.key.clone();
    let jobpulse_domain::TaskId::Video(id) = deleted.task else {
        anyhow::bail!("video key expected");
    };
    // Fair claiming gave this slot to tenant b (a already runs a job).
    t.db.delete_video(c.tenant, id).await?;
    keys.retain(|k| *k != deleted);

    let excel = JobType::parse("excel_parsing")?;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(
            t.db.submit_ai_job(NewAiJob::new(a.tenant_id, excel.clone()))
                .await?
                .value
                .job
                .key(),
        );
    }
    let rejected =
        t.db.reject_ai_job(NewAiJob::new(b.tenant_id, excel.clone()), "empty sheet")
            .await?;
    jobs.push(rejected.value.job.key());
    // DONE with a result, RETRYING, FAILED, RUNNING; one stays PENDING.
    let c =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.complete_ai_job(
        &c,
        AiOutcome::done(
            serde_json::json!({"created": 2, "credentials": []}),
            JobResult::summary_with_full(serde_json::json!({"created": 2}))?,
        ),
        7,
    )
    .await?;
    let c =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.fail(&c, "timeout", true).await?;
    let c =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.complete_ai_job(
        &c,
        AiOutcome {
            status: JobStatus::ReviewRequired,
            full_result: None,
            read_result: None,
            error_message: Some("3 rows need a look".into()),
        },
        3,
    )
    .await?;
    t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
        .await?
        .context("job")?;
    keys.extend(jobs);
    Ok((keys, deleted))
}

async fn repair_restores_every_record(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let (keys, deleted) = every_kind_of_record(&t).await?;
    t.drain().await?;
    assert_eq!(
        mismatches(&t.db, t.memory.as_ref(), &keys).await?,
        Vec::<String>::new(),
        "the relay published every change"
    );

    t.memory.clear();
    assert!(t.memory.is_empty());
    let report = repair(&t.db, t.memory.as_ref(), None).await?;
    assert_eq!(report.videos + report.jobs, keys.len() as u64);
    assert_eq!(report.tombstones, 1);
    assert_eq!(report.rejected, 0);
    let bad = mismatches(&t.db, t.memory.as_ref(), &keys).await?;
    assert_eq!(bad, Vec::<String>::new(), "0 mismatches after repair");
    assert!(
        t.memory.get(&deleted).await?.is_none(),
        "deleted stays hidden"
    );

    // Idempotent: a second pass finds everything current.
    let again = repair(&t.db, t.memory.as_ref(), None).await?;
    assert_eq!(again.applied, 0);
    assert_eq!(again.stale, report.applied);

    // A retention window leaves old terminal records out but keeps live ones.
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.memory.clear();
    let recent = repair(&t.db, t.memory.as_ref(), Some(Duration::from_millis(10))).await?;
    assert!(recent.videos + recent.jobs < keys.len() as u64);
    let mut live = 0;
    for k in &keys {
        let Some(w) = t.db.current_write(k).await? else {
            continue;
        };
        let jobpulse_domain::WriteKind::Set(state) = &w.kind else {
            continue;
        };
        let got = t.memory.get(k).await?;
        if state.status.is_terminal() {
            assert!(got.is_none(), "{k}: old terminal record left out");
        } else {
            live += 1;
            assert!(got.is_some(), "{k}: live record rebuilt");
        }
    }
    assert_eq!(live, recent.videos + recent.jobs);
    Ok(())
}
both!(repair_restores_every_record);

async fn repair_is_safe_while_workers_run(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.drain().await?;
    // The worker's own progress write (seq 2) is newer than the claim's state change.
    let mut state = jobpulse_domain::State::video(jobpulse_domain::VideoStatus::Processing);
    state.percent = jobpulse_domain::Percent::new(57)?;
    let progress = c.progress_write(jobpulse_db::Claim::FIRST_PROGRESS_SEQ, state)?;
    t.memory.apply(&progress).await?;
    let report = repair(&t.db, t.memory.as_ref(), None).await?;
    assert_eq!((report.applied, report.stale), (0, 1));
    let snap = t.snapshot(&v.key()).await?.context("kept")?;
    assert_eq!(
        snap.state.percent.get(),
        57,
        "repair never moves a running task back"
    );
    Ok(())
}
both!(repair_is_safe_while_workers_run);

async fn the_reconciler_repairs_after_a_loss(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let (keys, _) = every_kind_of_record(&t).await?;
    t.drain().await?;
    let token = CancellationToken::new();
    let task = tokio::spawn(
        Reconciler::new(t.db.clone(), t.shared_store())
            .interval(Duration::from_millis(50))
            .run(token.clone()),
    );
    t.store.lose_data();
    assert!(t.memory.is_empty());
    eventually(
        Duration::from_secs(5),
        "the reconciler to repair",
        || async {
            Ok(mismatches(&t.db, t.memory.as_ref(), &keys)
                .await?
                .is_empty())
        },
    )
    .await?;
    token.cancel();
    task.await?;
    Ok(())
}
both!(the_reconciler_repairs_after_a_loss);

async fn read_repair_is_bounded(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let mut keys = Vec::new();
    for i in 0..25 {
        keys.push(
            t.db.create_video(a.tenant_id, None, &format!("v{i}"), "k")
                .await?
                .value
                .key(),
        );
    }
    t.drain().await?;
    t.memory.clear();

    // Rate limit: 20 per tenant per second; the rest is dropped without blocking.
    let (handle, task) = read_repair(t.db.clone(), t.shared_store(), ReadRepairConfig::default());
    let accepted = keys.iter().filter(|k| handle.request((*k).clone())).count();
    assert_eq!(accepted, 20);
    let token = CancellationToken::new();
    let worker = tokio::spawn(task.run(token.clone()));
    eventually(
        Duration::from_secs(5),
        "20 records read-repaired",
        || async { Ok(t.memory.len() == 20) },
    )
    .await?;
    assert_eq!(
        mismatches(&t.db, t.memory.as_ref(), &keys[..20]).await?,
        Vec::<String>::new()
    );
    token.cancel();
    worker.await?;

    // A full queue drops requests instead of waiting.
    let (small, _idle_task) = read_repair(
        t.db.clone(),
        t.shared_store(),
        ReadRepairConfig {
            capacity: 2,
            ..ReadRepairConfig::default()
        },
    );
    let accepted = keys
        .iter()
        .take(5)
        .filter(|k| small.request((*k).clone()))
        .count();
    assert_eq!(accepted, 2);
    Ok(())
}
both!(read_repair_is_bounded);
