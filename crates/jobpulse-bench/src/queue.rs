//! `jobpulse-bench --only queue`: claims/s of small AI jobs on PostgreSQL through our queue
//! (`Db::claim` → `Db::complete_ai_job`, the two calls an AI worker makes per job) against a
//! bare `FOR UPDATE SKIP LOCKED` claim-and-complete loop on the same database (the limit of
//! the design: one statement to claim, one to complete). Goal: ≥ 0.7 × the bare loop.
//!
//! The bench creates a database of its own on the server of `DATABASE_URL` (dropped at the
//! end), migrates it, creates `--queue-tenants` tenants and, per round, seeds `--queue-jobs`
//! PENDING jobs through `Db::submit_ai_job` (spread round robin over the tenants) and as many
//! rows of a bare table (`bare_jobs`: id, status, attempt, lease owner and end). Then
//! `--claimers` tasks drain each queue, bare first, ours second; every round is one such pair.
//!
//! Our side uses the AI worker's default caps (`AiWorkerConfig::default().common.caps`: 4 running jobs
//! per tenant) unless `--queue-caps off`; a claim that returns nothing while jobs remain (every
//! tenant with work at its cap) waits 1 ms and tries again. A claimer completes each job it
//! claimed at once with a tiny DONE result, as a handler returning at once would.
//!
//! Measured per side: claims/s (jobs / wall time from the first claim to the last complete),
//! p50/p99 of one claim call, and double claims — from memory (a job id handed out twice) and
//! from the database afterwards (every job DONE with attempt 1; on our side also exactly one
//! RUNNING outbox write per job).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::{AiOutcome, Caps, Claim, ClaimedTask, Db, DbOptions, NewAiJob, Queue};
use jobpulse_domain::{JobResult, JobType, TaskKey, TenantId, Write};
use jobpulse_worker::ai::AiWorkerConfig;
use sqlx::postgres::{PgPool, PgPoolOptions};
// The database name is ours (a fixed prefix and our pid), never input.
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::Mutex;

/// What `--only queue` runs.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub jobs: u64,
    pub claimers: usize,
    pub tenants: u32,
    /// The caps our claims pass (`Caps::default()`: none).
    pub caps: Caps,
    pub rounds: usize,
    /// `false`: the outbox's NOTIFY trigger is dropped in the bench's database (diagnosis only).
    pub outbox_notify: bool,
}

/// One side's drain of one round.
#[derive(Debug)]
struct Drain {
    jobs: u64,
    wall: Duration,
    /// One claim call each (successful claims only), microseconds.
    latency_us: hdrhistogram::Histogram<u64>,
    /// Claims that returned nothing while jobs remained (caps), retried after 1 ms.
    empty: u64,
    /// Job ids handed out more than once, from the claimers' own record.
    double_in_memory: u64,
    /// Jobs not DONE with exactly one attempt (and, for ours, one RUNNING write), from the
    /// database afterwards.
    double_in_db: u64,
    errors: u64,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.wall.as_secs_f64()
    }

    fn pct_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The bench's own database on the server of `admin_url`.
struct Scratch {
    admin_url: String,
    name: String,
}

