//! The lease protocol every task kind's worker follows, written once.
//!
//! A claim ([`Db::claim`]) hands an attempt a lease. While the attempt runs, [`Lease::keep_alive`]
//! extends it every `heartbeat_every` and slides the read-model TTL; the answers can stop the
//! attempt ([`Stop`], with the first [`StopReason`]):
//!
//! - a cancel request: the attempt stops, and the lease is still kept alive until it ended, for
//!   the acknowledgement ([`Db::cancelled`]);
//! - a lost lease (the database says so), or no heartbeat through for a whole lease — checked
//!   on time, each heartbeat bounded by the time left: by then the reaper may have handed the
//!   job to another worker, so the attempt must not run on;
//! - the read model refusing our writes as stale (someone newer owns the task);
//! - the worker shutting down (the worker says so).
//!
//! When the work ended, [`Lease::settle`] says what the attempt's one final write is, and
//! [`Lease::write`] makes it: retried a few times on a transient database error (every final
//! write is a compare-and-set on the lease, so a retry never applies twice), then published at
//! once (the background relay delivers what that misses). A lost attempt writes nothing: a zombie
//! must not write.
//!
//! The video and AI workers keep only what is theirs: the pipeline or the handlers, and how their
//! results map to a final write.

use std::convert::Infallible;
use std::time::Duration;

use jobpulse_db::{
    Claim, Committed, Db, DbError, FailOutcome, Heartbeat, OutboxEntry, ReleaseOutcome,
};
use jobpulse_sync::Relay;
use tokio::time::Instant;

use crate::progress::Reporter;

mod keep_alive;

pub use keep_alive::{Stop, StopReason};

/// What an attempt's final write is, once its work ended (see [`Lease::settle`]).
#[derive(Debug)]
pub enum Settled<R> {
    /// Write nothing: someone newer may own the job.
    Lost,
    /// Acknowledge the cancel ([`Lease::cancelled`]).
    Cancel,
    /// Give the job back ([`Lease::release`]).
    Release,
    /// The work produced this: the worker turns it into its final write.
    Finished(R),
}

/// One attempt's lease: the database, the relay that publishes its final write, and the claim.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub db: &'a Db,
    pub relay: &'a Relay,
    pub claim: &'a Claim,
}

impl<'a> Lease<'a> {
    pub fn new(db: &'a Db, relay: &'a Relay, claim: &'a Claim) -> Self {
        Self { db, relay, claim }
    }

    /// Keeps the lease alive every `every` until the caller drops this future (when the
    /// attempt's work ended); stops the attempt when an answer says so (module docs). Never
    /// returns. `claimed_at` is an instant no later than the claim.
    pub async fn keep_alive(
        &self,
        every: Duration,
        reporter: &Reporter,
        stop: &Stop,
        claimed_at: Instant,
    ) -> Infallible {
        keep_alive::keep_alive(
            || self.db.heartbeat(self.claim),
            self.claim.lease,
            every,
            reporter,
            stop,
            claimed_at,
        )
        .await
    }

    /// What the final write is, given the stop reason and the work's `result` (`None`: the work
    /// stopped because the attempt's token fired).
    pub async fn settle<R>(&self, stop: &Stop, result: Option<R>) -> Settled<R> {
        match (stop.reason(), result) {
            (Some(StopReason::LeaseLost), _) => Settled::Lost,
            (Some(StopReason::Superseded), _) | (None, None) => {
                if stop.reason().is_none() {
                    tracing::error!("the work stopped itself without a reason; giving the job up");
                }
                // Someone newer owns the record: a delete (which also asks us to stop) or a
                // reaper that took the job from us. Only the database knows which; its
                // compare-and-set makes asking safe even for a zombie.
                match self.db.heartbeat(self.claim).await {
                    Ok(Heartbeat::CancelRequested) => Settled::Cancel,
                    Ok(Heartbeat::Continue) => {
                        tracing::warn!(
                            "the read model is ahead of the database; giving the attempt up \
                             (the lease will expire and the job be retried)"
                        );
                        Settled::Lost
                    }
                    _ => Settled::Lost,
                }
            }
            (Some(StopReason::CancelRequested), _) => Settled::Cancel,
            (Some(StopReason::Shutdown), None) => Settled::Release,
            // Work that finished anyway (even during a shutdown) is recorded: the write is a
            // compare-and-set on the lease.
            (_, Some(r)) => Settled::Finished(r),
        }
    }

    /// The attempt's one final write (module docs): retried on transient errors, then
    /// published. An error is logged here; the lease then runs out and the reaper retries the
    /// job, or someone newer owns it.
    pub async fn write<T, F, Fut>(&self, what: &'static str, mut write: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Committed<T>, DbError>>,
    {
        let mut r = write().await;
        for delay_ms in [200, 1000, 3000] {
            match &r {
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, what, "final write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    r = write().await;
                }
                _ => break,
            }
        }
        match r {
            Ok(Committed { value, outbox }) => {
                publish(self.relay, &outbox, what).await;
                Ok(value)
            }
            Err(e) => {
                match &e {
                    DbError::LeaseLost => tracing::warn!(
                        what,
                        "the final write was refused: the lease was lost (nothing written)"
                    ),
                    DbError::Cancelled => tracing::info!(
                        what,
                        "the task was deleted while the attempt ran; its result is discarded"
                    ),
                    _ => tracing::error!(
                        error = %e,
                        what,
                        "the final write failed; the lease will expire and the job be retried"
                    ),
                }
                Err(e)
            }
        }
    }

    /// Acknowledges a cancel ([`Db::cancelled`]).
    pub async fn cancelled(&self) -> Result<(), DbError> {
        self.write("cancelled", || self.db.cancelled(self.claim))
            .await
    }

    /// Gives the job back without using up an attempt ([`Db::release`]): a deploy is not the
    /// job's fault, so even a job on its last attempt runs again.
    pub async fn release(&self, reason: &str) -> Result<ReleaseOutcome, DbError> {
        self.write("release", || self.db.release(self.claim, reason))
            .await
    }

    /// Ends the attempt with an error ([`Db::fail`]).
    pub async fn fail(&self, message: &str, retryable: bool) -> Result<FailOutcome, DbError> {
        self.write("fail", || self.db.fail(self.claim, message, retryable))
            .await
    }
}

/// Publishes committed outbox rows now; on failure the background relay delivers them.
pub async fn publish(relay: &Relay, entries: &[OutboxEntry], what: &'static str) {
    if entries.is_empty() {
        return;
    }
    if let Err(e) = relay.publish_now(entries).await {
        tracing::warn!(error = %e, what, "publishing now failed; the relay will deliver it");
    }
}
