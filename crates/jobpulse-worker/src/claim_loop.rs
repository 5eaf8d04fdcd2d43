//! The claim loop every task kind's worker runs, written once ([`run`]), generic over what a
//! [`TaskKind`] supplies: its queue, the span of an attempt, and how one claimed [`Attempt`]
//! runs (its work under the [`lease`](crate::lease), then its final write). The worker hands
//! the loop its database, its relay and its [`WorkerConfig`].
//!
//! # The loop
//!
//! - Reaps the queue's expired leases every `reap_every` ([`Db::reap_round`]), *before* it
//!   claims: claims never take an expired job themselves, so a lost worker's job always shows
//!   its retry before its next attempt, even when no other worker runs.
//! - Claims up to `concurrency` attempts at once, each on a task of its own (a `JoinSet`, so
//!   dropping [`run`]'s future stops everything, as a killed process would). When nothing is
//!   runnable it sleeps in [`Db::wait_for_work`] (LISTEN/NOTIFY on PostgreSQL, in-process
//!   signals on SQLite) for at most `idle_wait`.
//! - A failed claim (the database unreachable) is retried after a backoff that doubles from
//!   200 ms up to `idle_wait`; one warning per streak of failures, one line when claims work
//!   again.
//! - Each attempt's claim write (PROCESSING / RUNNING) is published at once, so the state
//!   change shows before the first progress tick; the background relay delivers it when that
//!   fails. Each attempt counts in `jobpulse_worker_busy{queue}` while it runs, then once in
//!   `jobpulse_worker_attempts_total{queue, outcome}` (the outcome its kind returned) and
//!   `jobpulse_worker_attempt_seconds{queue}`.
//! - An attempt that panicked is logged at error level; the loop goes on (its lease expires and
//!   the reaper schedules a retry).
//!
//! # Shutdown
//!
//! When `shutdown` fires the loop stops claiming, stops every running attempt
//! ([`StopReason::Shutdown`]: each gives its job back with `Db::release`, unless its work
//! finished anyway), and waits up to `shutdown_grace` for them; attempts still running then are
//! abandoned, and their leases expire like a crashed worker's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::{Claim, Db, Queue};
use jobpulse_sync::Relay;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lease::{Stop, StopReason, publish};

mod config;

pub(crate) use config::hostname;
pub use config::{WorkerConfig, default_worker_id};

/// What the claim loop needs of a task kind (the video worker, the AI worker).
pub trait TaskKind: Send + Sync + 'static {
    /// The queue this kind claims from.
    const QUEUE: Queue;

    /// The span every line of one attempt carries (tenant, task, attempt, …).
    fn span(&self, claim: &Claim) -> tracing::Span;

    /// Runs one claimed attempt to its end: the work beside the lease's keep-alive, then the
    /// attempt's one final write. Returns the outcome label of
    /// `jobpulse_worker_attempts_total`.
    fn run_attempt(self: Arc<Self>, attempt: Attempt) -> impl Future<Output = &'static str> + Send;
}

/// One claimed attempt, as the loop hands it to its [`TaskKind`].
#[derive(Debug)]
pub struct Attempt {
    pub claim: Claim,
    /// An instant no later than the claim (the lease runs from the claim statement).
    pub claimed_at: Instant,
    /// Stopped with [`StopReason::Shutdown`] when the worker shuts down; the keep-alive stops
    /// it for its own reasons.
    pub stop: Arc<Stop>,
}