impl Scratch {
    async fn create(admin_url: &str) -> anyhow::Result<(Self, String)> {
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

    async fn drop_database(self) -> anyhow::Result<()> {
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

/// Runs the scenario against the server of `database_url` and prints its tables.
pub async fn run(database_url: &str, o: QueueOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        database_url.starts_with("postgres"),
        "--only queue needs PostgreSQL (DATABASE_URL)"
    );
    anyhow::ensure!(
        o.jobs > 0 && o.claimers > 0 && o.tenants > 0,
        "nothing to do"
    );
    let (scratch, url) = Scratch::create(database_url).await?;
    let result = run_in(&url, &o).await;
    let dropped = scratch.drop_database().await;
    result?;
    dropped
}

#[allow(clippy::print_stdout)] // The report is this command's output.
async fn run_in(url: &str, o: &QueueOptions) -> anyhow::Result<()> {
    let pool_size = u32::try_from(o.claimers)
        .unwrap_or(u32::MAX)
        .saturating_add(2);
    let db = Db::connect_with(
        url,
        DbOptions {
            max_connections: pool_size,
            acquire_timeout: Duration::from_secs(60),
            ..DbOptions::default()
        },
    )
    .await?;
    db.migrate().await?;
    let bare = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(url)
        .await?;
    if !o.outbox_notify {
        sqlx::query("DROP TRIGGER outbox_notify ON outbox")
            .execute(&bare)
            .await?;
    }
    for stmt in [
        "CREATE TABLE bare_jobs (id BIGSERIAL PRIMARY KEY, tenant_id BIGINT NOT NULL, \
         status TEXT NOT NULL, attempt BIGINT NOT NULL DEFAULT 0, lease_owner TEXT NULL, \
         lease_until BIGINT NULL, payload TEXT NOT NULL)",
        "CREATE INDEX bare_jobs_pending ON bare_jobs (id) WHERE status = 'PENDING'",
    ] {
        sqlx::query(stmt).execute(&bare).await?;
    }
    let mut tenants = Vec::new();
    for t in 0..o.tenants {
        tenants.push(
            db.create_tenant(&format!("q{t}"), &format!("Queue bench {t}"))
                .await?
                .tenant_id,
        );
    }
    println!(
        "\n## queue throughput: {} small AI jobs, {} claimers, {} tenants, our caps: {}, \
         outbox NOTIFY: {}\n",
        o.jobs,
        o.claimers,
        o.tenants,
        caps_label(o.caps),
        if o.outbox_notify {
            "on"
        } else {
            "off (dropped)"
        }
    );
    println!(
        "| round | way | claims/s | p50 claim ms | p99 claim ms | empty claims | double claims (memory / db) | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 1..=o.rounds {
        let since = seed_bare(&bare, o.jobs, o.tenants).await?;
        let b = drain_bare(&bare, o, since).await?;
        println!("{}", row(round, "bare SKIP LOCKED loop", &b));
        let since = seed_ours(&db, &bare, &tenants, o.jobs).await?;
        let q = drain_ours(&db, &bare, o, since).await?;
        println!("{}", row(round, "jobpulse claim → complete", &q));
        ratios.push(q.rate() / b.rate());
        let doubles = b.double_in_memory + b.double_in_db + q.double_in_memory + q.double_in_db;
        anyhow::ensure!(
            doubles == 0 && b.errors == 0 && q.errors == 0,
            "round {round}: {doubles} double claims, {} errors",
            b.errors + q.errors
        );
    }
    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "\nratio (ours / bare) per round = {}   median = {:.2}   (goal ≥ 0.70)",
        list.join(", "),
        sorted[sorted.len() / 2]
    );
    db.close().await;
    bare.close().await;
    Ok(())
}

fn caps_label(c: Caps) -> String {
    if c.is_unlimited() {
        return "off".into();
    }
    let show = |v: Option<u32>| v.map_or("none".to_owned(), |n| n.to_string());
    format!(
        "per tenant {}, global {}",
        show(c.per_tenant),
        show(c.global)
    )
}

fn row(round: usize, way: &str, d: &Drain) -> String {
    format!(
        "| {round} | {way} | {:.0} | {:.2} | {:.2} | {} | {} / {} | {} |",
        d.rate(),
        d.pct_ms(0.50),
        d.pct_ms(0.99),
        d.empty,
        d.double_in_memory,
        d.double_in_db,
        d.errors
    )
}

/// `jobs` PENDING bare rows, tenants round robin (earlier rounds' rows stay, DONE, as ours
/// do); returns the highest id before them.
async fn seed_bare(pool: &PgPool, jobs: u64, tenants: u32) -> anyhow::Result<i64> {
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
async fn seed_ours(db: &Db, pool: &PgPool, tenants: &[TenantId], jobs: u64) -> anyhow::Result<i64> {
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
async fn drain_bare(pool: &PgPool, o: &QueueOptions, since: i64) -> anyhow::Result<Drain> {
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
async fn drain_ours(
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
