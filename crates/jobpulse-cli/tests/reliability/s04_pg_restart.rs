//! Scenario 4 — PostgreSQL "restarted" mid-run. The shared PostgreSQL server is not touched:
//! every jobpulse process reaches its database through the fault proxy, which resets every
//! connection and then blackholes new ones for 5 s before passing again — what a restart looks
//! like to clients (connections drop, the server is away for a while, then answers again).
//!
//! Load: two AI workers (2 slots each) and a video worker, all with a 3 s lease — shorter than
//! the outage, so every running attempt's lease expires meanwhile — running excel imports and a
//! transcode. Every attempt's start and stop are read from the workers' logs.
//!
//! Then a partition: the first AI worker reaches the database through a second proxy of its
//! own, which blackholes it alone for 8 s (its connections hang, nothing is reset) while it runs
//! a big import; the other AI worker, which still reaches the database, takes the job over once
//! the lease expired. The partitioned worker must have stopped its attempt by then.
//!
//! Pass: workers and relay reconnect (every task reaches its final state, the outbox drains, the
//! read model agrees with the database); no job runs twice concurrently (no two attempts of one
//! job overlap in time, across both AI workers); no job is lost or duplicated (every import
//! DONE, each student once).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::figure;
use crate::harness::load::{self, Pollers, Task, Tenant};
use crate::harness::procs::Proc;
use crate::harness::proxy::Mode;
use crate::harness::runs::{attempts, overlaps};
use crate::harness::{Cluster, Options, clip, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run() -> anyhow::Result<()> {
    let c = Cluster::with(Options {
        pg_proxy: true,
        ..Options::default()
    })
    .await?;
    let proxy = c.pg_proxy.as_ref().expect("a proxy");
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
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    // The first AI worker goes through a proxy of its own (in front of the shared one), so it can
    // be partitioned alone.
    let own = crate::harness::proxy::Proxy::start(proxy.addr()).await?;
    let own_url = c
        .db_url()
        .replace(&format!(":{}/", proxy.port), &format!(":{}/", own.port));
    let mut cmd = c.command(&["worker", "ai", "--concurrency", "2", "--lease", "3s"]);
    cmd.env("DATABASE_URL", &own_url);
    let mut ai1 = Proc::spawn("worker-ai-1", cmd, &c.log_path("ai-1"))?;
    ai1.wait_for_log("AI worker started", Duration::from_secs(30))
        .await?;
    let ai2 = c
        .worker("ai", &["--concurrency", "2", "--lease", "3s"])
        .await?;
    let video = c.worker("video", &["--lease", "3s"]).await?;
    let pg = c.pg();
    let clip = clip(c.dir.path(), 12.0, 1280, 720).await?;

    let pollers = Pollers::start(&api, &tenants, 4, Duration::from_millis(30));
    let vid = api.upload_video(&tenants[0].token, &clip).await?;
    pollers.add(0, Task::Video(vid)).await;
    let mut expected: HashMap<i64, usize> = HashMap::new();
    for i in 0..8u64 {
        let t = (i % 2) as usize;
        let rows = 150 + 10 * i as u32;
        let (xlsx, unique) = load::workbook(rows, i)?;
        let id = api
            .submit_excel(&tenants[t].token, tenants[t].seed.lecture_id, xlsx)
            .await?;
        pollers.add(t, Task::Job(id)).await;
        let e = expected.entry(tenants[t].seed.tenant_id.get()).or_default();
        *e = (*e).max(unique);
    }
    // Wait until work is under way: some import RUNNING and the video transcoding.
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
    let running_at_cut = load::db_statuses(&pg)
        .await?
        .values()
        .filter(|(_, s)| s == "RUNNING" || s == "PROCESSING")
        .count();
    proxy.set(Mode::Reset);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resets = proxy
        .stats
        .resets
        .load(std::sync::atomic::Ordering::Relaxed);
    proxy.set(Mode::Blackhole);
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set(Mode::Pass);
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
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            Ok(load::outbox(&pg).await? == 0
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await
    .map(|_| back.elapsed());

    // The partition of the first AI worker, while it runs a big import.
    ai2.stop()?;
    let (xlsx, unique) = load::workbook(1500, 99)?;
    let big = api
        .submit_excel(&tenants[0].token, tenants[0].seed.lecture_id, xlsx)
        .await?;
    pollers.add(0, Task::Job(big.clone())).await;
    let e = expected.entry(tenants[0].seed.tenant_id.get()).or_default();
    *e = (*e).max(unique);
    let ai1_id = format!("{}-{}", crate::harness::hostname(), ai1.pid());
    eventually(
        "the first AI worker runs the big import",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let owner: Option<String> = sqlx::query_scalar(
                "SELECT lease_owner FROM ai_jobs WHERE job_id = $1 AND status = 'RUNNING'",
            )
            .bind(&big)
            .fetch_optional(&pg)
            .await?
            .flatten();
            Ok(owner.as_deref() == Some(ai1_id.as_str()))
        },
    )
    .await?;
    ai2.cont()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    own.set(Mode::Blackhole);
    let partitioned = Instant::now();
    // Sessions left inside a transaction by the cut-off worker hold row locks (an import row's
    // foreign key takes FOR KEY SHARE on the job row) that hide the job from the reaper's
    // SKIP LOCKED until the server ends them (idle_in_transaction_session_timeout, 5 s).
    let stuck_sessions = {
        let pg = pg.clone();
        tokio::spawn(async move {
            let mut counts = Vec::new();
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                // The oldest open transaction of another session, in seconds.
                let age: f64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM now() - xact_start)), 0)::float8 \
                     FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
                )
                .fetch_one(&pg)
                .await
                .unwrap_or(-1.0);
                counts.push(format!("{age:.1}"));
            }
            counts
        })
    };
    let taken_over = eventually(
        "the other AI worker takes the big import over",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM ai_jobs WHERE job_id = $1")
                .bind(&big)
                .fetch_one(&pg)
                .await?;
            Ok(attempt >= 2)
        },
    )
    .await;
    let stuck_sessions = stuck_sessions.await?;
    if taken_over.is_err() {
        let row: (String, i64, Option<String>, Option<i64>) = sqlx::query_as(
            "SELECT status, attempt, lease_owner, lease_until FROM ai_jobs WHERE job_id = $1",
        )
        .bind(&big)
        .fetch_one(&pg)
        .await?;
        figure!(
            "s04 partition: no takeover; the big import's row (status, attempt, owner, lease_until ms): {row:?}"
        );
        figure!(
            "s04 partition: the other worker's log:\n{}",
            ai2.log_tail(40)
        );
    }
    figure!(
        "s04 partition: oldest open transaction of another session at 2, 4, 6, 8 s: {stuck_sessions:?} s"
    );
    let remaining = Duration::from_secs(8).saturating_sub(partitioned.elapsed());
    tokio::time::sleep(remaining).await;
    own.set(Mode::Pass);
    let big_done = eventually(
        "the big import ends",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let s: String = sqlx::query_scalar("SELECT status FROM ai_jobs WHERE job_id = $1")
                .bind(&big)
                .fetch_one(&pg)
                .await?;
            Ok(s == "DONE")
        },
    )
    .await;
    let agreed_b = eventually(
        "the read model agrees after the partition",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            Ok(load::outbox(&pg).await? == 0
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await;

    let seen = pollers.stop().await;
    let db = load::db_statuses(&pg).await?;
    let students = load::students(&pg).await?;
    let duplicates = load::duplicate_students(&pg).await?;
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_jobs WHERE attempt > 1")
        .fetch_one(&pg)
        .await?;
    let video_attempts: i64 = sqlx::query_scalar("SELECT max(attempt) FROM video_jobs")
        .fetch_one(&pg)
        .await?;
    let mut runs = BTreeMap::new();
    let mut unread = Vec::new();
    for (proc, start, stop) in [
        (&ai1, "job attempt started", "job attempt stopped"),
        (&ai2, "job attempt started", "job attempt stopped"),
        (
            &video,
            "transcode attempt started",
            "transcode attempt ended",
        ),
    ] {
        attempts(proc, start, stop, &mut runs, &mut unread);
    }
    let (overlapping, closest) = overlaps(&runs);
    // The runs cover the database (the overlap check is only as good as the runs it was given):
    // every job's last attempt — the one that finished it — was read from a log. An earlier
    // attempt may have no run: a claim whose answer a reset connection lost was never run.
    let mut unlogged = Vec::new();
    let mut never_run = Vec::new();
    for (sql, kind) in [
        ("SELECT job_id, attempt FROM ai_jobs", "import"),
        ("SELECT id::text, attempt FROM video_jobs", "video job"),
    ] {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&pg).await?;
        for (job, attempt) in rows {
            let last = u32::try_from(attempt)?;
            for a in 1..=last {
                if !runs.contains_key(&(job.clone(), a)) {
                    let v = if a == last {
                        &mut unlogged
                    } else {
                        &mut never_run
                    };
                    v.push(format!("{kind} {job} attempt {a}"));
                }
            }
        }
    }

    figure!(
        "s04 {resets} connections reset, then 5 s blackholed; {running_at_cut} tasks running at the cut"
    );
    figure!(
        "s04 after the restart: all tasks final {:?}, read model agreed {:?}",
        settled.as_ref().ok(),
        agreed.as_ref().ok()
    );
    figure!(
        "s04 attempts: {} runs logged; {retried} imports retried, video attempts {video_attempts}; overlapping runs of one job: {}; closest hand-over {closest:?} ms (one run's stop to another's start); claimed attempts never run: {never_run:?}",
        runs.values().map(Vec::len).sum::<usize>(),
        overlapping.len()
    );
    figure!(
        "s04 final: {:?}; students {students:?} (expected {expected:?}), duplicates {duplicates}",
        db.values()
            .fold(HashMap::<&str, u64>::new(), |mut m, (_, s)| {
                *m.entry(s.as_str()).or_default() += 1;
                m
            })
    );
    figure!(
        "s04 polls: {:?}, transport errors {}",
        seen.codes,
        seen.errors
    );
    figure!(
        "s04 partition of one AI worker: big import taken over after {:?}, done: {}",
        taken_over.as_ref().ok(),
        big_done.is_ok()
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
    settled?;
    agreed?;
    taken_over?;
    big_done?;
    agreed_b?;
    anyhow::ensure!(
        db.values().all(|(_, s)| s == "READY" || s == "DONE"),
        "not every task succeeded: {db:?}"
    );
    crate::invariant!(duplicates == 0, "{duplicates} duplicate students");
    crate::invariant!(
        expected.len() == 2,
        "imports ran for {} tenants",
        expected.len()
    );
    for (tenant, n) in &expected {
        crate::invariant!(
            students.get(tenant).copied().unwrap_or(0) == *n as i64,
            "tenant {tenant}: {:?} students, expected {n}",
            students.get(tenant)
        );
    }
    let five = seen
        .codes
        .iter()
        .filter(|(k, _)| **k >= 500)
        .map(|(_, v)| v)
        .sum::<u64>();
    crate::invariant!(five == 0, "{five} 5xx answers from the progress routes");
    seen.invariants(true)?;
    Ok(())
}
