//! Scenario 10 — memory pressure: the own redis-server runs with `maxmemory 16mb` and
//! `maxmemory-policy noeviction`. After a first batch of imports, filler keys take Redis to its
//! limit (and the limit is then set just under what is used, so that no write slips through
//! while client buffers come and go); more imports are submitted and run while every write to
//! Redis is refused with `OOM`; then the limit is lifted.
//!
//! Pass: the API keeps answering (no 5xx; submissions accepted), the workers finish their work
//! (the database has every job DONE), the refused writes fail loudly — the relay's error counter
//! and the pending-outbox gauge rise in `/metrics` and `serve` logs the `OOM` — and once memory is
//! raised the outbox drains and the read model agrees with the database for every task
//! (nothing lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::figure;
use crate::harness::load::{self, Pollers, Task, Tenant};
use crate::harness::stats::metric;
use crate::harness::{Cluster, Options, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_at_maxmemory_refuses_writes_and_nothing_is_lost() -> anyhow::Result<()> {
    let c = Cluster::with(Options {
        redis_args: ["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    })
    .await?;
    let seed = c.tenant("full").await?;
    let token = c.token(seed.tenant_id, "staff");
    let tenants = vec![Tenant {
        seed,
        token: token.clone(),
    }];
    let tokens: HashMap<i64, String> = HashMap::from([(seed.tenant_id.get(), token.clone())]);
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let _ai = c
        .worker("ai", &["--concurrency", "2", "--lease", "5s"])
        .await?;
    let pg = c.pg();
    let pollers = Pollers::start(&api, &tenants, 3, Duration::from_millis(30));

    for i in 0..3u64 {
        let (xlsx, _) = load::workbook(30, i)?;
        let id = api.submit_excel(&token, seed.lecture_id, xlsx).await?;
        pollers.add(0, Task::Job(id)).await;
    }
    eventually(
        "the first imports are done and shown",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            Ok(load::db_statuses(&pg)
                .await?
                .values()
                .all(|(_, s)| s == "DONE")
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await?;
    let before = api.metrics().await?;

    // Fill Redis to its limit (big values until one is refused), then pin the limit below what
    // is used, so that every write is refused however client buffers come and go.
    let chunk = "x".repeat(256 * 1024);
    let mut filler = 0;
    loop {
        match c
            .redis
            .cmd(&["SET", &format!("filler:{filler}"), &chunk])
            .await
        {
            Ok(_) => filler += 1,
            Err(e) if e.to_string().contains("OOM") => break,
            Err(e) => return Err(e),
        }
        anyhow::ensure!(filler < 1000, "Redis never refused a write");
    }
    let used_bytes: u64 = c.redis.info_field("memory", "used_memory").await?.parse()?;
    c.redis
        .cmd(&[
            "CONFIG",
            "SET",
            "maxmemory",
            &(used_bytes - 512 * 1024).to_string(),
        ])
        .await?;
    anyhow::ensure!(
        c.redis.cmd(&["SET", "probe", "x"]).await.is_err(),
        "Redis still takes writes"
    );
    let used = c.redis.info_field("memory", "used_memory_human").await?;

    // Work while every write is refused.
    let full_since = Instant::now();
    let mut during = Vec::new();
    for i in 0..6u64 {
        let (xlsx, _) = load::workbook(30, 10 + i)?;
        let r = api.submit_excel_raw(&token, seed.lecture_id, xlsx).await?;
        anyhow::ensure!(
            r.status == 201,
            "submit at maxmemory answered {}: {}",
            r.status,
            r.text()
        );
        let id = r.json()?["job_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no job id in {}", r.text()))?
            .to_owned();
        pollers.add(0, Task::Job(id.clone())).await;
        during.push(Task::Job(id));
    }
    let done_in_db = eventually(
        "the workers finish at maxmemory",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            Ok(load::db_statuses(&pg)
                .await?
                .values()
                .all(|(_, s)| s == "DONE"))
        },
    )
    .await?;
    let pending = load::outbox(&pg).await?;
    // The relay retries with a backoff of up to 5 s: let it fail a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loud = api.metrics().await?;
    let errors = metric(&loud, "jobpulse_outbox_errors_total", &[])
        - metric(&before, "jobpulse_outbox_errors_total", &[]);
    let gauge = metric(&loud, "jobpulse_outbox_pending", &[]);
    let store_errors = metric(&loud, "jobpulse_store_errors_total", &[])
        - metric(&before, "jobpulse_store_errors_total", &[]);
    let oom_logged = server.proc.log_lines("OOM").len();
    let still_shown = load::mismatches(&api, &pg, &tokens).await?.len();

    // Raise the limit.
    c.redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]).await?;
    let raised = Instant::now();
    let converged = eventually(
        "the outbox drains and the read model agrees",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            Ok(load::outbox(&pg).await? == 0
                && load::mismatches(&api, &pg, &tokens).await?.is_empty())
        },
    )
    .await
    .map(|_| raised.elapsed());
    let seen = pollers.stop().await;
    let after = api.metrics().await?;
    let five = seen
        .codes
        .iter()
        .filter(|(k, _)| **k >= 500)
        .map(|(_, v)| v)
        .sum::<u64>();

    figure!(
        "s10 Redis full at {used} after {filler} filler keys; {} imports submitted and done in the database {done_in_db:?} later ({:?} since full)",
        during.len(),
        full_since.elapsed()
    );
    figure!(
        "s10 while full: outbox {pending} rows (gauge {gauge}), relay errors +{errors}, store errors +{store_errors}, {oom_logged} OOM log lines, {still_shown} tasks not shown yet"
    );
    figure!(
        "s10 after raising maxmemory: converged {:?}; outbox gauge {}",
        converged.as_ref().ok(),
        metric(&after, "jobpulse_outbox_pending", &[])
    );
    figure!(
        "s10 polls: {:?}, transport errors {}",
        seen.codes,
        seen.errors
    );

    crate::invariant!(five == 0, "{five} 5xx answers");
    anyhow::ensure!(
        pending > 0 && gauge > 0.0,
        "nothing waited in the outbox (rows {pending}, gauge {gauge})"
    );
    anyhow::ensure!(errors > 0.0, "the relay's error counter did not rise");
    anyhow::ensure!(
        oom_logged > 0,
        "serve did not log the OOM\n{}",
        server.proc.log_tail(30)
    );
    anyhow::ensure!(
        still_shown > 0,
        "the read model showed the new jobs although Redis refused every write"
    );
    let converged = converged?;
    anyhow::ensure!(
        converged <= Duration::from_secs(15),
        "convergence took {converged:?}"
    );
    seen.invariants(true)?;
    // Nothing lost: each import submitted while Redis was full is DONE in the database.
    let db = load::db_statuses(&pg).await?;
    let not_done: Vec<String> = during
        .iter()
        .filter_map(|t| match db.get(t) {
            Some((_, s)) if s == "DONE" => None,
            other => Some(format!("{t:?}: {other:?}")),
        })
        .collect();
    crate::invariant!(
        during.len() == 6 && not_done.is_empty(),
        "imports submitted at maxmemory not DONE: {not_done:?}"
    );
    crate::invariant!(
        load::duplicate_students(&pg).await? == 0,
        "duplicate students"
    );
    Ok(())
}
