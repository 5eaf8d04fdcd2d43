//! One side's drain of a round: `--claimers` tasks claiming and completing until the seeded jobs
//! are gone, then the database's own record of double claims.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::{AiOutcome, Claim, ClaimedTask, Db, Queue};
use jobpulse_domain::{JobResult, TaskKey, Write};
use jobpulse_worker::ai::AiWorkerConfig;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::Mutex;

use super::{Drain, QueueOptions};

/// What the claimers of one side share.
struct Shared {
    remaining: AtomicU64,
    claimed: Mutex<HashMap<String, u32>>,
    empty: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn new(jobs: u64) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(jobs),
            claimed: Mutex::new(HashMap::with_capacity(usize::try_from(jobs).unwrap_or(0))),
            empty: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Records one claim of `id`.
    async fn claimed(&self, id: String) {
        *self.claimed.lock().await.entry(id).or_default() += 1;
        self.remaining.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an error; the first few are printed (stderr) so a failed run says why.
    #[allow(clippy::print_stderr)]
    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("queue bench: {what}: {e}");
        }
    }

    fn done(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) == 0
    }

    async fn doubles(&self) -> u64 {
        self.claimed
            .lock()
            .await
            .values()
            .filter(|n| **n > 1)
            .count() as u64
    }
}

async fn finish(
    shared: &Shared,
    jobs: u64,
    wall: Duration,
    latencies: Vec<hdrhistogram::Histogram<u64>>,
    double_in_db: u64,
) -> anyhow::Result<Drain> {
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    for h in &latencies {
        all.add(h)?;
    }
    Ok(Drain {
        jobs,
        wall,
        latency_us: all,
        empty: shared.empty.load(Ordering::Relaxed),
        double_in_memory: shared.doubles().await,
        double_in_db,
        errors: shared.errors.load(Ordering::Relaxed),
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The bare loop: claim one statement, complete one statement, each its own transaction.
pub(super) async fn drain_bare(
    pool: &PgPool,
    o: &QueueOptions,
    since: i64,
) -> anyhow::Result<Drain> {
    const CLAIM: &str = "UPDATE bare_jobs SET status = 'RUNNING', attempt = attempt + 1, \
         lease_owner = $1, lease_until = $2 \
         WHERE id = (SELECT id FROM bare_jobs WHERE status = 'PENDING' ORDER BY id LIMIT 1 \
                     FOR UPDATE SKIP LOCKED) RETURNING id";
    const COMPLETE: &str = "UPDATE bare_jobs SET status = 'DONE', lease_owner = NULL, \
         lease_until = NULL WHERE id = $1 AND status = 'RUNNING' AND lease_owner = $2";
    let shared = Shared::new(o.jobs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..o.claimers {
        let (pool, shared) = (pool.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let me = format!("bare-{n}");
            let mut lat = hdrhistogram::Histogram::<u64>::new(3)?;
            while !shared.done() {
                let t0 = Instant::now();
                let row = sqlx::query(CLAIM)
                    .bind(&me)
                    .bind(i64::MAX)
                    .fetch_optional(&pool)
                    .await;
                let id: i64 = match row {
                    Ok(Some(r)) => r.get(0),
                    Ok(None) => {
                        shared.empty.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    Err(e) => {
                        shared.error("bare claim", &e);
                        continue;
                    }
                };
                lat.record(micros(t0.elapsed()))?;
                shared.claimed(id.to_string()).await;
                let done = sqlx::query(COMPLETE)
                    .bind(id)
                    .bind(&me)
                    .execute(&pool)
                    .await;
                match done {
                    Ok(r) if r.rows_affected() == 1 => {}
                    Ok(r) => shared.error("bare complete", &format!("{} rows", r.rows_affected())),
                    Err(e) => shared.error("bare complete", &e),
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lats = Vec::new();
    for t in tasks {
        lats.push(t.await??);
    }
    let wall = start.elapsed();
    let not_once: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bare_jobs WHERE id > $1 AND (status <> 'DONE' OR attempt <> 1)",
    )
    .bind(since)
    .fetch_one(pool)
    .await?;
    finish(&shared, o.jobs, wall, lats, u64::try_from(not_once)?).await
}

/// Ours: `Db::claim` then `Db::complete_ai_job`, as the AI worker calls them.
pub(super) async fn drain_ours(
    db: &Db,
    check: &PgPool,
    o: &QueueOptions,
    since: i64,
) -> anyhow::Result<Drain> {
    let lease = AiWorkerConfig::default().common.lease;
    let shared = Shared::new(o.jobs);
    let outbox_before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM outbox")
        .fetch_one(check)
        .await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..o.claimers {
        let (db, shared, caps) = (db.clone(), shared.clone(), o.caps);
        tasks.push(tokio::spawn(async move {
            let me = format!("ours-{n}");
            let mut lat = hdrhistogram::Histogram::<u64>::new(3)?;
            while !shared.done() {
                let t0 = Instant::now();
                let claim: Claim = match db.claim(Queue::Ai, &me, lease, caps).await {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        shared.empty.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    Err(e) => {
                        shared.error("claim", &e);
                        continue;
                    }
                };
                lat.record(micros(t0.elapsed()))?;
                let ClaimedTask::Ai(job) = &claim.task else {
                    anyhow::bail!("a video claim from the AI queue");
                };
                shared.claimed(job.job_id.as_str().to_owned()).await;
                let outcome = AiOutcome::done(
                    serde_json::json!({"rows": 1}),
                    JobResult::whole(serde_json::json!({"rows": 1}))?,
                );
                if let Err(e) = db
                    .complete_ai_job(&claim, outcome, Claim::FIRST_PROGRESS_SEQ)
                    .await
                {
                    shared.error("complete", &e);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lats = Vec::new();
    for t in tasks {
        lats.push(t.await??);
    }
    let wall = start.elapsed();
    // Every job of the round DONE after exactly one attempt, with exactly one claim write
    // (fence `(g, 1, 1)`) in the outbox since the drain began and no other claim write.
    let not_once: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ai_jobs WHERE queue_seq > $1 AND (status <> 'DONE' OR attempt <> 1)",
    )
    .bind(since)
    .fetch_one(check)
    .await?;
    let rows: Vec<String> = sqlx::query_scalar("SELECT write_json FROM outbox WHERE id > $1")
        .bind(outbox_before)
        .fetch_all(check)
        .await?;
    let mut claim_writes: HashMap<TaskKey, u32> = HashMap::new();
    for json in rows {
        let w: Write = serde_json::from_str(&json).context("an outbox row")?;
        if w.fence.seq == 1 {
            *claim_writes.entry(w.key).or_default() += 1;
        }
    }
    let bad_writes = claim_writes.values().filter(|n| **n != 1).count() as u64
        + o.jobs.saturating_sub(claim_writes.len() as u64);
    let double_in_db = u64::try_from(not_once)? + bad_writes;
    finish(&shared, o.jobs, wall, lats, double_in_db).await
}
