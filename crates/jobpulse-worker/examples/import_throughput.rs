//! Import throughput of the `excel_parsing` job end to end on PostgreSQL: a generated 10 000-row
//! sheet submitted like the API does and run by a real [`AiWorker`] (claim, download from media
//! storage, parse, one transaction per row with generated and hashed credentials, result,
//! final write), timed from submit to DONE, with the time of each step.
//!
//! Baselines measured in the same run, on the same database:
//! - `plain INSERT`: the same number of single-row `INSERT INTO students` statements, one
//!   autocommit transaction each, sequential — the floor of "one transaction per row";
//! - `hash only`: generating and hashing the same number of passwords on the same threads;
//! - `parse only`: `excel::import::import_xlsx` on the same bytes.
//!
//! The read model is the in-process store (its cost is not what is measured here).
//!
//! Run (needs PostgreSQL; `JOBPULSE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a scratch database is created and dropped):
//! `cargo run --release -p jobpulse-worker --example import_throughput`

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobpulse_db::{Db, NewAiJob};
use jobpulse_domain::{JobStatus, JobType, Status, TaskKey};
use jobpulse_media::{MediaStorage, StorageKey};
use jobpulse_store::{MemoryStore, SharedStore};
use jobpulse_sync::Relay;
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig, HandlerSettings, Registry};
use jobpulse_worker::claim_loop::WorkerConfig;
use jobpulse_worker::excel::credentials;
use jobpulse_worker::excel::import::{self, Limits};
use jobpulse_worker::excel::testing::{HeaderStyle, WorkbookSpec, generate_students_workbook};
use sqlx::Connection;

const ROWS: u32 = 10_000;

fn admin_url() -> String {
    std::env::var("JOBPULSE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn database_url(admin: &str, name: &str) -> String {
    match admin.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{name}", &admin[..i]),
        _ => format!("{admin}/{name}"),
    }
}

