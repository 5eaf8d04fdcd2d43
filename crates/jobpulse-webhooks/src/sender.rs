//! The background service that sends the database's webhook deliveries.
//!
//! Each round claims up to [`SenderConfig::batch`] due deliveries under a lease
//! (`Db::claim_webhook_deliveries`), sends them concurrently and settles each one: a 2xx answer
//! is delivered; anything else (an error status, a refused address, a timeout, no connection)
//! is retried after the next delay of [`SenderConfig::schedule`] (the last repeats) — until the
//! retry window has passed since the first attempt, when the delivery goes dead with the last
//! reason. A sender stopped or killed mid-delivery settles nothing: the delivery is due again
//! when its lease ends and is sent again with the same `webhook-id` (at-least-once).
//!
//! Requests: `POST`, JSON body, the Standard Webhooks headers, a fresh `webhook-timestamp` and
//! signature per attempt, connect and total timeouts, no redirects followed, no proxy, the
//! host resolved through [`GuardedResolver`] and the answer read up to
//! [`SenderConfig::max_response_bytes`] then dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jobpulse_db::webhooks::{AttemptRecord, DueDelivery, Settle};
use jobpulse_db::{Db, now_ms};
use tokio_util::sync::CancellationToken;

use crate::guard::{AllowList, GuardedResolver, check_url};
use crate::sign::sign;

/// How the sender behaves; [`SenderConfig::default`] is what production uses.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Delay after the 1st, 2nd, … failed attempt; the last one repeats.
    pub schedule: Vec<Duration>,
    /// A delivery failing for this long since its first attempt goes dead.
    pub retry_window: Duration,
    /// Connect timeout, and total timeout of one request (answer included).
    pub timeout: Duration,
    /// How much of an answer is read before it is dropped.
    pub max_response_bytes: usize,
    /// How long a claim holds a delivery (more than `timeout`).
    pub lease: Duration,
    /// How often the sender looks for due deliveries when there were none.
    pub poll: Duration,
    /// Deliveries claimed per round, and sent at once.
    pub batch: usize,
    /// Networks and host names exempt from the address rule.
    pub allow: AllowList,
    /// How long delivered and dead deliveries stay listed before they are deleted.
    pub keep_settled: Duration,
}

/// How often a sender deletes old settled deliveries (and once when it starts).
pub const PURGE_EVERY: Duration = Duration::from_secs(600);

impl SenderConfig {
    /// The Standard Webhooks suggestion: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, … .
    pub fn default_schedule() -> Vec<Duration> {
        [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            schedule: Self::default_schedule(),
            retry_window: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            batch: 16,
            allow: AllowList::default(),
            keep_settled: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The webhook sender (cheap to clone).
#[derive(Debug, Clone)]
pub struct Sender {
    db: Db,
    config: Arc<SenderConfig>,
    http: reqwest::Client,
}

impl Sender {
    /// A sender over `db`; fails only when the HTTP client cannot be built (TLS setup).
    pub fn new(db: Db, config: SenderConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::new(
                config.allow.clone(),
            ))))
            .user_agent("jobpulse-webhooks/1")
            .build()?;
        Ok(Self {
            db,
            config: Arc::new(config),
            http,
        })
    }

