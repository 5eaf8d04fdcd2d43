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
//!
//! The submodules: `setup` (the scratch database and the seeding of each side's jobs) and
//! `drain` (the claimers of each side and what they measured).

mod drain;
mod setup;

use std::time::Duration;

use jobpulse_db::{Caps, Db, DbOptions};
use sqlx::postgres::PgPoolOptions;

use self::drain::{drain_bare, drain_ours};
use self::setup::{Scratch, seed_bare, seed_ours};

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
