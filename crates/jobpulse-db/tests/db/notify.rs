//! Wake-ups: an idle worker wakes when work is enqueued — across processes on PostgreSQL
//! (LISTEN/NOTIFY), within the process on SQLite.

use std::time::{Duration, Instant};

use jobpulse_db::{Db, NewAiJob, Queue};
use jobpulse_domain::JobType;

use crate::helpers::{Backend, test_db};

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
        // It waited for the enqueue (200 ms in) — not a stale wake-up — and not for max_wait.
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2),
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
    assert!(
        woken && elapsed >= Duration::from_millis(80) && elapsed < Duration::from_secs(2),
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