    /// Sends due deliveries until `shutdown` (a delivery cut short is sent again after its lease).
    /// Every [`PURGE_EVERY`] it also deletes deliveries settled more than
    /// [`SenderConfig::keep_settled`] ago.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut purged: Option<Instant> = None;
        loop {
            if purged.is_none_or(|p| p.elapsed() >= PURGE_EVERY) {
                purged = Some(Instant::now());
                self.purge().await;
            }
            let sent = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.round() => r,
            };
            let idle = match sent {
                Ok(n) => n == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook sender: claiming deliveries failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.config.poll) => {}
                }
            }
        }
    }

    /// Deletes settled deliveries older than [`SenderConfig::keep_settled`] (in bounded
    /// batches); how many.
    pub async fn purge(&self) -> u64 {
        let keep = i64::try_from(self.config.keep_settled.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep);
        let mut total = 0;
        loop {
            match self.db.purge_webhook_deliveries(before, 1000).await {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook sender: purging old deliveries failed");
                    return total;
                }
            }
        }
    }

    /// One round: claims due deliveries, sends and settles them; how many were claimed.
    pub async fn round(&self) -> Result<usize, jobpulse_db::DbError> {
        let due = self
            .db
            .claim_webhook_deliveries(self.config.batch, self.config.lease)
            .await?;
        let n = due.len();
        futures::stream::iter(due)
            .for_each_concurrent(self.config.batch, |d| async move {
                self.deliver(d).await;
            })
            .await;
        Ok(n)
    }

    async fn deliver(&self, due: DueDelivery) {
        let at_ms = now_ms();
        let started = Instant::now();
        let (status, error) = if due.endpoint_removed {
            (None, Some("endpoint removed".to_owned()))
        } else {
            self.attempt(&due).await
        };
        let record = AttemptRecord {
            at_ms,
            status,
            error: error.clone(),
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };
        let next = match &error {
            None => Settle::Delivered,
            Some(e) if due.endpoint_removed => Settle::Dead(e.clone()),
            Some(e) => self.after_failure(&due, e),
        };
        let outcome = match &next {
            Settle::Delivered => "delivered",
            Settle::Retry(_) => "retry",
            Settle::Dead(_) => "dead",
        };
        metrics::counter!("jobpulse_webhook_deliveries_total", "outcome" => outcome).increment(1);
        match self.db.settle_webhook_delivery(&due, &record, &next).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(delivery = %due.id, "webhook delivery: lease lost, not settled")
            }
            Err(e) => {
                // Left pending: it is sent again when the lease ends.
                tracing::warn!(delivery = %due.id, error = %e, "webhook delivery: settling failed");
            }
        }
    }

    fn after_failure(&self, due: &DueDelivery, error: &str) -> Settle {
        let now = now_ms();
        let elapsed = Duration::from_millis(
            u64::try_from(now.saturating_sub(due.first_attempt_at_ms)).unwrap_or(0),
        );
        let attempts = due.attempts.saturating_add(1);
        if elapsed >= self.config.retry_window {
            return Settle::Dead(format!(
                "gave up after {attempts} attempts over {}s: {error}",
                elapsed.as_secs()
            ));
        }
        let i = usize::try_from(due.attempts).unwrap_or(usize::MAX);
        let delay = self
            .config
            .schedule
            .get(i)
            .or(self.config.schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        Settle::Retry(now.saturating_add(delay_ms))
    }

    /// One HTTP attempt: the status answered, and the error when it is not a success.
    async fn attempt(&self, due: &DueDelivery) -> (Option<u16>, Option<String>) {
        let target = match check_url(&due.url, &self.config.allow).await {
            Ok(t) => t,
            Err(e) => return (None, Some(e.to_string())),
        };
        let ts = now_ms() / 1000;
        let signature = match sign(&due.secret, &due.id, ts, &due.payload) {
            Ok(s) => s,
            Err(e) => return (None, Some(e.to_string())),
        };
        let sent = self
            .http
            .post(target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &due.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(due.payload.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return (None, Some(describe(&e, self.config.timeout))),
        };
        let status = resp.status();
        // Read (and drop) at most the cap of the answer, within the request's timeout.
        let mut read = 0usize;
        while read < self.config.max_response_bytes {
            match resp.chunk().await {
                Ok(Some(c)) => read += c.len(),
                Ok(None) | Err(_) => break,
            }
        }
        drop(resp);
        if status.is_success() {
            (Some(status.as_u16()), None)
        } else {
            (
                Some(status.as_u16()),
                Some(format!("endpoint answered HTTP {}", status.as_u16())),
            )
        }
    }
}

/// A request error in a receiver's owner's words (the cause chain, no URL repeated).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", timeout.as_secs());
    }
    let mut out = if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
