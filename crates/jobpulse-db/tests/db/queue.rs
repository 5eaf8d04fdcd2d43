//! The queue: exclusive claims under concurrency, leases and zombies, the reaper, retries with
//! backoff, dead jobs, caps, and cancel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::{
    AiOutcome, CancelOutcome, Caps, Claim, ClaimedTask, Db, DbError, FailOutcome, Heartbeat,
    NewAiJob, Queue, ReleaseOutcome, VideoJobState,
};
use jobpulse_domain::{Fence, JobResult, JobStatus, JobType, VideoStatus};

use crate::helpers::{Backend, backoff_options, both, test_db, test_db_with, test_options};

const LEASE: Duration = Duration::from_secs(30);

fn job_type() -> JobType {
    JobType::parse("excel_parsing").expect("valid")
}

fn video_job_id(c: &Claim) -> i64 {
    match &c.task {
        ClaimedTask::Video { job_id, .. } => *job_id,
        ClaimedTask::Ai(_) => -1,
    }
}

/// Claims within `timeout` (jobs in backoff become runnable later).
async fn claim_soon(db: &Db, q: Queue, worker: &str, lease: Duration) -> anyhow::Result<Claim> {
    // Far longer than any backoff of these tests (≤ 300 ms), for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(c) = db.claim(q, worker, lease, Caps::default()).await? {
            return Ok(c);
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing to claim within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

async fn concurrent_claimers_never_share_a_job(b: Backend) -> anyhow::Result<()> {
    const WORKERS: usize = 8;
    const JOBS: usize = WORKERS * 50;
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let mut videos = Vec::new();
    for i in 0..JOBS {
        let v =
            t.db.create_video(a.tenant_id, None, &format!("v{i}"), "k")
                .await?;
        videos.push(v.value);
    }
    let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let claims: Arc<Mutex<Vec<(i64, u32, String)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let db = t.db.clone();
        let in_flight = in_flight.clone();
        let claims = claims.clone();
        tasks.spawn(async move {
            let worker = format!("w{w}");
            while let Some(c) = db
                .claim(Queue::Video, &worker, LEASE, Caps::default())
                .await?
            {
                let id = video_job_id(&c);
                let fresh = in_flight.lock().expect("lock").insert(id);
                anyhow::ensure!(fresh, "job {id} claimed while another lease on it is live");
                claims
                    .lock()
                    .expect("lock")
                    .push((id, c.attempt(), worker.clone()));
                anyhow::ensure!(db.heartbeat(&c).await? == Heartbeat::Continue);
                tokio::task::yield_now().await;
                db.complete_video(&c, "hls/master.m3u8", 1, 2).await?;
                in_flight.lock().expect("lock").remove(&id);
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let claims = claims.lock().expect("lock").clone();
    assert_eq!(claims.len(), JOBS, "every job claimed exactly once");
    let distinct: HashSet<i64> = claims.iter().map(|c| c.0).collect();
    assert_eq!(distinct.len(), JOBS, "no job claimed twice");
    assert!(claims.iter().all(|c| c.1 == 1), "no re-claims");
    let per_worker: HashMap<&str, usize> = claims.iter().fold(HashMap::new(), |mut m, c| {
        *m.entry(c.2.as_str()).or_default() += 1;
        m
    });
    assert!(per_worker.len() > 1, "work was shared: {per_worker:?}");
    let done = t
        .raw_int("SELECT COUNT(*) FROM video_jobs WHERE state = 'SUCCEEDED'")
        .await?;
    assert_eq!(done, JOBS as i64);
    t.drain().await?;
    for v in &videos {
        let s = t.snapshot(&v.key()).await?.context("published")?;
        assert_eq!(s.state.status.as_str(), "READY", "video {}", v.id);
    }
    Ok(())
}
both!(concurrent_claimers_never_share_a_job);

async fn an_expired_lease_is_reclaimed_and_the_zombie_cannot_commit(
    b: Backend,
) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    // Heartbeats every quarter lease: one may be held up by 2 s on a loaded machine before the
    // lease runs out under it.
    let short = Duration::from_secs(3);
    let zombie =
        t.db.claim(Queue::Video, "zombie", short, Caps::default())
            .await?
            .context("job")?;
    assert_eq!(zombie.attempt(), 1);
    assert_eq!(zombie.outbox.write.fence, Fence::new(1, 1, 1)?);

    // Heartbeats keep the lease alive past its first length.
    for _ in 0..5 {
        tokio::time::sleep(short / 4).await;
        assert_eq!(t.db.heartbeat(&zombie).await?, Heartbeat::Continue);
        assert!(
            t.db.claim(Queue::Video, "other", LEASE, Caps::default())
                .await?
                .is_none()
        );
    }
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    // An expired lease is not claimable until the reaper has made the loss visible.
    assert!(
        t.db.claim(Queue::Video, "fresh", LEASE, Caps::default())
            .await?
            .is_none(),
        "claimed straight from PROCESSING"
    );
    assert_eq!(t.db.reap_expired(Queue::Video).await?.retrying, 1);
    assert_eq!(
        t.video(a.tenant_id, v.id).await?.status,
        VideoStatus::RetryWait
    );
    let fresh = claim_soon(&t.db, Queue::Video, "fresh", LEASE).await?;
    assert_eq!(fresh.attempt(), 2, "re-claimed with attempt + 1");
    assert_eq!(video_job_id(&fresh), video_job_id(&zombie));
    let before = t.video(a.tenant_id, v.id).await?;
    assert_eq!(before.fence, Fence::new(1, 2, 1)?);
    let pending = t.db.outbox_pending().await?;

    assert_eq!(t.db.heartbeat(&zombie).await?, Heartbeat::LeaseLost);
    let r = t.db.complete_video(&zombie, "hls/zombie.m3u8", 1, 50).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    let r = t.db.fail(&zombie, "zombie", true).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    let r = t.db.cancelled(&zombie).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    assert_eq!(
        t.video(a.tenant_id, v.id).await?,
        before,
        "the zombie wrote nothing"
    );
    assert_eq!(
        t.db.outbox_pending().await?,
        pending,
        "and published nothing"
    );

    let done = t.db.complete_video(&fresh, "hls/fresh.m3u8", 7, 1).await?;
    assert_eq!(
        done.value.fence,
        Fence::new(1, 2, 2)?,
        "seq is raised past the claim's"
    );
    assert_eq!(done.value.hls_path.as_deref(), Some("hls/fresh.m3u8"));
    t.drain().await?;
    let snap = t.snapshot(&v.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "READY");
    assert_eq!(snap.state.attempt, Some(2));
    assert_eq!(
        t.db.heartbeat(&fresh).await?,
        Heartbeat::LeaseLost,
        "finished jobs hold no lease"
    );

    // The same for an AI job: the zombie's result is not stored.
    let job =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    let zombie =
        t.db.claim(Queue::Ai, "zombie", short, Caps::default())
            .await?
            .context("job")?;
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert!(
        t.db.claim(Queue::Ai, "fresh", LEASE, Caps::default())
            .await?
            .is_none(),
        "claimed straight from RUNNING"
    );
    assert_eq!(t.db.reap_expired(Queue::Ai).await?.retrying, 1);
    let fresh = claim_soon(&t.db, Queue::Ai, "fresh", LEASE).await?;
    assert_eq!(fresh.attempt(), 2);
    let outcome = AiOutcome::done(
        serde_json::json!({"secret": "zombie"}),
        JobResult::whole(serde_json::json!({"created": 1}))?,
    );
    let r = t.db.complete_ai_job(&zombie, outcome, 10).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    assert!(
        t.db.get_ai_result(a.tenant_id, &job.job_id)
            .await?
            .is_none()
    );
    let r = t.db.fail(&zombie, "zombie", false).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    let cur =
        t.db.get_ai_job(a.tenant_id, &job.job_id)
            .await?
            .context("job")?;
    assert_eq!(
        (cur.status, cur.fence),
        (JobStatus::Running, Fence::new(1, 2, 1)?)
    );
    Ok(())
}
both!(an_expired_lease_is_reclaimed_and_the_zombie_cannot_commit);

/// A transaction left open by a cut-off worker after it wrote a ledger row (whose foreign key
/// holds `FOR KEY SHARE` on the job row) does not hide the job from the reaper and the next
/// claim. With `FOR UPDATE` locks it did: `SKIP LOCKED` skipped the job until the server ended
/// the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_foreign_key_lock_does_not_hide_a_job() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let t = test_db(Backend::Postgres).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let job =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    let lost =
        t.db.claim(
            Queue::Ai,
            "lost",
            Duration::from_millis(100),
            Caps::default(),
        )
        .await?
        .context("job")?;
    // The cut-off worker's last transaction: a ledger row written, never committed.
    let mut zombie = sqlx::PgConnection::connect(&t.url).await?;
    let mut open = zombie.begin().await?;
    sqlx::query(
        "INSERT INTO import_rows (job_id, row_number, tenant_id, outcome, created_at) \
         VALUES ($1, 1, $2, 'failed', 0)",
    )
    .bind(job.job_id.as_str())
    .bind(a.tenant_id.get())
    .execute(&mut *open)
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let report = t.db.reap_expired(Queue::Ai).await?;
    assert_eq!(report.retrying, 1, "the reaper skipped the locked job");
    let next = claim_soon(&t.db, Queue::Ai, "next", LEASE).await?;
    assert_eq!((next.attempt(), lost.attempt()), (2, 1));
    open.rollback().await?;
    Ok(())
}

async fn the_reaper_makes_a_lost_worker_visible(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let short = Duration::from_millis(100);
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let lost =
        t.db.claim(Queue::Video, "lost", short, Caps::default())
            .await?
            .context("job")?;
    assert_eq!(lost.key, v.key());
    // Beside it, a job whose lease is live (10 min: live however slow the machine is; a 100 ms
    // lease checked "still live" after a few calls ran out first on a loaded one).
    let busy =
        t.db.create_video(a.tenant_id, None, "busy", "k")
            .await?
            .value;
    let live =
        t.db.claim(
            Queue::Video,
            "live",
            Duration::from_secs(600),
            Caps::default(),
        )
        .await?
        .context("job")?;
    assert_eq!(live.key, busy.key());
    t.drain().await?;
    assert_eq!(
        t.snapshot(&v.key())
            .await?
            .context("published")?
            .state
            .status
            .as_str(),
        "PROCESSING"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = t.db.reap_expired(Queue::Video).await?;
    assert_eq!(report.retrying, 1, "the expired lease only: {report:?}");
    assert_eq!(
        t.video(a.tenant_id, busy.id).await?.status,
        VideoStatus::Processing,
        "lease still live"
    );
    let row = t.video(a.tenant_id, v.id).await?;
    assert_eq!(row.status, VideoStatus::RetryWait);
    assert_eq!(
        row.fence,
        Fence::new(1, 2, 0)?,
        "between attempts: the lost attempt is stale"
    );
    t.drain().await?;
    let snap = t.snapshot(&v.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "RETRY_WAIT");
    assert!(snap.state.error.is_some());
    let r = t.db.complete_video(&lost, "hls/x.m3u8", 1, 9).await;
    assert!(matches!(r, Err(DbError::LeaseLost)), "{r:?}");
    let next = claim_soon(&t.db, Queue::Video, "next", LEASE).await?;
    assert_eq!(next.attempt(), 2);

    // An AI job on its last attempt dies; one with a pending cancel ends cancelled.
    let mut last = NewAiJob::new(a.tenant_id, job_type());
    last.max_attempts = Some(1);
    let last = t.db.submit_ai_job(last).await?.value.job;
    let cancel =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    t.db.claim(Queue::Ai, "lost", short, Caps::default())
        .await?
        .context("job")?;
    t.db.claim(Queue::Ai, "lost", short, Caps::default())
        .await?
        .context("job")?;
    assert_eq!(
        t.db.cancel_ai_job(a.tenant_id, &cancel.job_id).await?.value,
        CancelOutcome::Requested
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = t.db.reap_expired(Queue::Ai).await?;
    assert_eq!((report.dead, report.cancelled, report.retrying), (1, 1, 0));
    for id in [&last.job_id, &cancel.job_id] {
        let j = t.db.get_ai_job(a.tenant_id, id).await?.context("job")?;
        assert_eq!(j.status, JobStatus::Failed);
    }
    assert!(
        t.db.claim(Queue::Ai, "next", LEASE, Caps::default())
            .await?
            .is_none()
    );
    Ok(())
}
both!(the_reaper_makes_a_lost_worker_visible);

async fn a_background_reaper_handles_lost_workers(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let token = tokio_util::sync::CancellationToken::new();
    let reaper = {
        let db = t.db.clone();
        let token = token.clone();
        tokio::spawn(async move {
            db.run_reaper(Queue::Video, Duration::from_millis(50), token)
                .await
        })
    };
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    t.db.claim(
        Queue::Video,
        "lost",
        Duration::from_millis(100),
        Caps::default(),
    )
    .await?
    .context("job")?;
    crate::helpers::eventually(Duration::from_secs(3), "the reaper to act", || async {
        Ok(t.video(a.tenant_id, v.id).await?.status == VideoStatus::RetryWait)
    })
    .await?;
    token.cancel();
    reaper.await?;
    Ok(())
}
both!(a_background_reaper_handles_lost_workers);

async fn the_last_attempt_ends_in_failed(b: Backend) -> anyhow::Result<()> {
    let mut options = test_options();
    options.queue.default_max_attempts = 3;
    let t = test_db_with(b, options).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    for attempt in 1..=3u32 {
        let c = claim_soon(&t.db, Queue::Video, "w", LEASE).await?;
        assert_eq!((c.attempt(), c.max_attempts), (attempt, 3));
        assert_eq!(c.is_last_attempt(), attempt == 3);
        let out = t.db.fail(&c, &format!("boom {attempt}"), true).await?.value;
        if attempt < 3 {
            assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
            assert_eq!(
                t.video(a.tenant_id, v.id).await?.status,
                VideoStatus::RetryWait
            );
        } else {
            assert_eq!(out, FailOutcome::Dead);
        }
    }
    let row = t.video(a.tenant_id, v.id).await?;
    assert_eq!(row.status, VideoStatus::Failed);
    assert_eq!(row.error_reason.as_deref(), Some("boom 3"));
    assert_eq!(row.fence, Fence::new(1, 4, 0)?);
    let jobs = t.db.video_jobs(a.tenant_id, v.id).await?;
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].state, jobs[0].attempt), (VideoJobState::Dead, 3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .is_none()
    );
    t.drain().await?;
    let snap = t.snapshot(&v.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "FAILED");
    assert_eq!(
        snap.state.error.as_ref().map(|e| e.as_str()),
        Some("boom 3")
    );
    assert_eq!(snap.state.attempt, Some(3));

    // AI job with its own max_attempts.
    let mut new = NewAiJob::new(a.tenant_id, job_type());
    new.max_attempts = Some(2);
    let job = t.db.submit_ai_job(new).await?.value.job;
    for attempt in 1..=2u32 {
        let c = claim_soon(&t.db, Queue::Ai, "w", LEASE).await?;
        assert_eq!(c.attempt(), attempt);
        t.db.fail(&c, "handler crashed", true).await?;
    }
    let row =
        t.db.get_ai_job(a.tenant_id, &job.job_id)
            .await?
            .context("job")?;
    assert_eq!(row.status, JobStatus::Failed);
    t.drain().await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "FAILED");
    assert_eq!(
        snap.state.error.as_ref().map(|e| e.as_str()),
        Some("handler crashed")
    );

    // A permanent error ends at once.
    let v2 = t.db.create_video(a.tenant_id, None, "v2", "k").await?.value;
    let c = claim_soon(&t.db, Queue::Video, "w", LEASE).await?;
    assert_eq!(
        t.db.fail(&c, "not a video", false).await?.value,
        FailOutcome::Dead
    );
    assert_eq!(
        t.video(a.tenant_id, v2.id).await?.status,
        VideoStatus::Failed
    );
    Ok(())
}
both!(the_last_attempt_ends_in_failed);

async fn backoff_delays_the_next_claim(b: Backend) -> anyhow::Result<()> {
    // Long enough that "still backing off" is checked well inside the first backoff on a loaded
    // machine; the delays are checked against the time of the `fail` call, however long it took.
    const BASE: i64 = 1500;
    let options = backoff_options(Duration::from_millis(BASE as u64), Duration::from_secs(10));
    let t = test_db_with(b, options).await?;
    let a = t.db.create_tenant("a", "A").await?;
    t.db.create_video(a.tenant_id, None, "v", "k").await?;
    let c = claim_soon(&t.db, Queue::Video, "w", LEASE).await?;
    let before = now_ms();
    let FailOutcome::Retrying { run_after_ms } = t.db.fail(&c, "flaky", true).await?.value else {
        anyhow::bail!("a retry was expected");
    };
    let after = now_ms();
    assert!(
        (before + BASE - 5..=after + BASE + 5).contains(&run_after_ms),
        "first retry {BASE} ms after the failure: due at {run_after_ms}, failed between {before} and {after}"
    );
    assert!(
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = now_ms();
    assert!(
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .is_none(),
        "still backing off ({} ms before it ends)",
        run_after_ms - asked
    );
    let wait = run_after_ms - now_ms() + 50;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait.max(0))?)).await;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("due")?;
    assert_eq!(c.attempt(), 2);
    let before = now_ms();
    let FailOutcome::Retrying { run_after_ms } = t.db.fail(&c, "flaky", true).await?.value else {
        anyhow::bail!("a retry was expected");
    };
    let after = now_ms();
    assert!(
        (before + 2 * BASE - 5..=after + 2 * BASE + 5).contains(&run_after_ms),
        "second retry {} ms after the failure: due at {run_after_ms}, failed between {before} and {after}",
        2 * BASE
    );
    Ok(())
}
both!(backoff_delays_the_next_claim);

