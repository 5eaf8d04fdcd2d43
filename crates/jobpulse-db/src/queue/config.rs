//! Queue settings: concurrency caps, per-tenant caps, and the retry backoff.

use std::time::Duration;

use super::Queue;

/// Concurrency caps: at most this many jobs RUNNING (with a live lease) at once.
/// `Caps::default()` caps nothing; workers start from [`TenantCaps::default`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub global: Option<u32>,
    pub per_tenant: Option<u32>,
}

impl Caps {
    pub fn is_unlimited(&self) -> bool {
        self.global.is_none() && self.per_tenant.is_none()
    }

    /// Only a per-tenant cap.
    pub fn per_tenant(cap: Option<u32>) -> Self {
        Self {
            global: None,
            per_tenant: cap,
        }
    }
}

/// The per-tenant caps of both queues (`None`: no cap), across every worker of a deployment.
/// The defaults — 2 transcodes and 4 AI jobs of one tenant running at once — are on so that one
/// tenant's burst cannot hold every worker (issue 15 finding 9; the reasoning is in
/// docs/architecture.md, "Caps").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCaps {
    pub video: Option<u32>,
    pub ai: Option<u32>,
}

impl TenantCaps {
    /// Transcodes of one tenant running at once by default.
    pub const DEFAULT_VIDEO: u32 = 2;
    /// AI jobs (imports, exports, …) of one tenant running at once by default.
    pub const DEFAULT_AI: u32 = 4;

    /// The cap of `queue`.
    pub fn of(&self, queue: Queue) -> Option<u32> {
        match queue {
            Queue::Video => self.video,
            Queue::Ai => self.ai,
        }
    }
}

impl Default for TenantCaps {
    fn default() -> Self {
        Self {
            video: Some(Self::DEFAULT_VIDEO),
            ai: Some(Self::DEFAULT_AI),
        }
    }
}

/// Retry delays: `base × 2^(attempt − 1)`, at most `cap`, minus up to `jitter` (a fraction) of
/// it at random so retries of jobs that failed together spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay after attempt `failed_attempt` (1-based) failed.
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1 << exp).min(self.cap);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return full;
        }
        full.mul_f64(1.0 - jitter * rand::random::<f64>())
    }
}

/// Queue settings held by a [`Db`](crate::Db).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    pub backoff: Backoff,
    /// Attempts of a video job, and of an AI job submitted without its own.
    pub default_max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            default_max_attempts: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
            jitter: 0.0,
        };
        assert_eq!(b.delay(1), Duration::from_secs(2));
        assert_eq!(b.delay(2), Duration::from_secs(4));
        assert_eq!(b.delay(5), Duration::from_secs(32));
        assert_eq!(b.delay(20), Duration::from_secs(300));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
        let j = Backoff { jitter: 0.5, ..b };
        for _ in 0..100 {
            let d = j.delay(3);
            assert!(
                d <= Duration::from_secs(8) && d >= Duration::from_secs(4),
                "{d:?}"
            );
        }
    }
}
