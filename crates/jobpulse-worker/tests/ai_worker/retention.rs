//! What an ended job leaves behind (issue 15 finding 11): its uploaded input is deleted (at once
//! by default, or after `job_input_retention`), and the initial passwords of every ended import
//! — failed and rejected ones too — are purged after the credentials retention.

use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_domain::{JobId, JobStatus};
use jobpulse_media::StorageKey;
use jobpulse_worker::ai::inputs::purge_inputs_once;
use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};

use crate::helpers::{Backend, Env, both, job_status};

const LONG: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

/// Uploads `bytes` under a fresh key and submits an import of it; the key and the job.
async fn submit(env: &Env, bytes: Vec<u8>) -> anyhow::Result<(StorageKey, JobId)> {
    let key = env.upload_key()?;
    env.put(&key, bytes).await?;
    let job = env.submit_excel_at(&env.registry(), &key).await?;
    Ok((key, job))
}

async fn kept_inputs(env: &Env) -> anyhow::Result<i64> {
    env.sql_int("SELECT COUNT(*) FROM ai_jobs WHERE input_file_key IS NOT NULL")
        .await
}

async fn inputs_are_deleted_when_their_job_ends(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let sheet = generate_students_workbook(&WorkbookSpec::valid_rows(3))?.bytes;
    // One that ends DONE, one that is no workbook at all (REJECTED_BAD_INPUT).
    let (done_key, done) = submit(&env, sheet.clone()).await?;
    let (bad_key, bad) = submit(&env, b"not a workbook".to_vec()).await?;
    // A waiting job's input is never touched, whatever the retention.
    assert_eq!(
        purge_inputs_once(&env.db, &env.storage, Duration::ZERO).await?,
        0
    );
    assert!(env.storage.exists(&done_key).await?);

    // The default worker: inputs go as soon as their job ends.
    let worker = env.standard_worker("w1").spawn();
    let ended = Instant::now();
    for job in [&done, &bad] {
        let last = env.wait_terminal(job, LONG).await?;
        let status = job_status(&last).context("a job status")?;
        assert!(status.is_terminal(), "{last:?}");
    }
    assert_eq!(
        job_status(&env.wait_terminal(&done, LONG).await?),
        Some(JobStatus::Done)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.storage.exists(&done_key).await? || env.storage.exists(&bad_key).await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the inputs of ended jobs are still in storage 20 s later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = ended.elapsed();
    assert_eq!(kept_inputs(&env).await?, 0, "the keys are cleared too");
    worker.shutdown().await;
    eprintln!("inputs of 2 ended jobs deleted {took:?} after the worker started");

    // With a retention of an hour a job that just ended keeps its input …
    let (kept_key, kept) = submit(&env, sheet).await?;
    let mut config = env.config("w2");
    config.input_retention = Some(HOUR);
    let worker = env.worker(env.registry(), config).spawn();
    env.wait_terminal(&kept, LONG).await?;
    worker.shutdown().await;
    assert!(env.storage.exists(&kept_key).await?);
    assert_eq!(purge_inputs_once(&env.db, &env.storage, HOUR).await?, 0);
    assert_eq!(kept_inputs(&env).await?, 1);
    // … until the retention passed.
    assert_eq!(
        purge_inputs_once(&env.db, &env.storage, Duration::ZERO).await?,
        1
    );
    assert!(!env.storage.exists(&kept_key).await?);
    assert_eq!(kept_inputs(&env).await?, 0);
    assert_eq!(
        purge_inputs_once(&env.db, &env.storage, Duration::ZERO).await?,
        0,
        "once"
    );
    Ok(())
}
both!(inputs_are_deleted_when_their_job_ends);

/// The initial passwords of an import that ended FAILED or REJECTED_BAD_INPUT (or any other
/// terminal status) after issuing some are purged like a DONE one's.
async fn credentials_of_every_ended_import_are_purged(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let worker = env.standard_worker("w1").spawn();
    let mut jobs = Vec::new();
    // 2, 4 and 6 rows of the same generated students one after the other: each import
    // issues passwords to the 2 students the earlier ones did not have.
    for rows in [2, 4, 6] {
        let spec = WorkbookSpec::valid_rows(rows);
        let (_, job) = submit(&env, generate_students_workbook(&spec)?.bytes).await?;
        env.wait_terminal(&job, LONG).await?;
        jobs.push(job);
    }
    worker.shutdown().await;
    // The statuses an import can end in after it issued passwords: a FAILED one (cancelled,
    // or out of attempts, mid-import) and a REJECTED one (bad rows found late) keep the
    // ledger's passwords as a DONE one does.
    for (job, status) in jobs.iter().zip(["DONE", "FAILED", "REJECTED_BAD_INPUT"]) {
        env.sql_int(&format!(
            "UPDATE ai_jobs SET status = '{status}' WHERE job_id = '{job}' \
             RETURNING CAST(1 AS BIGINT)"
        ))
        .await?;
    }
    let in_ledger = "SELECT COUNT(*) FROM import_rows WHERE initial_password IS NOT NULL";
    assert_eq!(env.sql_int(in_ledger).await?, 6);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        env.db.purge_credentials(HOUR, 100).await?,
        0,
        "within the retention"
    );
    assert_eq!(
        env.db
            .purge_credentials(Duration::from_millis(10), 100)
            .await?,
        3
    );
    assert_eq!(env.sql_int(in_ledger).await?, 0);
    Ok(())
}
both!(credentials_of_every_ended_import_are_purged);