async fn caps_are_respected(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let bb = t.db.create_tenant("b", "B").await?;
    for tenant in [a.tenant_id, bb.tenant_id] {
        for i in 0..5 {
            t.db.create_video(tenant, None, &format!("v{i}"), "k")
                .await?;
        }
    }
    let caps = Caps {
        global: Some(3),
        per_tenant: Some(2),
    };
    // Eight claimers race for the slots.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let db = t.db.clone();
        tasks.spawn(async move { db.claim(Queue::Video, &format!("w{w}"), LEASE, caps).await });
    }
    let mut claims = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(c) = r?? {
            claims.push(c);
        }
    }
    let count = |tenant| claims.iter().filter(|c| c.tenant == tenant).count();
    assert_eq!(claims.len(), 3, "global cap");
    assert_eq!(
        (count(a.tenant_id), count(bb.tenant_id)),
        (2, 1),
        "per-tenant cap"
    );
    assert!(t.db.claim(Queue::Video, "w", LEASE, caps).await?.is_none());
    let running = t
        .raw_int("SELECT COUNT(*) FROM video_jobs WHERE state = 'RUNNING'")
        .await?;
    assert_eq!(running, 3);
    // The operator's view of it (the API's jobpulse_queue_tenant_* gauges): A has work
    // waiting and is at its cap of 2; B waits only for the global cap.
    let stats = t.db.ops_stats().await?;
    let load = |tenant| {
        stats
            .tenants
            .iter()
            .find(|l| l.queue == "video" && l.tenant == tenant)
            .cloned()
    };
    let (la, lb) = (
        load(a.tenant_id.get()).context("A listed")?,
        load(bb.tenant_id.get()).context("B listed")?,
    );
    assert_eq!((la.waiting, la.running), (3, 2), "{la:?}");
    assert_eq!((lb.waiting, lb.running), (4, 1), "{lb:?}");
    assert!(la.capped(caps.per_tenant) && !lb.capped(caps.per_tenant));
    assert!(!la.capped(None), "no cap, nobody capped");

    // Freeing one of A's slots lets A's oldest waiting job run.
    let done = claims
        .iter()
        .find(|c| c.tenant == a.tenant_id)
        .context("a claim of A")?;
    t.db.complete_video(done, "hls/x.m3u8", 1, 2).await?;
    let next =
        t.db.claim(Queue::Video, "w", LEASE, caps)
            .await?
            .context("a free slot")?;
    assert_eq!(next.tenant, a.tenant_id);
    assert!(t.db.claim(Queue::Video, "w", LEASE, caps).await?.is_none());
    // Without caps the rest is claimable.
    assert!(
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .is_some()
    );

    // AI jobs honour caps too.
    for _ in 0..3 {
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?;
    }
    let one = Caps {
        global: None,
        per_tenant: Some(1),
    };
    assert!(t.db.claim(Queue::Ai, "w", LEASE, one).await?.is_some());
    assert!(t.db.claim(Queue::Ai, "w", LEASE, one).await?.is_none());
    Ok(())
}
both!(caps_are_respected);

