//! Scenario 11 — a real PostgreSQL restart (issue 15, finding 13). Scenario 4 imitates a
//! restart with a proxy; here the test runs a PostgreSQL server of its own (`initdb` into a temp
//! dir, `pg_ctl start` on a free port — the shared server is never touched) and restarts it for
//! real mid-run, twice: `pg_ctl stop -m fast` (sessions ended, clean shutdown), 3 s down,
//! `pg_ctl start`; then `pg_ctl stop -m immediate` (the server quits without a checkpoint and
//! recovers from its WAL at the next start), 3 s down, start.
//!
//! Load: `serve`, two AI workers (2 slots each) and a video worker, all with a 3 s lease, running
//! excel imports and a transcode, with pollers reading the progress routes throughout.
//!
//! Pass: every process reconnects by itself (no restart of ours); every task reaches its final
//! state and succeeds; the outbox drains and the read model agrees with the database; no job ran
//! twice at once (no two runs of one job overlap, across both AI workers; the runs are read from
//! the workers' logs and must cover every job's final attempt); every import's students exist
//! once; no poll answered 5xx.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::figure;
use crate::harness::load::{self, Pollers, Task, Tenant};
use crate::harness::pg::OwnPostgres;
use crate::harness::runs::{attempts, overlaps, uncovered};
use crate::harness::{Cluster, Options, clip, eventually};

