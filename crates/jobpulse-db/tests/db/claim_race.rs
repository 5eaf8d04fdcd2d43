//! Many claimers at once (issue 14 item 7, found with `jobpulse-bench --only queue`): 32
//! concurrent claimers take every AI job exactly once, and under a per-tenant cap — which on
//! PostgreSQL locks the claimed job's tenant, not the whole queue — no tenant ever runs more than
//! its cap. Both databases; counted in memory and from the database afterwards.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{AiOutcome, Caps, Claim, ClaimedTask, DbOptions, NewAiJob, Queue};
use jobpulse_domain::{JobResult, JobType, TenantId};

use crate::helpers::{Backend, TestDb, both, test_db_with, test_options};

const CLAIMERS: usize = 32;
const LEASE: Duration = Duration::from_secs(30);

async fn racing_db(b: Backend) -> anyhow::Result<TestDb> {
    test_db_with(
        b,
        DbOptions {
            max_connections: 16,
            ..test_options()
        },
    )
    .await
}

async fn submit(t: &TestDb, tenants: &[TenantId], per_tenant: usize) -> anyhow::Result<()> {
    for i in 0..per_tenant {
        for tenant in tenants {
            t.db.submit_ai_job(NewAiJob::new(*tenant, JobType::parse("excel_parsing")?))
                .await
                .with_context(|| format!("job {i}"))?;
        }
    }
    Ok(())
}

async fn tenants(t: &TestDb, n: usize, prefix: &str) -> anyhow::Result<Vec<TenantId>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            t.db.create_tenant(&format!("{prefix}{i}"), "Racing academy")
                .await?
                .tenant_id,
        );
    }
    Ok(out)
}

fn job_id(c: &Claim) -> anyhow::Result<String> {
    match &c.task {
        ClaimedTask::Ai(job) => Ok(job.job_id.as_str().to_owned()),
        ClaimedTask::Video { .. } => anyhow::bail!("a video claim from the AI queue"),
    }
}

async fn thirty_two_claimers_take_each_job_once(b: Backend) -> anyhow::Result<()> {
    let t = racing_db(b).await?;
    let ts = tenants(&t, 4, "race").await?;
    submit(&t, &ts, 24).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CLAIMERS {
        let db = t.db.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            // Uncapped: nothing here is ever given back, so no job left means nothing to do.
            while let Some(c) = db
                .claim(Queue::Ai, &format!("w{w}"), LEASE, Caps::default())
                .await?
            {
                mine.push(job_id(&c)?);
                let done = AiOutcome::done(
                    serde_json::json!({"rows": 1}),
                    JobResult::whole(serde_json::json!({"rows": 1}))?,
                );
                db.complete_ai_job(&c, done, Claim::FIRST_PROGRESS_SEQ)
                    .await?;
            }
            anyhow::Ok(mine)
        });
    }
    let mut times: HashMap<String, u32> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        for id in r?? {
            *times.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    assert_eq!(times.len(), 96, "every job claimed");
    assert_eq!(
        t.raw_int("SELECT COUNT(*) FROM ai_jobs WHERE status = 'DONE' AND attempt = 1")
            .await?,
        96,
        "every job DONE after exactly one attempt"
    );
    Ok(())
}
both!(thirty_two_claimers_take_each_job_once);

async fn racing_claimers_keep_the_per_tenant_cap(b: Backend) -> anyhow::Result<()> {
    const CAP: u32 = 3;
    let t = racing_db(b).await?;
    let ts = tenants(&t, 4, "capped").await?;
    submit(&t, &ts, 10).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CLAIMERS {
        let db = t.db.clone();
        tasks.spawn(async move {
            db.claim(
                Queue::Ai,
                &format!("w{w}"),
                LEASE,
                Caps::per_tenant(Some(CAP)),
            )
            .await
        });
    }
    // Every claim holds its job (nothing completes), so the caps decide how many run.
    let mut per_tenant: HashMap<TenantId, u32> = HashMap::new();
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(c) = r?? {
            *per_tenant.entry(c.tenant).or_default() += 1;
            ids.push(job_id(&c)?);
        }
    }
    for tenant in &ts {
        assert_eq!(
            per_tenant.get(tenant).copied().unwrap_or(0),
            CAP,
            "tenant {tenant}: {per_tenant:?}"
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ts.len() * CAP as usize, "a job claimed twice");
    assert_eq!(
        t.raw_int("SELECT COUNT(*) FROM ai_jobs WHERE status = 'RUNNING'")
            .await?,
        i64::from(CAP) * 4
    );
    Ok(())
}
both!(racing_claimers_keep_the_per_tenant_cap);