async fn cancel_waiting_vs_running(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let running =
        t.db.create_video(a.tenant_id, None, "running", "k")
            .await?
            .value;
    let waiting =
        t.db.create_video(a.tenant_id, None, "waiting", "k")
            .await?
            .value;
    let claim =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    assert_eq!(claim.key, running.key());

    let out = t.db.cancel_video(a.tenant_id, waiting.id).await?;
    assert_eq!(out.value, CancelOutcome::Ended);
    let row = t.video(a.tenant_id, waiting.id).await?;
    assert_eq!(row.status, VideoStatus::Failed);
    assert_eq!(row.error_reason.as_deref(), Some("cancelled"));
    assert_eq!(row.fence, Fence::new(1, 0, 2)?);
    let jobs = t.db.video_jobs(a.tenant_id, waiting.id).await?;
    assert_eq!(jobs[0].state, VideoJobState::Cancelled);
    assert_eq!(
        t.db.cancel_video(a.tenant_id, waiting.id).await?.value,
        CancelOutcome::NotActive
    );

    let out = t.db.cancel_video(a.tenant_id, running.id).await?;
    assert_eq!(out.value, CancelOutcome::Requested);
    assert!(
        out.outbox.is_empty(),
        "nothing visible changes until the worker stops"
    );
    assert_eq!(
        t.video(a.tenant_id, running.id).await?.status,
        VideoStatus::Processing
    );
    assert_eq!(t.db.heartbeat(&claim).await?, Heartbeat::CancelRequested);
    let ack = t.db.cancelled(&claim).await?;
    assert_eq!(ack.outbox.len(), 1);
    let row = t.video(a.tenant_id, running.id).await?;
    assert_eq!(
        (row.status, row.fence),
        (VideoStatus::Failed, Fence::new(1, 2, 0)?)
    );
    assert!(
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .is_none()
    );
    // A cancelled video may be retried.
    t.db.retry_video(a.tenant_id, running.id).await?;

    // AI jobs: PENDING ends at once; RUNNING is cooperative.
    let pending =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    let runs =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    let c =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    assert_eq!(c.key, pending.key(), "oldest first");
    // Cancel the other one while it is still pending...
    assert_eq!(
        t.db.cancel_ai_job(a.tenant_id, &runs.job_id).await?.value,
        CancelOutcome::Ended
    );
    let row =
        t.db.get_ai_job(a.tenant_id, &runs.job_id)
            .await?
            .context("job")?;
    assert_eq!(
        (row.status, row.error_message.as_deref()),
        (JobStatus::Failed, Some("cancelled"))
    );
    // ...and the claimed one cooperatively.
    assert_eq!(
        t.db.cancel_ai_job(a.tenant_id, &pending.job_id)
            .await?
            .value,
        CancelOutcome::Requested
    );
    assert_eq!(t.db.heartbeat(&c).await?, Heartbeat::CancelRequested);
    t.db.cancelled(&c).await?;
    let row =
        t.db.get_ai_job(a.tenant_id, &pending.job_id)
            .await?
            .context("job")?;
    assert_eq!(row.status, JobStatus::Failed);
    assert_eq!(
        t.db.cancel_ai_job(a.tenant_id, &pending.job_id)
            .await?
            .value,
        CancelOutcome::NotActive
    );
    let other = t.db.create_tenant("b", "B").await?;
    let foreign = t.db.cancel_ai_job(other.tenant_id, &pending.job_id).await;
    assert!(matches!(foreign, Err(DbError::NotFound(_))), "{foreign:?}");

    t.drain().await?;
    for key in [waiting.key(), pending.key(), runs.key()] {
        let s = t.snapshot(&key).await?.context("published")?;
        assert_eq!(s.state.status.as_str(), "FAILED", "{key}");
        assert_eq!(
            s.state.error.as_ref().map(|e| e.as_str()),
            Some("cancelled")
        );
    }
    Ok(())
}
both!(cancel_waiting_vs_running);

