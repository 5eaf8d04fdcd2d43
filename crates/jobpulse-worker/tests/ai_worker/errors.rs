//! How attempts end when they do not succeed: bad input, no handler, transient errors, timeouts.

use std::time::Duration;

use anyhow::Context;
use jobpulse_db::NewAiJob;
use jobpulse_domain::steps::{self, StepPlan};
use jobpulse_domain::{JobStatus, JobType};
use jobpulse_worker::ai::{
    Handler, HandlerError, HandlerOutput, HandlerSettings, JobContext, Registry,
};
use jobpulse_worker::excel::import::{self, Limits};
use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};
use rust_xlsxwriter::Workbook;

use crate::helpers::{Backend, Env, both, job_status, watch_until_terminal};

const LONG: Duration = Duration::from_secs(120);

/// A sheet whose only phone column is `연락처` (the student's): no parent phone column.
fn sheet_without_parent_phone() -> anyhow::Result<Vec<u8>> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["번호", "이름", "연락처"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h)?;
    }
    for r in 1..=5u32 {
        sheet.write_number(r, 0, f64::from(r))?;
        sheet.write_string(r, 1, format!("학생{r}"))?;
        sheet.write_string(r, 2, format!("010-1234-000{r}"))?;
    }
    Ok(book.save_to_buffer()?)
}

async fn missing_column_is_rejected_with_its_message(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let bytes = sheet_without_parent_phone()?;
    let message = import::import_xlsx(&bytes, &Limits::default(), |_| {})
        .err()
        .context("the parser refuses the sheet")?
        .to_string();
    assert!(
        message.starts_with("필수 열을 찾지 못했습니다: 부모 전화번호"),
        "{message}"
    );
    let registry = Registry::standard(HandlerSettings::default());
    let worker = env.standard_worker("w1").spawn();
    let job = env.submit_excel(&registry, bytes).await?;
    let last = env.wait_terminal(&job, LONG).await?;
    worker.shutdown().await;

    assert_eq!(
        job_status(&last),
        Some(JobStatus::RejectedBadInput),
        "{last:?}"
    );
    assert_eq!(
        last.error.as_ref().map(|e| e.as_str()),
        Some(message.as_str())
    );
    assert_eq!(last.attempt, Some(1), "bad input is not retried");
    assert_eq!(last.result, None);
    assert!(env.db.import_rows(&job).await?.is_empty());
    let row = env
        .db
        .get_ai_job(env.tenant(), &job)
        .await?
        .context("job")?;
    assert_eq!(row.status, JobStatus::RejectedBadInput);
    assert_eq!(row.error_message.as_deref(), Some(message.as_str()));
    Ok(())
}
both!(missing_column_is_rejected_with_its_message);

async fn a_type_without_a_handler_fails_clearly(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let registry = Registry::standard(HandlerSettings::default());
    assert_eq!(
        registry.describe("ppt_generation"),
        None,
        "the API would refuse it"
    );
    // Submitted anyway (an older API, or a newer one next to this worker).
    let job = env
        .submit(
            &registry,
            NewAiJob::new(env.tenant(), JobType::parse("ppt_generation")?),
        )
        .await?;
    let worker = env.standard_worker("w1").spawn();
    let last = env.wait_terminal(&job, LONG).await?;
    worker.shutdown().await;

    assert_eq!(job_status(&last), Some(JobStatus::Failed), "{last:?}");
    let error = last.error.context("an error message")?;
    assert!(
        error
            .as_str()
            .starts_with("no handler for job type `ppt_generation`"),
        "{error:?}"
    );
    assert_eq!(last.attempt, Some(1), "not retried");
    Ok(())
}
both!(a_type_without_a_handler_fails_clearly);

async fn missing_input_is_retried_until_it_appears(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(20))?;
    let registry = Registry::standard(HandlerSettings::default());
    let key = env.upload_key()?;
    let feed = env.subscribe().await?;
    // Submitted before its file is in storage.
    let job = env.submit_excel_at(&registry, &key).await?;
    let worker = env.standard_worker("w1").spawn();
    let retrying = env
        .wait_for(&job, LONG, "RETRYING", |s| {
            job_status(s) == Some(JobStatus::Retrying)
        })
        .await?;
    env.put(&key, g.bytes).await?;
    let seen = watch_until_terminal(feed, env.key(&job), LONG).await?;
    worker.shutdown().await;

    let attempt = retrying.attempt.context("RETRYING shows the attempt")?;
    assert!(attempt >= 1);
    let error = retrying.error.context("RETRYING shows why")?;
    assert!(
        error.as_str().contains("input file not in media storage"),
        "{error:?}"
    );
    let last = seen.last().context("states")?;
    assert_eq!(job_status(last), Some(JobStatus::Done), "{last:?}");
    assert!(last.attempt.is_some_and(|a| a > attempt), "{last:?}");
    assert!(
        seen.iter()
            .any(|s| job_status(s) == Some(JobStatus::Retrying)),
        "RETRYING was published: {seen:?}"
    );
    let report = env
        .db
        .get_ai_result(env.tenant(), &job)
        .await?
        .context("result")?;
    assert_eq!(report["created"], 20);
    Ok(())
}
both!(missing_input_is_retried_until_it_appears);

/// A handler that sleeps far longer than any test waits.
#[derive(Debug)]
struct Sleeper {
    job_type: &'static str,
    timeout: Duration,
    max_attempts: u32,
}

