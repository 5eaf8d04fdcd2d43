//! The breaker of the Redis store (see the module docs of `redis`): fail fast while Redis is
//! known not to answer, let one call at a time find out whether it answers again.
//!
//! The probing call holds a [`ProbeSlot`] guard; dropping it frees the slot for the next call. A
//! call may be dropped before it ends — `/readyz` bounds its ping by 2 s, less than the store's
//! deadline, and a request whose client went away is dropped with it — so the slot is released
//! on drop, not by a step at the end of the call: a probe cancelled mid-way once left `probing`
//! set, and from the next outage on every call was rejected for good, Redis back or not.

use std::sync::Mutex;
use std::time::Duration;

use std::future::Future;

use tokio::time::Instant;

use super::{BACKEND, RedisStore};
use crate::{StoreError, metrics};

/// How long calls fail at once after a slow failure before a probe is let through.
pub(super) const COOLDOWN: Duration = Duration::from_secs(1);

/// Whether a call may go to Redis.
#[derive(Debug)]
pub(super) enum Admit<'a> {
    /// The breaker is closed: go ahead.
    Closed,
    /// The breaker is open and this call is the one probing Redis (until the guard is dropped).
    Probe { _slot: ProbeSlot<'a> },
    /// The breaker is open: fail at once.
    Reject,
}

/// The probe slot of a [`Breaker`], released when dropped — also when the probing call is
/// cancelled.
#[derive(Debug)]
pub(super) struct ProbeSlot<'a>(&'a Breaker);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        self.0.lock().probing = false;
    }
}

#[derive(Debug, Default)]
struct State {
    /// `Some(t)`: open; calls before `t` are rejected.
    open_until: Option<Instant>,
    probing: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Breaker {
    state: Mutex<State>,
    cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(COOLDOWN)
    }
}

impl Breaker {
    pub(super) fn new(cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn admit(&self) -> Admit<'_> {
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Closed,
            Some(t) if Instant::now() < t || s.probing => Admit::Reject,
            Some(_) => {
                s.probing = true;
                Admit::Probe {
                    _slot: ProbeSlot(self),
                }
            }
        }
    }

    /// A call failed slowly: (re)open for the cooldown. True when it was closed.
    pub(super) fn trip(&self) -> bool {
        let mut s = self.lock();
        let was_closed = s.open_until.is_none();
        s.open_until = Some(Instant::now() + self.cooldown);
        was_closed
    }

    /// Redis answered: close. True when it was open.
    pub(super) fn close(&self) -> bool {
        let mut s = self.lock();
        s.open_until.take().is_some()
    }
}

impl RedisStore {
    /// Counts the call, bounds it by the deadline, passes it through the breaker and counts
    /// its failure.
    pub(super) async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        metrics::op(BACKEND, op);
        // Held to the end of the call; a probe's slot is released when it is dropped, so a
        // cancelled call (dropped at an `.await` below) frees it too.
        let admit = self.breaker.admit();
        if matches!(admit, Admit::Reject) {
            metrics::error(BACKEND, op);
            return Err(StoreError::Unavailable(
                "Redis stopped answering moments ago; not retried yet".into(),
            ));
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.deadline
            ))),
        };
        match &result {
            Err(StoreError::Unavailable(_)) if started.elapsed() >= self.slow_failure => {
                if self.breaker.trip() {
                    tracing::warn!("Redis stopped answering; failing calls fast while probing it");
                }
            }
            // An answer (even an error reply) or a quick failure (a refused connection): callers
            // do not wait, so there is nothing to fail fast for.
            Ok(_) | Err(StoreError::Protocol(_)) | Err(StoreError::Unavailable(_)) => {
                if self.breaker.close() {
                    tracing::info!("Redis answers again");
                }
            }
            Err(StoreError::Config(_)) => {}
        }
        drop(admit);
        if result.is_err() {
            metrics::error(BACKEND, op);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_probe(a: &Admit<'_>) -> bool {
        matches!(a, Admit::Probe { .. })
    }

    fn is_reject(a: &Admit<'_>) -> bool {
        matches!(a, Admit::Reject)
    }

    #[tokio::test]
    async fn opens_on_a_slow_failure_and_probes_one_call_at_a_time() {
        let cooldown = Duration::from_millis(30);
        let b = Breaker::new(cooldown);
        assert!(matches!(b.admit(), Admit::Closed));
        assert!(b.trip());
        assert!(is_reject(&b.admit()), "open: fail fast");
        tokio::time::sleep(cooldown).await;
        let probe = b.admit();
        assert!(is_probe(&probe));
        assert!(is_reject(&b.admit()), "only one probe at a time");
        // The probe failed slowly again: another cooldown.
        assert!(!b.trip());
        drop(probe);
        assert!(is_reject(&b.admit()));
        tokio::time::sleep(cooldown).await;
        let probe = b.admit();
        assert!(is_probe(&probe));
        assert!(b.close(), "an answer closes it");
        drop(probe);
        assert!(matches!(b.admit(), Admit::Closed));
        assert!(!b.close());
    }

    /// A probing call that is dropped before it ends (a caller's timeout, a client gone) frees
    /// the slot: the next call probes. It used to stay taken, and once the breaker opened again
    /// every call was rejected forever.
    #[tokio::test]
    async fn a_cancelled_probe_lets_the_next_call_probe() {
        let cooldown = Duration::from_millis(30);
        let b = Breaker::new(cooldown);
        assert!(b.trip());
        tokio::time::sleep(cooldown).await;
        let probe = b.admit();
        assert!(is_probe(&probe));
        assert!(is_reject(&b.admit()));
        // Cancelled: neither an answer nor a slow failure.
        drop(probe);
        let next = b.admit();
        assert!(is_probe(&next), "the next call probes, got {next:?}");
        assert!(b.close());
        drop(next);
        // And a later outage is probed again, too.
        assert!(b.trip());
        tokio::time::sleep(cooldown).await;
        assert!(is_probe(&b.admit()));
    }
}