/// Claims and runs `kind`'s tasks from `db` until `shutdown` fires, then gives running ones back
/// (see the module docs); `relay` publishes each claim at once. Database errors are logged and
/// retried.
pub async fn run<K: TaskKind>(
    kind: Arc<K>,
    db: Db,
    relay: Relay,
    c: WorkerConfig,
    shutdown: CancellationToken,
) {
    let queue = K::QUEUE;
    let concurrency = c.concurrency.max(1);
    let mut running: JoinSet<()> = JoinSet::new();
    let mut stops: HashMap<tokio::task::Id, Arc<Stop>> = HashMap::new();
    let mut next_reap = Instant::now();
    let mut failures = ClaimFailures::default();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if Instant::now() >= next_reap {
            if let Err(e) = db.reap_round(queue).await {
                tracing::warn!(queue = queue.as_str(), error = %e, "reaping expired leases failed");
            }
            next_reap = Instant::now() + c.reap_every;
        }
        while running.len() < concurrency && !shutdown.is_cancelled() {
            // The lease runs from the claim statement, which happens after this instant.
            let asked = Instant::now();
            match db.claim(queue, &c.worker_id, c.lease, c.caps).await {
                Ok(claimed) => {
                    if let Some(n) = failures.succeeded() {
                        tracing::info!(
                            queue = queue.as_str(),
                            failures = n,
                            "claiming works again"
                        );
                    }
                    let Some(claim) = claimed else { break };
                    let stop = Arc::new(Stop::new());
                    let attempt = Attempt {
                        claim,
                        claimed_at: asked,
                        stop: stop.clone(),
                    };
                    let handle = running.spawn(run_one(kind.clone(), relay.clone(), attempt));
                    stops.insert(handle.id(), stop);
                }
                Err(e) => {
                    if failures.failed() {
                        tracing::warn!(
                            queue = queue.as_str(),
                            error = %e,
                            "claiming failed; retrying with backoff"
                        );
                    }
                    break;
                }
            }
        }
        let until_reap = next_reap.saturating_duration_since(Instant::now());
        let backoff = failures.pause(c.idle_wait);
        let can_claim = running.len() < concurrency && backoff.is_none();
        let pause = backoff.unwrap_or(c.idle_wait).min(until_reap);
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = running.join_next_with_id() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                stops.remove(&id);
                if let Err(e) = done {
                    log_abnormal_end(queue, &e);
                }
            }
            _ = db.wait_for_work(queue, pause), if can_claim => {}
            () = tokio::time::sleep(pause), if !can_claim => {}
        }
    }

    tracing::info!(
        queue = queue.as_str(),
        worker.id = %c.worker_id,
        running = running.len(),
        "worker stopping; giving running jobs back"
    );
    for stop in stops.values() {
        stop.stop(StopReason::Shutdown);
    }
    let drained = tokio::time::timeout(c.shutdown_grace, async {
        while let Some(done) = running.join_next().await {
            if let Err(e) = done {
                log_abnormal_end(queue, &e);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            queue = queue.as_str(),
            worker.id = %c.worker_id,
            left = running.len(),
            "attempts did not end within the shutdown grace period; abandoning them \
             (their leases will expire)"
        );
        running.shutdown().await;
    }
}

/// One claimed attempt, in its span: publish the claim, run it, count it.
async fn run_one<K: TaskKind>(kind: Arc<K>, relay: Relay, attempt: Attempt) {
    let queue = K::QUEUE.as_str();
    let span = kind.span(&attempt.claim);
    async move {
        let _busy = Busy::new(queue);
        let started = Instant::now();
        publish(&relay, std::slice::from_ref(&attempt.claim.outbox), "claim").await;
        let outcome = kind.run_attempt(attempt).await;
        metrics::counter!(
            "jobpulse_worker_attempts_total",
            "queue" => queue,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("jobpulse_worker_attempt_seconds", "queue" => queue)
            .record(started.elapsed().as_secs_f64());
    }
    .instrument(span)
    .await;
}

fn log_abnormal_end(queue: Queue, e: &JoinError) {
    if e.is_panic() {
        // The lease expires and the reaper schedules a retry; what the attempt owned was dropped
        // on unwind (a video's work files, its ffmpeg).
        tracing::error!(queue = queue.as_str(), error = %e, "an attempt panicked");
    }
}

/// Keeps `jobpulse_worker_busy` right however the attempt ends (including a panic).
struct Busy(&'static str);

impl Busy {
    fn new(queue: &'static str) -> Self {
        metrics::gauge!("jobpulse_worker_busy", "queue" => queue).increment(1.0);
        Busy(queue)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        metrics::gauge!("jobpulse_worker_busy", "queue" => self.0).decrement(1.0);
    }
}

/// The current streak of failed claims and the backoff it calls for.
#[derive(Debug, Default)]
struct ClaimFailures(u32);

impl ClaimFailures {
    /// Counts a failed claim; true for the first of a streak (the one that is logged).
    fn failed(&mut self) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 == 1
    }

    /// Ends the streak; its length when there was one.
    fn succeeded(&mut self) -> Option<u32> {
        let n = std::mem::take(&mut self.0);
        (n > 0).then_some(n)
    }

    /// The wait before the next claim while failing: 200 ms after the first failure, doubling,
    /// at most `cap`; `None` when the last claim worked.
    fn pause(&self, cap: Duration) -> Option<Duration> {
        (self.0 > 0).then(|| {
            Duration::from_millis(100)
                .saturating_mul(1 << self.0.min(8))
                .min(cap)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_failures_back_off_exponentially_up_to_the_cap_and_log_once_a_streak() {
        let cap = Duration::from_secs(5);
        let mut f = ClaimFailures::default();
        assert_eq!(f.pause(cap), None);
        let mut logged = 0;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            logged += u32::from(f.failed());
            pauses.push(f.pause(cap).expect("failing").as_millis());
        }
        assert_eq!(pauses, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(logged, 1, "one warning per streak");
        assert_eq!(f.succeeded(), Some(8));
        assert_eq!((f.succeeded(), f.pause(cap)), (None, None));
        assert!(f.failed(), "a new streak is logged again");
        assert_eq!(
            f.pause(Duration::from_millis(50)),
            Some(Duration::from_millis(50))
        );
    }
}
