//! One claimed AI attempt: the handler under its timeout beside the lease's keep-alive, then the
//! attempt's one final write (the table in the parent module's docs). The lease protocol is
//! [`crate::lease`]'s, the claim loop around it [`crate::claim_loop`]'s.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jobpulse_db::{AiOutcome, Claim, ClaimedTask, FailOutcome, ReleaseOutcome};
use jobpulse_domain::{JobStatus, State, WriteKind};
use tokio::time::Instant;

use super::Inner;
use crate::ai::{HandlerError, HandlerOutput, JobContext};
use crate::lease::{Lease, Settled, Stop};
use crate::progress::Reporter;

impl Inner {
    /// Runs one claimed attempt to its end; returns its outcome label.
    pub(super) async fn run_claim(
        &self,
        claim: Claim,
        claimed_at: Instant,
        stop: &Stop,
    ) -> &'static str {
        let lease = Lease::new(&self.db, &self.relay, &claim);
        let ClaimedTask::Ai(job) = &claim.task else {
            tracing::error!("the AI queue handed out a video job");
            return "lost";
        };
        let Some(handler) = self.registry.get(job.job_type.as_str()).cloned() else {
            let message = format!(
                "no handler for job type `{}` in this worker (known: {})",
                job.job_type,
                self.registry.job_types().join(", ")
            );
            tracing::error!(job.id = %job.job_id, "job.type" = %job.job_type, "{message}");
            let outcome = lease.fail(&message, false).await;
            return if outcome.is_ok() {
                "no_handler"
            } else {
                "lost"
            };
        };

        let base = match &claim.outbox.write.kind {
            WriteKind::Set(s) => s.clone(),
            _ => {
                let mut s = State::job(JobStatus::Running, job.job_type.clone());
                s.attempt = Some(claim.attempt());
                s
            }
        };
        let reporter = Arc::new(
            Reporter::new(
                self.store.clone(),
                claim.key.clone(),
                claim.fence,
                handler.plan(),
                base,
            )
            .with_min_interval(self.config.common.progress_every),
        );
        let ctx = JobContext {
            job: job.clone(),
            db: self.db.clone(),
            storage: self.storage.clone(),
            reporter: reporter.clone(),
            cancel: stop.token().clone(),
        };

        let timeout = handler.timeout();
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            "job attempt started"
        );
        let run = AssertUnwindSafe(tokio::time::timeout(timeout, handler.run(&ctx))).catch_unwind();
        let keep_alive = lease.keep_alive(
            self.config.common.heartbeat_every,
            &reporter,
            stop,
            claimed_at,
        );
        // A shutdown stops the attempt through `stop` (the claim loop's).
        let result = tokio::select! {
            biased;
            () = stop.token().cancelled() => None,
            r = run => Some(r),
            never = keep_alive => match never {},
        };
        // Whatever the handler left running (threads, producers) watches this token.
        stop.token().cancel();
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            "job attempt stopped"
        );

        let outcome = match lease.settle(stop, result).await {
            Settled::Lost => {
                tracing::info!(job.id = %job.job_id, attempt = claim.attempt(), "lease lost; attempt abandoned");
                "lost"
            }
            Settled::Cancel => match lease.cancelled().await {
                Ok(()) => "cancelled",
                Err(_) => "lost",
            },
            Settled::Release => {
                let reason = "interrupted: the worker stopped before the job finished";
                match lease.release(reason).await {
                    Ok(ReleaseOutcome::Released) => "requeued",
                    Ok(ReleaseOutcome::Cancelled) => "cancelled",
                    Err(_) => "lost",
                }
            }
            Settled::Finished(Err(_panic)) => {
                tracing::error!(job.id = %job.job_id, "job.type" = %job.job_type, "handler panicked");
                let e = HandlerError::Permanent("internal error".to_owned());
                failed(&lease, &reporter, &e).await
            }
            Settled::Finished(Ok(Err(_elapsed))) => {
                let e = HandlerError::Transient(format!("timed out after {}", human(timeout)));
                failed(&lease, &reporter, &e).await
            }
            Settled::Finished(Ok(Ok(Ok(output)))) => complete(&lease, &reporter, output).await,
            Settled::Finished(Ok(Ok(Err(e)))) => failed(&lease, &reporter, &e).await,
        };
        tracing::info!(
            tenant.id = %claim.tenant, job.id = %job.job_id, job.attempt = claim.attempt(),
            outcome, "job attempt ended"
        );
        outcome
    }
}

/// The final write of a handler's error.
async fn failed(lease: &Lease<'_>, reporter: &Reporter, e: &HandlerError) -> &'static str {
    match e {
        HandlerError::BadInput(message) => {
            let outcome = AiOutcome {
                status: JobStatus::RejectedBadInput,
                full_result: None,
                read_result: None,
                error_message: Some(message.clone()),
            };
            finish(lease, outcome, reporter.next_seq(), "rejected").await
        }
        HandlerError::Permanent(m) => match lease.fail(m, false).await {
            Ok(_) => "failed",
            Err(_) => "lost",
        },
        HandlerError::Transient(m) => match lease.fail(m, true).await {
            Ok(FailOutcome::Retrying { .. }) => "retry",
            Ok(FailOutcome::Dead) => "failed",
            Err(_) => "lost",
        },
    }
}

async fn complete(lease: &Lease<'_>, reporter: &Reporter, out: HandlerOutput) -> &'static str {
    if !out.status.is_terminal() || out.status == JobStatus::Failed {
        let e = HandlerError::Permanent(format!(
            "the handler answered status {}, which does not end a job",
            out.status.as_str()
        ));
        return failed(lease, reporter, &e).await;
    }
    let label = if out.status == JobStatus::Done {
        "done"
    } else {
        "other_terminal"
    };
    let outcome = AiOutcome {
        status: out.status,
        full_result: Some(out.full_result),
        read_result: Some(out.read_result),
        error_message: out.error_message,
    };
    finish(lease, outcome, reporter.next_seq(), label).await
}

/// `complete_ai_job` and publish.
async fn finish(
    lease: &Lease<'_>,
    outcome: AiOutcome,
    seq: u64,
    label: &'static str,
) -> &'static str {
    let done = lease
        .write("complete", || {
            lease.db.complete_ai_job(lease.claim, outcome.clone(), seq)
        })
        .await;
    if done.is_ok() { label } else { "lost" }
}

/// `90 s`, `1500 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human(Duration::from_secs(90)), "90 s");
        assert_eq!(human(Duration::from_millis(150)), "150 ms");
    }
}