#[async_trait::async_trait]
impl Handler for Sleeper {
    fn job_type(&self) -> &'static str {
        self.job_type
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn needs_file(&self) -> bool {
        false
    }
    fn staff_only(&self) -> bool {
        false
    }
    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    fn plan(&self) -> StepPlan {
        steps::EXPORT
    }
    async fn run(&self, ctx: &JobContext) -> Result<HandlerOutput, HandlerError> {
        ctx.reporter.step(1).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        HandlerOutput::done_public(serde_json::json!({"slept": true}))
    }
}

/// The standard handlers plus `sleeper_test` (times out after 300 ms, 2 attempts) and
/// `napper_test` (a 10-minute timeout).
fn sleepy_registry() -> Registry {
    Registry::standard(HandlerSettings::default())
        .with(Sleeper {
            job_type: "sleeper_test",
            timeout: Duration::from_millis(300),
            max_attempts: 2,
        })
        .with(Sleeper {
            job_type: "napper_test",
            timeout: Duration::from_secs(600),
            max_attempts: 3,
        })
        .with(Sleeper {
            job_type: "last_nap_test",
            timeout: Duration::from_secs(600),
            max_attempts: 1,
        })
}

async fn a_timeout_is_retried_then_fails(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let registry = sleepy_registry();
    let info = registry.describe("sleeper_test").context("registered")?;
    assert_eq!(info.max_attempts, 2);
    let feed = env.subscribe().await?;
    let job = env
        .submit(
            &registry,
            NewAiJob::new(env.tenant(), JobType::parse("sleeper_test")?),
        )
        .await?;
    let worker = env.worker(registry.clone(), env.config("w1")).spawn();
    let seen = watch_until_terminal(feed, env.key(&job), LONG).await?;
    worker.shutdown().await;

    let ends: Vec<(JobStatus, Option<u32>, Option<String>)> = seen
        .iter()
        .filter_map(|s| {
            let st = job_status(s)?;
            (st != JobStatus::Running && st != JobStatus::Pending).then(|| {
                (
                    st,
                    s.attempt,
                    s.error.as_ref().map(|e| e.as_str().to_owned()),
                )
            })
        })
        .collect();
    let msg = Some("timed out after 300 ms".to_owned());
    assert_eq!(
        ends,
        [
            (JobStatus::Retrying, Some(1), msg.clone()),
            (JobStatus::Failed, Some(2), msg)
        ],
        "{seen:?}"
    );
    let attempts: Vec<u32> = seen
        .iter()
        .filter(|s| job_status(s) == Some(JobStatus::Running))
        .filter_map(|s| s.attempt)
        .collect();
    assert!(
        attempts.contains(&1) && attempts.contains(&2),
        "{attempts:?}"
    );
    Ok(())
}
both!(a_timeout_is_retried_then_fails);

/// A shutdown gives the job back without using up an attempt — here the job's only one, which
/// `fail` would have turned into FAILED.
async fn shutdown_gives_running_jobs_back(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let registry = sleepy_registry();
    let job = env
        .submit(
            &registry,
            NewAiJob::new(env.tenant(), JobType::parse("last_nap_test")?),
        )
        .await?;
    let worker = env.worker(registry.clone(), env.config("w1")).spawn();
    env.wait_for(&job, LONG, "RUNNING", |s| s.step.is_some())
        .await?;
    let started = std::time::Instant::now();
    worker.shutdown().await;
    // The handler naps for 600 s; a shutdown that waited for it would take that long.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown does not wait for the handler: {:?}",
        started.elapsed()
    );
    let state = env.state(&job).await?.context("state")?;
    assert_eq!(job_status(&state), Some(JobStatus::Retrying), "{state:?}");
    assert_eq!(state.attempt, Some(1));
    let error = state.error.context("why")?;
    assert!(error.as_str().contains("worker stopped"), "{error:?}");
    let row = env
        .db
        .get_ai_job(env.tenant(), &job)
        .await?
        .context("row")?;
    assert_eq!(
        (row.attempt, row.max_attempts),
        (1, 2),
        "no attempt used up by the shutdown"
    );
    // Another worker picks it up at once (no backoff).
    let next = env.worker(registry, env.config("w2")).spawn();
    env.wait_for(&job, LONG, "attempt 2 running", |s| {
        job_status(s) == Some(JobStatus::Running) && s.attempt == Some(2)
    })
    .await?;
    next.shutdown().await;
    Ok(())
}
both!(shutdown_gives_running_jobs_back);

async fn a_cancel_reaches_the_running_handler(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let registry = sleepy_registry();
    let job = env
        .submit(
            &registry,
            NewAiJob::new(env.tenant(), JobType::parse("napper_test")?),
        )
        .await?;
    let worker = env.worker(registry.clone(), env.config("w1")).spawn();
    env.wait_for(&job, LONG, "RUNNING", |s| s.step.is_some())
        .await?;
    let asked = env.db.cancel_ai_job(env.tenant(), &job).await?;
    assert_eq!(asked.value, jobpulse_db::CancelOutcome::Requested);
    // Seen on the next heartbeat (every 2 s).
    let last = env.wait_terminal(&job, LONG).await?;
    worker.shutdown().await;
    assert_eq!(job_status(&last), Some(JobStatus::Failed), "{last:?}");
    assert_eq!(last.error.as_ref().map(|e| e.as_str()), Some("cancelled"));
    assert_eq!(last.attempt, Some(1));
    Ok(())
}
both!(a_cancel_reaches_the_running_handler);