async fn worker_results_are_checked(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    t.db.create_video(a.tenant_id, None, "v", "k").await?;
    let job =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, job_type()))
            .await?
            .value
            .job;
    let vc =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    let ac =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    assert!(matches!(
        t.db.complete_video(&ac, "x", 1, 2).await,
        Err(DbError::Invalid(_))
    ));
    let bad_path = t.db.complete_video(&vc, "", 1, 2).await;
    assert!(bad_path.is_err(), "{bad_path:?}");
    let not_terminal = AiOutcome {
        status: JobStatus::Retrying,
        full_result: None,
        read_result: None,
        error_message: None,
    };
    let r = t.db.complete_ai_job(&ac, not_terminal, 2).await;
    assert!(matches!(r, Err(DbError::IllegalTransition { .. })), "{r:?}");

    let full =
        serde_json::json!({"created": 1, "credentials": [{"login_id": "s1", "password": "pw"}]});
    let summary = JobResult::summary_with_full(serde_json::json!({"created": 1}))?;
    let done =
        t.db.complete_ai_job(&ac, AiOutcome::done(full.clone(), summary.clone()), 5)
            .await?;
    assert_eq!(done.value.status, JobStatus::Done);
    assert_eq!(done.value.fence, Fence::new(1, 1, 5)?);
    assert_eq!(
        t.db.get_ai_result(a.tenant_id, &job.job_id).await?,
        Some(full)
    );
    let other = t.db.create_tenant("b", "B").await?;
    assert!(
        t.db.get_ai_result(other.tenant_id, &job.job_id)
            .await?
            .is_none()
    );
    t.drain().await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(
        snap.state.result,
        Some(summary),
        "only the summary reaches the read model"
    );
    assert!(
        !serde_json::to_string(&snap)?.contains("pw"),
        "no secrets in the read model"
    );
    Ok(())
}
both!(worker_results_are_checked);

