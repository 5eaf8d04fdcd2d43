//! Scenario 3 — Redis unreachable for 30 s: every process reaches Redis through the fault
//! proxy, which blackholes it (connections accepted, nothing forwarded, nothing answered) while
//! a video transcodes and excel imports run and new ones are submitted. Before that, for 4 s,
//! the proxy delays every chunk by 250 ms: a slow Redis, which must only slow polls down.
//!
//! A readiness prober asks `/readyz` every 500 ms throughout the outage and gives up on an
//! answer after 1 s, as a load balancer would: when its request is the store's breaker probe,
//! the API drops the probe with it — which once kept the breaker open for good (the FLAKY of
//! 2026-12-02 in docs/reliability.md; `/readyz`'s own 2 s bound on its check did the same).
//!
//! Pass: the workers keep working (jobs finish in the database during the outage) and their
//! state changes wait in the outbox; `/readyz` reports the outage (503); polls stay bounded in
//! time — an open-loop load of 50 polls a second shows no pile-up (p99 and max under the
//! store's 4 s deadline plus slack, a bounded number in flight) and no 5xx; within 30 s of Redis
//! coming back the read model agrees with the database, the outbox is empty, and every task
//! ends in its final state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::figure;
use crate::harness::load::{self, Pollers, Task, Tenant};
use crate::harness::proxy::Mode;
use crate::harness::stats::{Summary, metric};
use crate::harness::{Cluster, Options, clip, eventually, scaled};

/// Asks `/readyz` every `every` until `stop`, giving up on each answer after 1 s, as a load
/// balancer would (1 s is Kubernetes' default probe timeout); the answers by status, 0 for one
/// given up on.
async fn readiness_prober(port: u16, every: Duration, stop: Arc<AtomicBool>) -> HashMap<u16, u64> {
    let api = crate::harness::http::Api::with_timeout(port, Duration::from_secs(1));
    let mut codes = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let status = api.get("/readyz", None).await.map_or(0, |r| r.status);
        *codes.entry(status).or_default() += 1;
        tokio::time::sleep(every).await;
    }
    codes
}

