//! A bounded pool for the ffprobe runs the API makes while it answers an upload: at most
//! `running` probes at once, at most `waiting` uploads queued for one, each wait bounded.
//! Beyond that the upload is answered **503** with `Retry-After` — never an unbounded pile of
//! ffprobe children (8 concurrent uploads of a 15872×15872 file once started 8 of them,
//! 4.6 GB together).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How many probes run and wait at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLimits {
    /// Probes running at once (default 2: one per core of the reference machine).
    pub running: usize,
    /// Uploads waiting for a probe slot beyond those (default 8).
    pub waiting: usize,
    /// Longest wait for a slot before giving up with 503 (default 30 s).
    pub max_wait: Duration,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self {
            running: 2,
            waiting: 8,
            max_wait: Duration::from_secs(30),
        }
    }
}

/// The pool (cheap to clone; clones share it).
#[derive(Debug, Clone)]
pub struct ProbePool {
    limits: ProbeLimits,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// A probe slot; freed when dropped.
#[derive(Debug)]
pub struct ProbeSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Seconds a refused upload is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl ProbePool {
    pub fn new(limits: ProbeLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.running.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    pub fn limits(&self) -> ProbeLimits {
        self.limits
    }

    /// Probes running now.
    pub fn running(&self) -> usize {
        self.limits.running.max(1) - self.slots.available_permits()
    }

    /// A slot, waiting in line when all are taken; 503 when the line is full or the wait too
    /// long.
    pub async fn slot(&self) -> Result<ProbeSlot, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(ProbeSlot(p));
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.waiting);
        if queued >= self.limits.waiting {
            tracing::warn!(
                running = self.running(),
                waiting = queued,
                "upload refused: every probe slot busy and the line full"
            );
            return Err(busy());
        }
        match tokio::time::timeout(self.limits.max_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(ProbeSlot(p)),
            Ok(Err(_)) => Err(ApiError::internal("the probe pool is closed")),
            Err(_) => {
                tracing::warn!(
                    waited_secs = self.limits.max_wait.as_secs(),
                    "upload refused: no probe slot in time"
                );
                Err(busy())
            }
        }
    }
}

fn busy() -> ApiError {
    ApiError::Busy {
        what: "uploads being checked",
        retry_after: RETRY_AFTER,
    }
}

/// Leaves the line when the wait ends, however it ends (a client gone drops the future).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_running_and_waiting_it_refuses_at_once() {
        let pool = ProbePool::new(ProbeLimits {
            running: 1,
            waiting: 1,
            max_wait: Duration::from_secs(5),
        });
        let first = pool.slot().await.expect("a free slot");
        // One may wait…
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move { p2.slot().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // …a third is refused without waiting.
        let t = std::time::Instant::now();
        let third = pool.slot().await;
        assert!(matches!(third, Err(ApiError::Busy { .. })), "{third:?}");
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(first);
        waiter
            .await
            .expect("joined")
            .expect("the waiter gets the slot");
        assert_eq!(
            pool.waiting.load(Ordering::Acquire),
            0,
            "the line is empty again"
        );
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let pool = ProbePool::new(ProbeLimits {
            running: 1,
            waiting: 4,
            max_wait: Duration::from_millis(100),
        });
        let _held = pool.slot().await.expect("a free slot");
        assert!(matches!(pool.slot().await, Err(ApiError::Busy { .. })));
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
    }
}
