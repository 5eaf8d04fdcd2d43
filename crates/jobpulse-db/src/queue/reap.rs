//! The reaper: RUNNING jobs whose lease expired (their worker crashed or hung) become RETRY_WAIT
//! / RETRYING — or FAILED after the last attempt, or when a cancel was pending — so the read
//! model shows what happened before another worker claims the job. Its writes use
//! `between_attempts`, so anything the lost worker still sends is stale.
//!
//! Any process may reap (workers do it every few seconds); the compare-and-set on
//! `(state, attempt, lease_until)` makes concurrent reapers and late heartbeats harmless.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::table::{self, AiTable, Reap, Reaped, TaskTable, Verdict, VideoTable};
use super::{Queue, ReapReport};
use crate::conn::{ms, now_ms};
use crate::{Db, DbError};

const BATCH: i64 = 100;

impl Db {
    /// One reaper pass over `queue` (at most 100 jobs; call again while it reports work).
    pub async fn reap_expired(&self, queue: Queue) -> Result<ReapReport, DbError> {
        let report = match queue {
            Queue::Video => self.reap::<VideoTable>().await?,
            Queue::Ai => self.reap::<AiTable>().await?,
        };
        for (n, outcome) in [
            (report.retrying, "retry"),
            (report.dead, "dead"),
            (report.cancelled, "cancelled"),
        ] {
            if n > 0 {
                metrics::counter!(
                    "jobpulse_queue_reaped_total",
                    "queue" => queue.as_str(),
                    "outcome" => outcome
                )
                .increment(u64::from(n));
            }
        }
        Ok(report)
    }

    /// One reaper round over `queue`: passes until one leaves nothing more to reap (a full
    /// batch means more may wait), at most 10 (1 000 jobs) so a caller's loop is not held up.
    pub async fn reap_round(&self, queue: Queue) -> Result<(), DbError> {
        for _ in 0..10 {
            let r = self.reap_expired(queue).await?;
            if r.retrying + r.dead + r.cancelled < BATCH as u32 {
                break;
            }
        }
        Ok(())
    }

    /// Reaps `queue` every `every` until `shutdown` (several reapers are harmless; workers reap
    /// in their claim loop).
    pub async fn run_reaper(&self, queue: Queue, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reap_round(queue).await {
                tracing::warn!(queue = queue.as_str(), error = %e, "reaper pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over `T`: each expired job moves on with its verdict, in one transaction.
    async fn reap<T: TaskTable>(&self) -> Result<ReapReport, DbError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let jobs = table::scan::<T>(&mut tx, now, BATCH).await?;
        let mut report = ReapReport::default();
        let mut wrote = false;
        let mut soonest: Option<Duration> = None;
        for job in jobs {
            let v = Verdict::of(job.attempt, job.max_attempts, job.cancel_requested);
            let delay = self.options().queue.backoff.delay(job.attempt);
            let run_after = now.saturating_add(ms(delay));
            let reap = Reap {
                job: &job,
                verdict: v,
                run_after,
                now,
            };
            match T::reap(&mut tx, reap).await? {
                Reaped::Skipped => continue,
                Reaped::Closed => {
                    report.cancelled += 1;
                    continue;
                }
                Reaped::Moved => {}
            }
            wrote = true;
            match v {
                Verdict::Retry => {
                    report.retrying += 1;
                    soonest = Some(soonest.map_or(delay, |s: Duration| s.min(delay)));
                }
                Verdict::Dead => report.dead += 1,
                Verdict::Cancelled => report.cancelled += 1,
            }
            tracing::warn!(
                tenant.id = %job.tenant,
                job = %job.label,
                attempt = job.attempt,
                verdict = ?v,
                queue = T::QUEUE.as_str(),
                "reaped an expired job"
            );
        }
        self.commit(tx, wrote).await?;
        if let Some(delay) = soonest {
            self.signals().wake_after(T::QUEUE, delay);
        }
        Ok(report)
    }
}
