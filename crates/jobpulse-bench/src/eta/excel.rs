//! The excel import's remaining time: a generated workbook of valid students imported by a real
//! `AiWorker` (standard handlers) on the embedded backends; its enrolling step (3) is checked at
//! the same points as the transcode, against when step 4 (done) appeared.

use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::NewAiJob;
use jobpulse_domain::{JobType, Status, TaskKey};
use jobpulse_media::StorageKey;
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig, HandlerSettings, Registry};
use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};
use tokio::sync::broadcast::error::RecvError;

use super::{checks, report};
use crate::pipeline::Embedded;

/// Imports `rows` valid students `rounds` times (a fresh lecture's worth each time) and prints
/// the enrolling step's table.
#[allow(clippy::print_stdout)] // The report is this command's output.
pub(super) async fn run(env: &Embedded, rows: u32, rounds: usize) -> anyhow::Result<()> {
    let mut settings = HandlerSettings::default();
    settings.excel_import.seal = jobpulse_db::CredentialSeal::random();
    let registry = Registry::standard(settings);
    let worker = AiWorker::new(
        env.db.clone(),
        env.store.clone(),
        env.relay.clone(),
        env.storage.clone(),
        registry.clone(),
        AiWorkerConfig::default(),
    )
    .spawn();
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let seed = env
            .db
            .create_tenant(&format!("eta{round}"), "ETA academy")
            .await?;
        let mut spec = WorkbookSpec::valid_rows(rows);
        spec.seed = round as u64;
        let book = generate_students_workbook(&spec).context("writing the workbook")?;
        let key = StorageKey::parse(&format!(
            "tenants/{}/uploads/eta{round}.xlsx",
            seed.tenant_id
        ))?;
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(
            book.bytes,
        ))]);
        env.storage.put_stream(&key, body, u64::MAX).await?;
        let mut job = NewAiJob::new(seed.tenant_id, JobType::parse(JobType::EXCEL_PARSING)?);
        job.lecture_id = Some(seed.lecture_id);
        job.input_file_key = Some(key.as_str().to_owned());
        if let Some(info) = registry.describe(JobType::EXCEL_PARSING) {
            info.apply_to(&mut job);
        }
        let mut feed = env.store.subscribe();
        let t0 = Instant::now();
        let out = env.db.submit_ai_job(job).await?;
        env.relay.publish_now(&out.outbox).await?;
        let task = TaskKey::job(seed.tenant_id, out.value.job.job_id.clone());
        let mut samples = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let change = match tokio::time::timeout_at(deadline, feed.recv()).await {
                Err(_) => anyhow::bail!("the import of {rows} rows did not end within 600 s"),
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => anyhow::bail!("the read model's feed closed"),
                Ok(Ok(c)) => c,
            };
            let Some(snap) = change.snapshot.filter(|_| change.key == task) else {
                continue;
            };
            let t = t0.elapsed();
            if let Status::Job(s) = snap.state.status
                && s.is_terminal()
            {
                // The end of the last step, whatever the step the last state showed.
                samples.push((t, u8::MAX, 0, None));
                break;
            }
            if let Some(step) = &snap.state.step {
                samples.push((
                    t,
                    step.index,
                    step.percent.get(),
                    snap.state.remaining_seconds,
                ));
            }
        }
        let c = checks(&samples, 3);
        println!(
            "- import of {rows} rows, round {round}: submit→DONE {:.1} s, {} checks",
            samples.last().map_or(0.0, |s| s.0.as_secs_f64()),
            c.len()
        );
        runs.push((format!("import {rows} rows #{round}"), c));
    }
    worker.shutdown().await;
    report("excel import (step 3, enrolling)", &runs);
    Ok(())
}
