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
use std::sync::OnceLock;
use std::time::Duration;

use jobpulse_db::{
    Claim, Committed, Db, DbError, FailOutcome, Heartbeat, OutboxEntry, Relay, ReleaseOutcome,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::progress::Reporter;

/// Why an attempt was stopped from outside its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    CancelRequested,
    LeaseLost,
    /// The read model refused our writes as stale: someone newer owns the task.
    Superseded,
    Shutdown,
}

/// The attempt's cancellation token and the first reason it was cancelled for.
#[derive(Debug, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the attempt; returns false when it was already stopped (the first reason stays).
    pub fn stop(&self, reason: StopReason) -> bool {
        let first = self.reason.set(reason).is_ok();
        self.token.cancel();
        first
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }

    /// The token the attempt's work watches.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// True once the attempt may no longer write (lease lost or superseded).
    pub fn is_lost(&self) -> bool {
        matches!(
            self.reason(),
            Some(StopReason::LeaseLost | StopReason::Superseded)
        )
    }
}

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
        keep_alive(
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

/// [`Lease::keep_alive`] with the database heartbeat as `beat` (tests give their own).
async fn keep_alive<F, Fut>(
    beat: F,
    lease: Duration,
    every: Duration,
    reporter: &Reporter,
    stop: &Stop,
    claimed_at: Instant,
) -> Infallible
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Heartbeat, DbError>>,
{
    // When the lease last got extended, as an instant no later than the database's clock read.
    let mut extended_at = claimed_at;
    let mut failing = false;
    loop {
        if stop.is_lost() {
            break;
        }
        let deadline = extended_at + lease;
        tokio::time::sleep_until((Instant::now() + every).min(deadline)).await;
        if stop.is_lost() {
            break;
        }
        let sent = Instant::now();
        if sent >= deadline {
            stop.stop(StopReason::LeaseLost);
            tracing::warn!(
                "no heartbeat got through for a whole lease; presuming the lease lost and \
                 stopping the attempt"
            );
            break;
        }
        match tokio::time::timeout(every.min(deadline - sent), beat()).await {
            Ok(Ok(answer)) => {
                extended_at = sent;
                if failing {
                    tracing::info!("heartbeats get through again");
                    failing = false;
                }
                match answer {
                    Heartbeat::Continue => {}
                    Heartbeat::CancelRequested => {
                        // The lease is still needed for the acknowledgement: keep beating.
                        if stop.stop(StopReason::CancelRequested) {
                            tracing::info!("cancel requested; stopping the attempt");
                        }
                    }
                    Heartbeat::LeaseLost => {
                        stop.stop(StopReason::LeaseLost);
                        tracing::warn!("lease lost; stopping the attempt, writing nothing more");
                        break;
                    }
                }
            }
            Ok(Err(e)) => {
                // The lease may still hold; the next heartbeat tells.
                if !failing {
                    tracing::warn!(error = %e, "heartbeat failed; retrying on the next tick");
                    failing = true;
                }
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("heartbeat timed out; retrying on the next tick");
                    failing = true;
                }
            }
        }
        reporter.heartbeat().await;
        if reporter.superseded() && stop.stop(StopReason::Superseded) {
            tracing::warn!("the read model holds a newer state; stopping the attempt");
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use jobpulse_domain::{Fence, State, TaskKey, TenantId, VideoId, VideoStatus, steps};
    use jobpulse_store::MemoryStore;

    use super::*;

    fn reporter() -> Reporter {
        let key = TaskKey::video(
            TenantId::new(1).expect("valid"),
            VideoId::new(1).expect("valid"),
        );
        Reporter::new(
            Arc::new(MemoryStore::default()),
            key,
            Fence::claim(1, 1).expect("valid"),
            steps::VIDEO,
            State::video(VideoStatus::Processing),
        )
    }

    /// The twins disagreed: the video worker asked the database once more after its lease ran
    /// out and so ran on for up to a heartbeat period past it; the AI worker stopped on time.
    /// On time it is: by then the reaper may have handed the job to another worker.
    #[tokio::test]
    async fn an_unanswered_lease_stops_the_attempt_at_its_deadline() {
        let (lease, every) = (Duration::from_millis(1500), Duration::from_millis(500));
        let beats = AtomicU32::new(0);
        let stop = Stop::new();
        let reporter = reporter();
        let started = Instant::now();
        let hung = || {
            beats.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Heartbeat, DbError>>()
        };
        let keep = keep_alive(hung, lease, every, &reporter, &stop, started);
        tokio::select! {
            never = keep => match never {},
            () = stop.token().cancelled() => {}
        }
        let took = started.elapsed();
        assert_eq!(stop.reason(), Some(StopReason::LeaseLost));
        assert!(took >= lease, "stopped before the lease ran out: {took:?}");
        assert!(
            took < lease + every / 2,
            "ran on past the lease (the old video behaviour stops at lease + every): {took:?}"
        );
        assert_eq!(
            beats.load(Ordering::SeqCst),
            1,
            "no heartbeat at or after the deadline"
        );
    }

    /// The twins disagreed: the AI worker stopped heartbeating at a cancel request; the video
    /// worker kept the lease alive until the work stopped, so the acknowledgement still holds
    /// the lease however long stopping takes. The latter it is.
    #[tokio::test]
    async fn a_cancel_request_stops_the_work_but_keeps_the_lease() {
        let every = Duration::from_millis(40);
        let beats = AtomicU32::new(0);
        let stop = Stop::new();
        let reporter = reporter();
        let cancel = || {
            beats.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Heartbeat::CancelRequested))
        };
        let keep = keep_alive(
            cancel,
            Duration::from_secs(10),
            every,
            &reporter,
            &stop,
            Instant::now(),
        );
        let waited = tokio::time::timeout(every * 6, keep).await;
        assert!(waited.is_err(), "keep-alive never returns");
        assert_eq!(stop.reason(), Some(StopReason::CancelRequested));
        assert!(stop.token().is_cancelled());
        assert!(
            beats.load(Ordering::SeqCst) >= 3,
            "kept beating after the cancel request: {}",
            beats.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_heartbeats() {
        let every = Duration::from_millis(20);
        let beats = AtomicU32::new(0);
        let stop = Stop::new();
        let reporter = reporter();
        let lost = || {
            beats.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Heartbeat::LeaseLost))
        };
        let keep = keep_alive(
            lost,
            Duration::from_secs(10),
            every,
            &reporter,
            &stop,
            Instant::now(),
        );
        let _ = tokio::time::timeout(every * 6, keep).await;
        assert_eq!(stop.reason(), Some(StopReason::LeaseLost));
        assert!(stop.is_lost());
        assert_eq!(beats.load(Ordering::SeqCst), 1);
        assert!(!stop.stop(StopReason::Shutdown), "the first reason stays");
        assert_eq!(stop.reason(), Some(StopReason::LeaseLost));
    }
}