async fn release_gives_the_job_back_without_using_an_attempt(b: Backend) -> anyhow::Result<()> {
    let mut options = test_options();
    options.queue.default_max_attempts = 1;
    let t = test_db_with(b, options).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let c = claim_soon(&t.db, Queue::Video, "w1", LEASE).await?;
    assert!(c.is_last_attempt());

    // Waiters of another process (PostgreSQL) or this one (SQLite) are woken.
    let waiter_db = match b {
        Backend::Postgres => t.second_handle().await?,
        Backend::Sqlite => t.db.clone(),
    };
    while waiter_db
        .wait_for_work(Queue::Video, Duration::from_millis(300))
        .await
    {}
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        let woken = waiter_db
            .wait_for_work(Queue::Video, Duration::from_secs(10))
            .await;
        (woken, start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let out = t.db.release(&c, "worker shut down").await?;
    assert_eq!(out.value, ReleaseOutcome::Released);
    assert_eq!(out.outbox.len(), 1);
    let (woken, after) = waiter.await?;
    // Woken by the release, not by the 10 s timeout (`woken` says which).
    assert!(woken, "not woken within 10 s ({after:?})");
    let row = t.video(a.tenant_id, v.id).await?;
    assert_eq!(
        (row.status, row.fence, row.attempt),
        (VideoStatus::RetryWait, Fence::new(1, 2, 0)?, 1)
    );
    assert_eq!(row.error_reason.as_deref(), Some("worker shut down"));
    let jobs = t.db.video_jobs(a.tenant_id, v.id).await?;
    assert_eq!(
        (jobs[0].state, jobs[0].attempt, jobs[0].max_attempts),
        (VideoJobState::RetryWait, 1, 2),
        "one more attempt allowed: the budget is what it was"
    );
    assert_eq!(jobs[0].error_code.as_deref(), Some("released"));
    // The released claim is dead: a second release or a completion writes nothing.
    assert!(matches!(
        t.db.release(&c, "again").await,
        Err(DbError::LeaseLost)
    ));
    // Runnable at once (no backoff): the very next claim takes it — no wall-clock bound, which
    // a loaded machine could break and the test backoff (50–200 ms) is too short to tell
    // from — as attempt 2, which is again the last one.
    let c2 =
        t.db.claim(Queue::Video, "w2", LEASE, Caps::default())
            .await?
            .context("released: claimable at once, no backoff")?;
    assert_eq!((c2.attempt(), c2.max_attempts), (2, 2));
    assert!(matches!(
        t.db.complete_video(&c, "x/master.m3u8", 1, 2).await,
        Err(DbError::LeaseLost)
    ));
    t.db.complete_video(&c2, "x/master.m3u8", 3, 2).await?;
    t.drain().await?;
    let snap = t.snapshot(&v.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "READY");

    // A cancel that arrived meanwhile wins over the release.
    let v2 = t.db.create_video(a.tenant_id, None, "v2", "k").await?.value;
    let c = claim_soon(&t.db, Queue::Video, "w1", LEASE).await?;
    assert_eq!(
        t.db.cancel_video(a.tenant_id, v2.id).await?.value,
        CancelOutcome::Requested
    );
    assert_eq!(
        t.db.release(&c, "worker shut down").await?.value,
        ReleaseOutcome::Cancelled
    );
    let row = t.video(a.tenant_id, v2.id).await?;
    assert_eq!(
        (row.status, row.error_reason.as_deref()),
        (VideoStatus::Failed, Some("cancelled"))
    );
    let jobs = t.db.video_jobs(a.tenant_id, v2.id).await?;
    assert_eq!(
        (jobs[0].state, jobs[0].max_attempts),
        (VideoJobState::Cancelled, 1)
    );

    // A video deleted during the attempt: the job is closed, nothing published.
    let v3 = t.db.create_video(a.tenant_id, None, "v3", "k").await?.value;
    let c = claim_soon(&t.db, Queue::Video, "w1", LEASE).await?;
    t.db.delete_video(a.tenant_id, v3.id).await?;
    assert!(matches!(
        t.db.release(&c, "worker shut down").await,
        Err(DbError::Cancelled)
    ));
    let jobs = t.db.video_jobs(a.tenant_id, v3.id).await?;
    assert_eq!(jobs[0].state, VideoJobState::Cancelled);
    assert!(
        t.db.claim(Queue::Video, "w1", LEASE, Caps::default())
            .await?
            .is_none()
    );

    // AI jobs: RETRYING, runnable at once, one more attempt; a pending cancel wins.
    let mut new = NewAiJob::new(a.tenant_id, job_type());
    new.max_attempts = Some(1);
    let job = t.db.submit_ai_job(new).await?.value.job;
    let c = claim_soon(&t.db, Queue::Ai, "w1", LEASE).await?;
    assert_eq!(
        t.db.release(&c, "worker shut down").await?.value,
        ReleaseOutcome::Released
    );
    let row =
        t.db.get_ai_job(a.tenant_id, &job.job_id)
            .await?
            .context("job")?;
    assert_eq!(
        (row.status, row.attempt, row.max_attempts),
        (JobStatus::Retrying, 1, 2)
    );
    t.drain().await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "RETRYING");
    assert_eq!(snap.fence, Fence::new(1, 2, 0)?);
    let c = claim_soon(&t.db, Queue::Ai, "w2", LEASE).await?;
    assert_eq!((c.attempt(), c.max_attempts), (2, 2));
    assert_eq!(
        t.db.cancel_ai_job(a.tenant_id, &job.job_id).await?.value,
        CancelOutcome::Requested
    );
    assert_eq!(
        t.db.release(&c, "worker shut down").await?.value,
        ReleaseOutcome::Cancelled
    );
    let row =
        t.db.get_ai_job(a.tenant_id, &job.job_id)
            .await?
            .context("job")?;
    assert_eq!(
        (row.status, row.error_message.as_deref(), row.max_attempts),
        (JobStatus::Failed, Some("cancelled"), 2)
    );
    t.drain().await?;
    let snap = t.snapshot(&job.key()).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "FAILED");
    Ok(())
}
both!(release_gives_the_job_back_without_using_an_attempt);
