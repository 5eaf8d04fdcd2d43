//! The breaker of the Redis store (see the module docs of `redis`): fail fast while Redis is
//! known not to answer, let one call at a time find out whether it answers again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long calls fail at once after a slow failure before a probe is let through.
pub(super) const COOLDOWN: Duration = Duration::from_secs(1);

/// Whether a call may go to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// The breaker is closed: go ahead.
    Closed,
    /// The breaker is open and this call is the one probing Redis.
    Probe,
    /// The breaker is open: fail at once.
    Reject,
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

    pub(super) fn admit(&self) -> Admit {
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Closed,
            Some(t) if Instant::now() < t || s.probing => Admit::Reject,
            Some(_) => {
                s.probing = true;
                Admit::Probe
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

    pub(super) fn probe_done(&self) {
        self.lock().probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_on_a_slow_failure_and_probes_one_call_at_a_time() {
        let cooldown = Duration::from_millis(30);
        let b = Breaker::new(cooldown);
        assert_eq!(b.admit(), Admit::Closed);
        assert!(b.trip());
        assert_eq!(b.admit(), Admit::Reject, "open: fail fast");
        tokio::time::sleep(cooldown).await;
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::Reject, "only one probe at a time");
        // The probe failed slowly again: another cooldown.
        assert!(!b.trip());
        b.probe_done();
        assert_eq!(b.admit(), Admit::Reject);
        tokio::time::sleep(cooldown).await;
        assert_eq!(b.admit(), Admit::Probe);
        assert!(b.close(), "an answer closes it");
        b.probe_done();
        assert_eq!(b.admit(), Admit::Closed);
        assert!(!b.close());
    }
}
