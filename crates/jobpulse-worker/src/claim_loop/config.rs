//! [`WorkerConfig`]: the settings every task kind's worker shares (lease owner, lease and
//! heartbeat, concurrency and caps, the loop's timings), their defaults and their checks. Each
//! kind's own config (`AiWorkerConfig`, `VideoWorkerConfig`) holds one as `common` and adds
//! its own settings.

use std::time::Duration;

use jobpulse_db::Caps;

/// How the claim loop ([`super::run`]) and the lease of every attempt run.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Lease owner in the database (and, for the video worker, the name of its work directory);
    /// default `<hostname>-<pid>` ([`default_worker_id`]).
    pub worker_id: String,
    /// Attempts run at once by this worker.
    pub concurrency: usize,
    /// How long a claim or heartbeat holds the job; default 30 s. A worker that stops
    /// heartbeating loses its job after this long.
    pub lease: Duration,
    /// Heartbeat period; default a third of the lease (two heartbeats may fail in a row).
    pub heartbeat_every: Duration,
    /// Concurrency caps counted over all workers of the queue, at claim time.
    pub caps: Caps,
    /// Longest sleep when nothing is runnable, and the cap of the backoff after failed claims;
    /// bounds how late a job whose backoff ended (which is not announced) starts. Default 5 s.
    pub idle_wait: Duration,
    /// How often expired leases of the queue are reaped; default 5 s.
    pub reap_every: Duration,
    /// Shortest interval between two progress writes of an attempt (step changes always go
    /// through); default 1 s.
    pub progress_every: Duration,
    /// How long the loop waits, at shutdown, for running attempts to give their jobs back;
    /// default 10 s. Attempts still running then are abandoned (their leases expire).
    pub shutdown_grace: Duration,
}

impl WorkerConfig {
    /// The defaults, with the kind's own concurrency and caps.
    pub fn new(concurrency: usize, caps: Caps) -> Self {
        let lease = Duration::from_secs(30);
        Self {
            worker_id: default_worker_id(),
            concurrency,
            lease,
            heartbeat_every: lease / 3,
            caps,
            idle_wait: Duration::from_secs(5),
            reap_every: Duration::from_secs(5),
            progress_every: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Sets the lease and a heartbeat period of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_every = lease / 3;
        self
    }

    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }

    /// Checks what would make the worker misbehave rather than fail loudly; the error says what
    /// is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.worker_id;
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err("worker id must be 1 to 200 bytes without control characters".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.heartbeat_every.is_zero() || self.heartbeat_every >= self.lease {
            return Err("heartbeat_every must be above zero and shorter than the lease".into());
        }
        if self.idle_wait.is_zero() || self.reap_every.is_zero() {
            return Err("idle_wait and reap_every must be above zero".into());
        }
        Ok(())
    }
}

/// `<hostname>-<pid>`: unique among live processes on a host, made of characters a lease owner
/// and a file name may hold, and recognisable at start-up so a dead video worker's leftover
/// directory can be removed.
pub fn default_worker_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

/// This host's name, reduced to `[A-Za-z0-9._-]` (at most 100 characters); `localhost` when
/// none is found.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(100)
                .collect::<String>()
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = WorkerConfig::new(2, Caps::default());
        let id = default_worker_id();
        assert_eq!(c.worker_id, id);
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(!id.chars().any(char::is_control));
        assert_eq!(
            (c.lease, c.heartbeat_every),
            (Duration::from_secs(30), Duration::from_secs(10))
        );
        assert!(c.validate().is_ok());
        let short = c.clone().with_lease(Duration::from_secs(3));
        assert_eq!(short.heartbeat_every, Duration::from_secs(1));
        for bad in [
            WorkerConfig {
                concurrency: 0,
                ..c.clone()
            },
            WorkerConfig {
                heartbeat_every: c.lease,
                ..c.clone()
            },
            c.clone().with_worker_id(""),
            c.clone().with_worker_id("a\nb"),
            WorkerConfig {
                idle_wait: Duration::ZERO,
                ..c.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