/// Fires a poll every `every` without waiting for answers; (latency, status or 0) per poll and
/// the most polls in flight at once.
async fn open_loop(
    api: crate::harness::http::Api,
    token: String,
    path: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<(Duration, u16)>, u64) {
    let in_flight = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        let (api, token, path, in_flight, peak) = (
            api.clone(),
            token.clone(),
            path.clone(),
            in_flight.clone(),
            peak.clone(),
        );
        tasks.spawn(async move {
            let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            peak.fetch_max(n, Ordering::Relaxed);
            let started = Instant::now();
            let r = api.get(&path, Some(&token)).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            (started.elapsed(), r.map(|r| r.status).unwrap_or(0))
        });
        tokio::time::sleep(every).await;
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        // A poll task that panicked is a failed poll, not one to leave out.
        match r {
            Ok(x) => out.push(x),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("an open-loop poll was cancelled: {e}"),
        }
    }
    (out, peak.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_for_30_seconds() -> anyhow::Result<()> {
    let c = Cluster::with(Options {
        redis_proxy: true,
        ..Options::default()
    })
    .await?;
    let proxy = c.redis_proxy.as_ref().expect("a proxy");
    let mut tenants = Vec::new();
    for code in ["east", "west"] {
        let seed = c.tenant(code).await?;
        let token = c.token(seed.tenant_id, "staff");
        tenants.push(Tenant { seed, token });
    }
    let tokens: HashMap<i64, String> = tenants
        .iter()
        .map(|t| (t.seed.tenant_id.get(), t.token.clone()))
        .collect();
    let mut server = c.serve(&[]).await?;
    let api = server.api.clone();
    let _ai = c
        .worker("ai", &["--concurrency", "2", "--lease", "5s"])
        .await?;
    let _video = c.worker("video", &["--lease", "5s"]).await?;
    let pg = c.pg();
    let long_clip = clip(c.dir.path(), 16.0, 1280, 720).await?;
    let short_clip = clip(c.dir.path(), 3.0, 320, 240).await?;

    let pollers = Pollers::start(&api, &tenants, 4, Duration::from_millis(50));
    let long = api.upload_video(&tenants[0].token, &long_clip).await?;
    pollers.add(0, Task::Video(long)).await;
    for i in 0..6u64 {
        let t = (i % 2) as usize;
        let (xlsx, _) = load::workbook(40, i)?;
        let id = api
            .submit_excel(&tenants[t].token, tenants[t].seed.lecture_id, xlsx)
            .await?;
        pollers.add(t, Task::Job(id)).await;
    }
    // First a slow Redis: every chunk through the proxy waits 250 ms (each way), for 4 s.
    let unknown_metric = "jobpulse_progress_read_model_unavailable_total";
    let unknown_before = metric(&api.metrics().await?, unknown_metric, &[]);
    proxy.set(Mode::Delay(Duration::from_millis(250)));
    let slow_from = pollers.started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(Mode::Pass);
    let slow_to = pollers.started.elapsed();
    let unknown_slow = metric(&api.metrics().await?, unknown_metric, &[]) - unknown_before;
    // Wait until the long video transcodes, then cut Redis off.
    eventually(
        "the long video transcodes",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            Ok(
                api.video_progress(&tenants[0].token, long).await?["encoding_step_index"].as_i64()
                    == Some(4),
            )
        },
    )
    .await?;
    let outage = Duration::from_secs(scaled(30, 30) as u64);
    let at_cut = load::db_statuses(&pg).await?;
    proxy.set(Mode::Blackhole);
    let cut = Instant::now();
    let cut_at = pollers.started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let open = tokio::spawn(open_loop(
        api.clone(),
        tenants[0].token.clone(),
        format!("/api/v1/media/videos/{long}/progress/"),
        Duration::from_millis(20),
        stop.clone(),
    ));

    let prober = tokio::spawn(readiness_prober(
        server.port,
        Duration::from_millis(500),
        stop.clone(),
    ));

    // /readyz notices.
    let ready_503 = eventually(
        "/readyz reports the outage",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async { Ok(api.get("/readyz", None).await?.status == 503) },
    )
    .await?;
    // New work during the outage: accepted (the database takes it; the outbox keeps it).
    let mut submitted_during = Vec::new();
    for i in 0..4u64 {
        let t = (i % 2) as usize;
        let (xlsx, _) = load::workbook(40, 100 + i)?;
        let r = api
            .submit_excel_raw(&tenants[t].token, tenants[t].seed.lecture_id, xlsx)
            .await?;
        anyhow::ensure!(
            r.status == 201,
            "submit during the outage answered {}: {}",
            r.status,
            r.text()
        );
        let id = r.json()?["job_id"]
            .as_str()
            .context("a job id in the answer")?
            .to_owned();
        pollers.add(t, Task::Job(id.clone())).await;
        submitted_during.push(Task::Job(id));
    }
    let short = api.upload_video(&tenants[1].token, &short_clip).await?;
    pollers.add(1, Task::Video(short)).await;
    submitted_during.push(Task::Video(short));
    // Halfway and at the end of the outage: what the database and the outbox hold.
    let mut max_outbox = 0;
    let mut all_done_after = None;
    while cut.elapsed() < outage {
        let db = load::db_statuses(&pg).await?;
        if all_done_after.is_none() && db.values().all(|(_, s)| s == "DONE" || s == "READY") {
            all_done_after = Some(cut.elapsed());
        }
        max_outbox = max_outbox.max(load::outbox(&pg).await?);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let at_heal = load::db_statuses(&pg).await?;
    let pending_at_cut = at_cut
        .values()
        .filter(|(_, s)| s != "DONE" && s != "READY")
        .count();
    let finished_during = at_heal
        .iter()
        .filter(|(t, (_, s))| {
            (s == "DONE" || s == "READY")
                && at_cut
                    .get(*t)
                    .is_none_or(|(_, b)| b != "DONE" && b != "READY")
        })
        .count();
    let created_during = at_heal.len() - at_cut.len();
    let ready_during = api.get("/readyz", None).await?;
    stop.store(true, Ordering::Relaxed);
    proxy.set(Mode::Pass);
    let healed = Instant::now();
    let healed_at = pollers.started.elapsed();
    let (open_results, open_peak) = open.await?;
    let prober_codes = prober.await?;

    let converged = eventually(
        "the read model agrees with the database",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            Ok(load::outbox(&pg).await? == 0
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await
    .map(|_| healed.elapsed());
    let settled = eventually(
        "every task reached its final state",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let db = load::db_statuses(&pg).await?;
            Ok(db
                .values()
                .all(|(_, s)| matches!(s.as_str(), "READY" | "DONE" | "FAILED")))
        },
    )
    .await;
    let agreed = eventually(
        "agreement at the end",
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async {
            Ok(load::outbox(&pg).await? == 0
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await;
    let ready_after = api.get("/readyz", None).await?;
    let submitted: Vec<Task> = pollers
        .tasks
        .lock()
        .await
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    let seen = pollers.stop().await;
    let db = load::db_statuses(&pg).await?;
    let m = api.metrics().await?;

    let slow: Vec<Duration> = seen
        .latencies
        .iter()
        .filter(|(at, _)| *at >= slow_from && *at < slow_to)
        .map(|x| x.1)
        .collect();
    let during: Vec<Duration> = seen
        .latencies
        .iter()
        .filter(|(at, _)| *at >= cut_at && *at < healed_at)
        .map(|x| x.1)
        .collect();
    let open_lat: Vec<Duration> = open_results.iter().map(|x| x.0).collect();
    let open_codes = open_results
        .iter()
        .fold(HashMap::<u16, u64>::new(), |mut m, x| {
            *m.entry(x.1).or_default() += 1;
            m
        });
    let five = seen
        .codes
        .iter()
        .filter(|(k, _)| **k >= 500)
        .map(|(_, v)| v)
        .sum::<u64>()
        + open_results
            .iter()
            .filter(|x| x.1 >= 500 || x.1 == 0)
            .count() as u64;
    figure!(
        "s03 outage {outage:?}: /readyz 503 after {ready_503:?}, {} at the end of the outage ({}), {} after ({}); the prober's answers during it {prober_codes:?}",
        ready_during.status,
        ready_during.text(),
        ready_after.status,
        ready_after.text()
    );
    // The store's breaker, as the API logged it.
    figure!(
        "s03 API breaker: opened {} times, closed {} times",
        server
            .proc
            .log_lines("failing calls fast while probing it")
            .len(),
        server.proc.log_lines("Redis answers again").len()
    );
    figure!(
        "s03 during the outage: {finished_during} tasks finished in the database ({pending_at_cut} pending at the cut, {created_during} created during it; all done {all_done_after:?} into it), outbox peaked at {max_outbox} rows"
    );
    figure!(
        "s03 polls while Redis answered 250 ms late each way: {} ({unknown_slow} answered UNKNOWN for want of Redis)",
        Summary::of(&slow)
    );
    figure!(
        "s03 closed-loop polls during the outage: {}",
        Summary::of(&during)
    );
    figure!(
        "s03 open-loop polls (50/s) during the outage: {} — answers {open_codes:?}, at most {open_peak} in flight",
        Summary::of(&open_lat)
    );
    figure!(
        "s03 all polls: {:?}, transport errors {}",
        seen.codes,
        seen.errors
    );
    figure!(
        "s03 converged {:?} after Redis came back; outbox errors counted {}",
        converged.as_ref().ok(),
        metric(&m, "jobpulse_outbox_errors_total", &[])
    );
    figure!(
        "s03 final: {:?}",
        db.values()
            .fold(HashMap::<&str, u64>::new(), |mut m, (_, s)| {
                *m.entry(s.as_str()).or_default() += 1;
                m
            })
    );

    anyhow::ensure!(
        server.proc.alive(),
        "serve died\n{}",
        server.proc.log_tail(30)
    );
    anyhow::ensure!(
        ready_during.status == 503,
        "/readyz answered {} during the outage: {}",
        ready_during.status,
        ready_during.text()
    );
    anyhow::ensure!(
        ready_after.status == 200,
        "/readyz answered {} after the outage: {}\n{}",
        ready_after.status,
        ready_after.text(),
        server.proc.log_tail(30)
    );
    anyhow::ensure!(
        prober_codes.get(&503).is_some_and(|n| *n > 0)
            && prober_codes.keys().all(|c| matches!(c, 503 | 200 | 0)),
        "the readiness prober's answers during the outage: {prober_codes:?}"
    );
    anyhow::ensure!(
        all_done_after.is_some(),
        "the workers did not finish their work during the outage: {finished_during} of {} tasks finished: {at_heal:?}",
        pending_at_cut + created_during
    );
    // Each task created during the outage, one by one: the database took it and the workers
    // finished it before Redis came back.
    let unfinished: Vec<String> = submitted_during
        .iter()
        .filter_map(|t| match at_heal.get(t) {
            Some((_, s)) if s == "DONE" || s == "READY" => None,
            other => Some(format!("{t:?}: {other:?}")),
        })
        .collect();
    anyhow::ensure!(
        submitted_during.len() == 5 && unfinished.is_empty(),
        "tasks created during the outage not finished in it: {unfinished:?}"
    );
    anyhow::ensure!(max_outbox > 0, "no state change waited in the outbox");
    crate::invariant!(five == 0, "{five} 5xx or failed polls");
    anyhow::ensure!(
        open_results.len() >= 100,
        "only {} open-loop polls during a {outage:?} outage",
        open_results.len()
    );
    // Slow is not down: real answers (from the API's read cache, or slowly from Redis), not
    // UNKNOWN ones from a tripped breaker.
    let slow_s = Summary::of(&slow);
    anyhow::ensure!(
        unknown_slow == 0.0 && slow_s.max() < Duration::from_secs(2),
        "polls against a slow Redis: {slow_s}, {unknown_slow} answered UNKNOWN for want of Redis"
    );
    let bound = Duration::from_secs(6);
    let (closed, open_s) = (Summary::of(&during), Summary::of(&open_lat));
    anyhow::ensure!(
        closed.max() <= bound && open_s.max() <= bound,
        "polls took up to {:?} / {:?} during the outage",
        closed.max(),
        open_s.max()
    );
    anyhow::ensure!(
        open_peak <= 50 * 6 + 10,
        "{open_peak} polls in flight at once: they pile up"
    );
    let converged = converged?;
    anyhow::ensure!(
        converged <= Duration::from_secs(30),
        "convergence took {converged:?}"
    );
    settled?;
    agreed?;
    anyhow::ensure!(
        db.values().all(|(_, s)| s == "READY" || s == "DONE"),
        "not every task succeeded: {db:?}"
    );
    // Nothing lost: 7 tasks before the outage, 5 during it; each one in the database.
    let lost: Vec<&Task> = submitted.iter().filter(|t| !db.contains_key(t)).collect();
    crate::invariant!(
        submitted.len() == 12 && lost.is_empty() && db.len() == submitted.len(),
        "{} tasks created, {} in the database; lost: {lost:?}",
        submitted.len(),
        db.len()
    );
    seen.invariants(true)?;
    Ok(())
}