/// Submits `n` imports (alternating tenants) and returns the students each tenant expects.
async fn imports(
    api: &crate::harness::http::Api,
    tenants: &[Tenant],
    pollers: &Pollers,
    n: u64,
    salt: u64,
    expected: &mut HashMap<i64, usize>,
) -> anyhow::Result<()> {
    for i in 0..n {
        let t = (i % 2) as usize;
        let rows = 150 + 10 * i as u32;
        let (xlsx, unique) = load::workbook(rows, salt + i)?;
        let id = api
            .submit_excel(&tenants[t].token, tenants[t].seed.lecture_id, xlsx)
            .await?;
        pollers.add(t, Task::Job(id)).await;
        let e = expected.entry(tenants[t].seed.tenant_id.get()).or_default();
        *e = (*e).max(unique);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_really_restarted_mid_run() -> anyhow::Result<()> {
    let pg_dir = tempfile::Builder::new().prefix("jp-own-pg-").tempdir()?;
    let server = OwnPostgres::start(pg_dir.path()).await?;
    let c = Cluster::with(Options {
        pg_server: Some(server.url("postgres")),
        ..Options::default()
    })
    .await?;
    let mut tenants = Vec::new();
    for code in ["alpha", "beta"] {
        let seed = c.tenant(code).await?;
        let token = c.token(seed.tenant_id, "staff");
        tenants.push(Tenant { seed, token });
    }
    let tokens: HashMap<i64, String> = tenants
        .iter()
        .map(|t| (t.seed.tenant_id.get(), t.token.clone()))
        .collect();
    let serve = c.serve(&[]).await?;
    let api = serve.api.clone();
    let ai = [
        c.worker("ai", &["--concurrency", "2", "--lease", "3s"])
            .await?,
        c.worker("ai", &["--concurrency", "2", "--lease", "3s"])
            .await?,
    ];
    let video = c.worker("video", &["--lease", "3s"]).await?;
    let pg = c.pg();
    let clip_path = clip(c.dir.path(), 12.0, 1280, 720).await?;
    let pollers = Pollers::start(&api, &tenants, 4, Duration::from_millis(30));
    let mut expected: HashMap<i64, usize> = HashMap::new();
    let mut restarts = Vec::new();

    for (round, mode) in ["fast", "immediate"].into_iter().enumerate() {
        let vid = api
            .upload_video(&tenants[round % 2].token, &clip_path)
            .await?;
        pollers.add(round % 2, Task::Video(vid)).await;
        imports(
            &api,
            &tenants,
            &pollers,
            6,
            100 * round as u64,
            &mut expected,
        )
        .await?;
        eventually(
            "work under way",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let db = load::db_statuses(&pg).await?;
                Ok(db.values().any(|(_, s)| s == "RUNNING")
                    && db
                        .get(&Task::Video(vid))
                        .is_some_and(|(_, s)| s == "PROCESSING"))
            },
        )
        .await?;
        let running = load::db_statuses(&pg)
            .await?
            .values()
            .filter(|(_, s)| s == "RUNNING" || s == "PROCESSING")
            .count();
        let stopped = server.stop(mode).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let started = server.start_server().await?;
        let back = Instant::now();
        let settled = eventually(
            "every task reached its final state",
            Duration::from_secs(150),
            Duration::from_millis(500),
            || async {
                let db = load::db_statuses(&pg).await?;
                Ok(db
                    .values()
                    .all(|(_, s)| matches!(s.as_str(), "READY" | "DONE" | "FAILED")))
            },
        )
        .await
        .map(|_| back.elapsed());
        let agreed = eventually(
            "the read model agrees and the outbox is empty",
            Duration::from_secs(30),
            Duration::from_millis(250),
            || async {
                Ok(load::outbox(&pg).await? == 0
                    && load::mismatches(&api, &pg, &tokens).await?.is_empty())
            },
        )
        .await
        .map(|_| back.elapsed());
        figure!(
            "s11 restart {} (-m {mode}): {running} tasks running; stop took {stopped:?}, down 3 s, start took {started:?}; all final after {:?}, read model agreed after {:?}",
            round + 1,
            settled.as_ref().ok(),
            agreed.as_ref().ok()
        );
        if settled.is_err() || agreed.is_err() {
            figure!("s11 serve log:\n{}", serve.proc.log_tail(30));
            figure!("s11 AI worker log:\n{}", ai[0].log_tail(30));
            figure!("s11 PostgreSQL log:\n{}", server.log_tail(30));
        }
        restarts.push((settled?, agreed?));
    }

    let seen = pollers.stop().await;
    let db = load::db_statuses(&pg).await?;
    let students = load::students(&pg).await?;
    let duplicates = load::duplicate_students(&pg).await?;
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_jobs WHERE attempt > 1")
        .fetch_one(&pg)
        .await?;
    let mut runs = BTreeMap::new();
    let mut unread = Vec::new();
    for proc in &ai {
        attempts(
            proc,
            "job attempt started",
            "job attempt stopped",
            &mut runs,
            &mut unread,
        );
    }
    attempts(
        &video,
        "transcode attempt started",
        "transcode attempt ended",
        &mut runs,
        &mut unread,
    );
    let (overlapping, closest) = overlaps(&runs);
    let (unlogged, never_run) = uncovered(&pg, &runs).await?;
    let reconnect_lines: usize = [&serve.proc, &ai[0], &ai[1], &video]
        .iter()
        .map(|p| {
            p.log()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .count()
        })
        .sum();
    figure!(
        "s11 attempts: {} runs logged; {retried} imports retried; overlapping runs of one job: {}; closest hand-over {closest:?} ms; claimed attempts never run: {never_run:?}",
        runs.values().map(Vec::len).sum::<usize>(),
        overlapping.len()
    );
    figure!(
        "s11 final: {:?}; students {students:?} (expected {expected:?}), duplicates {duplicates}; warnings/errors logged across processes: {reconnect_lines}",
        db.values()
            .fold(HashMap::<&str, u64>::new(), |mut m, (_, s)| {
                *m.entry(s.as_str()).or_default() += 1;
                m
            })
    );
    figure!(
        "s11 polls: {:?}, transport errors {}",
        seen.codes,
        seen.errors
    );

    crate::invariant!(
        unread.is_empty() && unlogged.is_empty() && !runs.is_empty(),
        "the attempt log does not cover the run: {} runs read; unreadable lines {unread:?}; attempts without a run: {unlogged:?}",
        runs.len()
    );
    crate::invariant!(
        overlapping.is_empty(),
        "attempts of one job ran concurrently:\n{}",
        overlapping.join("\n")
    );
    crate::invariant!(
        seen.codes.keys().all(|c| *c < 500),
        "polls answered 5xx: {:?}",
        seen.codes
    );
    crate::invariant!(duplicates == 0, "{duplicates} duplicate students");
    anyhow::ensure!(
        db.len() == 14 && db.values().all(|(_, s)| s == "READY" || s == "DONE"),
        "not every task succeeded: {db:?}"
    );
    for (tenant, want) in &expected {
        anyhow::ensure!(
            students.get(tenant).map(|n| *n as usize) == Some(*want),
            "tenant {tenant}: {:?} students, expected {want}",
            students.get(tenant)
        );
    }
    anyhow::ensure!(restarts.len() == 2);
    Ok(())
}
