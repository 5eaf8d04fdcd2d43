//! Keeping one attempt's lease alive, and why an attempt stopped (see the parent module).

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use jobpulse_db::{DbError, Heartbeat};
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

/// [`super::Lease::keep_alive`] with the database heartbeat as `beat` (tests give their own).
pub(super) async fn keep_alive<F, Fut>(
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
        reporter.prove_alive(every).await;
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