fn spec() -> WorkbookSpec {
    WorkbookSpec {
        seed: 10_000,
        siblings: 100,
        duplicates: 200,
        bad_parent_phone: 100,
        blank: 50,
        title_rows: 1,
        header_style: HeaderStyle::Random,
        shuffle_columns: true,
        numeric_phones: true,
        ..WorkbookSpec::valid_rows(ROWS - 300)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = admin_url();
    let name = format!("jp_bench_{:016x}", rand::random::<u64>());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("PostgreSQL at {admin}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut c)
        .await?;
    let result = run(&database_url(&admin, &name)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut c)
    .await?;
    result
}

async fn run(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let dir = tempfile::tempdir()?;
    let storage = MediaStorage::local(dir.path())?;
    let g = generate_students_workbook(&spec())?;
    let rows = g.expected.data_rows;
    let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    println!(
        "sheet: {rows} data rows ({} distinct students, {} KiB); {threads} hashing thread(s)",
        g.expected.unique(),
        g.bytes.len() / 1024
    );

    // Baseline: plain single-row INSERTs, one autocommit transaction each.
    let base_tenant = db.create_tenant("baseline", "Baseline").await?.tenant_id;
    let mut pg = sqlx::PgConnection::connect(url).await?;
    let fixed_hash = credentials::hash_password("baseline")?;
    let t = Instant::now();
    for i in 0..rows {
        sqlx::query(
            "INSERT INTO students (tenant_id, name, phone, parent_phone, school, grade, \
             login_id, password_hash, created_at, updated_at) \
             VALUES ($1, $2, NULL, $3, '서울중학교', '2', $4, $5, 0, 0)",
        )
        .bind(base_tenant.get())
        .bind(format!("학생{i}"))
        .bind(format!("010{:08}", i))
        .bind(format!("b{i}"))
        .bind(&fixed_hash)
        .execute(&mut pg)
        .await?;
    }
    let insert = t.elapsed();
    report("baseline: plain INSERT, 1 per row", rows, insert);

    // Baseline: hashing alone, as the import does it.
    let passwords = (0..g.expected.unique())
        .map(|_| credentials::generate_password())
        .collect::<Result<Vec<_>, _>>()?;
    let t = Instant::now();
    let n = passwords.len();
    tokio::task::spawn_blocking(move || credentials::hash_passwords(&passwords, threads, &|_| {}))
        .await??;
    let hashing = t.elapsed();
    report(
        &format!("baseline: hash only ({n} passwords)"),
        rows,
        hashing,
    );

    // Baseline: parsing alone.
    let t = Instant::now();
    let parsed = import::import_xlsx(&g.bytes, &Limits::default(), |_| {})?;
    let parsing = t.elapsed();
    report("baseline: parse only", parsed.rows.len() as u32, parsing);

    // The real thing, twice (a fresh tenant each time).
    for run in 1..=2 {
        let seed = db
            .create_tenant(&format!("academy{run}"), "Academy")
            .await?;
        let memory = Arc::new(MemoryStore::default());
        let store: SharedStore = memory.clone();
        let registry = Registry::standard(HandlerSettings::default());
        let worker = AiWorker::new(
            db.clone(),
            store.clone(),
            Relay::new(db.clone(), store.clone()),
            storage.clone(),
            registry.clone(),
            {
                let mut c = AiWorkerConfig::default();
                c.common = WorkerConfig {
                    worker_id: "bench".into(),
                    concurrency: 1,
                    idle_wait: Duration::from_millis(50),
                    ..c.common
                };
                c
            },
        )
        .spawn();
        let key = StorageKey::parse(&format!("tenants/{}/uploads/bench.xlsx", seed.tenant_id))?;
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(
            g.bytes.clone(),
        ))]);
        storage.put_stream(&key, body, u64::MAX).await?;
        let mut feed = store.subscribe();

        let t = Instant::now();
        let mut job = NewAiJob::new(seed.tenant_id, JobType::parse(JobType::EXCEL_PARSING)?);
        job.lecture_id = Some(seed.lecture_id);
        job.input_file_key = Some(key.as_str().to_owned());
        if let Some(info) = registry.describe(JobType::EXCEL_PARSING) {
            info.apply_to(&mut job);
        }
        let submitted = db.submit_ai_job(job).await?;
        Relay::new(db.clone(), store.clone())
            .publish_now(&submitted.outbox)
            .await?;
        let task = TaskKey::job(seed.tenant_id, submitted.value.job.job_id.clone());
        let mut step_started: BTreeMap<u8, Duration> = BTreeMap::new();
        let end = loop {
            let change = tokio::time::timeout(Duration::from_secs(900), feed.recv())
                .await
                .context("no end within 15 minutes")??;
            if change.key != task {
                continue;
            }
            let Some(snap) = change.snapshot else {
                continue;
            };
            if let Some(step) = &snap.state.step {
                step_started
                    .entry(step.index)
                    .or_insert_with(|| t.elapsed());
            }
            if let Status::Job(s) = snap.state.status
                && s.is_terminal()
            {
                break (s, t.elapsed());
            }
        };
        worker.shutdown().await;
        if end.0 != JobStatus::Done {
            bail!("the import ended {:?}", end.0);
        }
        let total = end.1;
        report(&format!("import run {run}: submit → DONE"), rows, total);
        let mut marks: Vec<(String, Duration)> = step_started
            .iter()
            .map(|(i, d)| (format!("step {i}"), *d))
            .collect();
        marks.push(("DONE".into(), total));
        let spans: Vec<String> = marks
            .windows(2)
            .map(|w| format!("{} {:.2} s", w[0].0, (w[1].1 - w[0].1).as_secs_f64()))
            .collect();
        println!("    steps: {}", spans.join(" · "));
        println!(
            "    vs plain INSERT: {:.2}x the time; vs hash only: {:.2}x",
            total.as_secs_f64() / insert.as_secs_f64(),
            total.as_secs_f64() / hashing.as_secs_f64()
        );
    }
    db.close().await;
    Ok(())
}

fn report(label: &str, rows: u32, d: Duration) {
    println!(
        "{label:<45} {:>8.2} s  {:>8.0} rows/s",
        d.as_secs_f64(),
        f64::from(rows) / d.as_secs_f64()
    );
}
