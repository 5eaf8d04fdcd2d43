//! The claim loop ([`jobpulse_worker::claim_loop`]) on the AI queue with a task kind of the
//! test's own, showing what it does better than the AI worker's former loop (one claim loop per
//! slot): an attempt that panics does not take its slot with it, and a shutdown does not wait
//! past `shutdown_grace` for an attempt that will not stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{Claim, NewAiJob, Queue};
use jobpulse_domain::{JobStatus, JobType};
use jobpulse_sync::Relay;
use jobpulse_worker::claim_loop::{self, Attempt, TaskKind, WorkerConfig};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, Env, both};

/// What every attempt of [`Kind`] does.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Panics (outside any handler's `catch_unwind`).
    Panic,
    /// Never ends, and ignores its stop.
    Hang,
}

#[derive(Debug)]
struct Kind {
    mode: Mode,
    claimed: AtomicUsize,
}

impl TaskKind for Kind {
    const QUEUE: Queue = Queue::Ai;

    fn span(&self, claim: &Claim) -> tracing::Span {
        tracing::info_span!("test_attempt", job.attempt = claim.attempt())
    }

    async fn run_attempt(self: Arc<Self>, _attempt: Attempt) -> &'static str {
        self.claimed.fetch_add(1, Ordering::SeqCst);
        match self.mode {
            Mode::Panic => panic!("an attempt panicked outside its handler"),
            Mode::Hang => std::future::pending().await,
        }
    }
}

/// `jobs` jobs of a type no handler runs, and the loop's kind.
async fn setup(
    env: &Env,
    mode: Mode,
    jobs: usize,
) -> anyhow::Result<(Arc<Kind>, Vec<jobpulse_domain::JobId>)> {
    let kind = Arc::new(Kind {
        mode,
        claimed: AtomicUsize::new(0),
    });
    let registry = env.registry();
    let mut ids = Vec::new();
    for _ in 0..jobs {
        let job = NewAiJob::new(env.tenant(), JobType::parse("loop_test")?);
        ids.push(env.submit(&registry, job).await?);
    }
    Ok((kind, ids))
}

/// The claim loop over `kind`: one slot, a short shutdown grace.
fn spawn_loop(env: &Env, kind: &Arc<Kind>, shutdown: &CancellationToken) -> JoinHandle<()> {
    let config = WorkerConfig {
        concurrency: 1,
        shutdown_grace: Duration::from_millis(300),
        ..env.config("loop-test").common
    };
    let relay = Relay::new(env.db.clone(), env.store.clone());
    tokio::spawn(claim_loop::run(
        kind.clone(),
        env.db.clone(),
        relay,
        config,
        shutdown.clone(),
    ))
}

async fn until_claimed(kind: &Kind, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while kind.claimed.load(Ordering::SeqCst) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} claimed",
            kind.claimed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn a_panicking_attempt_does_not_take_its_slot_with_it(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let (kind, _) = setup(&env, Mode::Panic, 3).await?;
    let shutdown = CancellationToken::new();
    let running = spawn_loop(&env, &kind, &shutdown);
    // One slot: the second and third claims happen only if the loop outlived the first panic.
    until_claimed(&kind, 3).await?;
    assert!(!running.is_finished(), "the loop goes on after panics");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .context("the loop stops")??;
    Ok(())
}
both!(a_panicking_attempt_does_not_take_its_slot_with_it);

async fn shutdown_abandons_an_attempt_that_outlives_the_grace(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let (kind, ids) = setup(&env, Mode::Hang, 1).await?;
    let shutdown = CancellationToken::new();
    let running = spawn_loop(&env, &kind, &shutdown);
    until_claimed(&kind, 1).await?;
    let asked = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .context("the loop returns after the grace, not when the attempt ends")??;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Abandoned as a crash would: nothing was written, the lease will expire.
    let job = env
        .db
        .get_ai_job(env.tenant(), &ids[0])
        .await?
        .context("the job")?;
    assert_eq!(job.status, JobStatus::Running);
    Ok(())
}
both!(shutdown_abandons_an_attempt_that_outlives_the_grace);
