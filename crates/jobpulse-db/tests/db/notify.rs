//! Wake-ups: an idle worker wakes when work is enqueued — across processes on PostgreSQL
//! (LISTEN/NOTIFY), within the process on SQLite.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use jobpulse_db::{Caps, Db, FailOutcome, NewAiJob, Queue};
use jobpulse_domain::JobType;

use crate::helpers::{Backend, backoff_options, both, test_db, test_db_with};

/// Consumes stored wake-ups so the next wait really waits.
async fn settle(db: &Db, queue: Queue) {
    while db.wait_for_work(queue, Duration::from_millis(300)).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_another_process() -> anyhow::Result<()> {
    let t = test_db(Backend::Postgres).await?;
    let a = t.db.create_tenant("a", "A").await?;
    // A second handle stands for another process: its in-process signals are its own, so only
    // PostgreSQL NOTIFY can wake it.
    let worker = t.second_handle().await?;
    for queue in [Queue::Video, Queue::Ai] {
        settle(&worker, queue).await;
        let waiter = {
            let worker = worker.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let woken = worker.wait_for_work(queue, Duration::from_secs(10)).await;
                (woken, start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        match queue {
            Queue::Video => {
                t.db.create_video(a.tenant_id, None, "v", "k").await?;
            }
            Queue::Ai => {
                t.db.submit_ai_job(NewAiJob::new(a.tenant_id, JobType::parse("excel_parsing")?))
                    .await?;
            }
        }
        let (woken, elapsed) = waiter.await?;
        assert!(woken, "{queue:?}: woken by NOTIFY, not by the timeout");
        // It waited for the enqueue (200 ms in) — not a stale wake-up. (`woken` already says
        // it was not max_wait; the upper bound only leaves room for a loaded machine.)
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(6),
            "{queue:?}: woke after {elapsed:?}, max_wait was 10 s"
        );
    }
    // Without an enqueue the wait runs to its end.
    settle(&worker, Queue::Video).await;
    let start = Instant::now();
    assert!(
        !worker
            .wait_for_work(Queue::Video, Duration::from_millis(300))
            .await
    );
    assert!(start.elapsed() >= Duration::from_millis(290));
    worker.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wakes_in_process_and_polls_across_processes() -> anyhow::Result<()> {
    let t = test_db(Backend::Sqlite).await?;
    let a = t.db.create_tenant("a", "A").await?;
    settle(&t.db, Queue::Video).await;
    let waiter = {
        let db = t.db.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            (
                db.wait_for_work(Queue::Video, Duration::from_secs(10))
                    .await,
                start.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.db.create_video(a.tenant_id, None, "v", "k").await?;
    let (woken, elapsed) = waiter.await?;
    // Woken (not timed out after 10 s), and only after the enqueue (100 ms in).
    assert!(
        woken && elapsed >= Duration::from_millis(80) && elapsed < Duration::from_secs(6),
        "{woken} {elapsed:?}"
    );

    // Another process on the same file is not woken: it finds the work on its next poll.
    let other = t.second_handle().await?;
    settle(&other, Queue::Video).await;
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .wait_for_work(Queue::Video, Duration::from_millis(400))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.db.create_video(a.tenant_id, None, "w", "k").await?;
    assert!(
        !waiter.await?,
        "documented: no cross-process wake-up on SQLite"
    );
    Ok(())
}

/// Waits like a worker (`max_wait` 30 s) and claims when woken; the time from `since` to the
/// claim. Fails after 10 s — long before a worker's next poll would find the job.
async fn claim_when_woken(db: &Db, since: Instant) -> anyhow::Result<Duration> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(c) = db
                .claim(Queue::Video, "w", Duration::from_secs(30), Caps::default())
                .await?
            {
                anyhow::ensure!(c.attempt() == 2, "attempt {}", c.attempt());
                return Ok(since.elapsed());
            }
            db.wait_for_work(Queue::Video, Duration::from_secs(30))
                .await;
        }
    })
    .await
    .context("not woken when the backoff ended")?
}

/// A job waiting out its backoff — after a failed attempt, or after the reaper found a lost
/// one — wakes an idle worker of this process when the backoff ends; it does not wait for the
/// worker's next poll.
async fn a_retry_wakes_a_worker_when_its_backoff_ends(b: Backend) -> anyhow::Result<()> {
    const BACKOFF: Duration = Duration::from_millis(500);
    let t = test_db_with(b, backoff_options(BACKOFF, BACKOFF)).await?;
    let a = t.db.create_tenant("a", "A").await?;

    // A failed attempt.
    t.db.create_video(a.tenant_id, None, "v", "k").await?;
    let c =
        t.db.claim(Queue::Video, "w", Duration::from_secs(30), Caps::default())
            .await?
            .context("claim")?;
    settle(&t.db, Queue::Video).await;
    let failed = Instant::now();
    let outcome = t.db.fail(&c, "flaky", true).await?.value;
    assert!(
        matches!(outcome, FailOutcome::Retrying { .. }),
        "{outcome:?}"
    );
    let took = claim_when_woken(&t.db, failed).await?;
    assert!(
        took >= BACKOFF - Duration::from_millis(50),
        "claimed after {took:?}"
    );

    // A lost attempt, found by the reaper.
    t.db.create_video(a.tenant_id, None, "w", "k").await?;
    let lost =
        t.db.claim(
            Queue::Video,
            "lost",
            Duration::from_millis(100),
            Caps::default(),
        )
        .await?
        .context("claim")?;
    assert_eq!(lost.attempt(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle(&t.db, Queue::Video).await;
    let reaped = Instant::now();
    assert_eq!(t.db.reap_expired(Queue::Video).await?.retrying, 1);
    let took = claim_when_woken(&t.db, reaped).await?;
    assert!(
        took >= BACKOFF - Duration::from_millis(50),
        "claimed after {took:?}"
    );
    Ok(())
}
both!(a_retry_wakes_a_worker_when_its_backoff_ends);
