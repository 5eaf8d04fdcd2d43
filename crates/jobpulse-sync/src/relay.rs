//! The outbox relay: applies committed outbox rows to the read model and deletes them.
//!
//! - Rows are fetched oldest first in batches and applied with one `apply_many` round trip.
//! - `Applied` and `Stale` (the store already holds something newer) rows are deleted; so are
//!   `Rejected` ones, which are logged and counted (`jobpulse_outbox_rejected_total`) because
//!   retrying cannot change the answer. Rows that cannot be decoded are handled the same way.
//! - A write the store took but could not show replicated (a Redis Cluster master whose replica
//!   did not acknowledge it in time: `StatusStore::apply_many_durable`) keeps its row: a
//!   failover before the replica has it would lose the state change for good. The relay sends
//!   such rows again (`jobpulse_outbox_unreplicated_total` counts each time one is kept), backing off, until a replica acknowledges them — for at most
//!   `unreplicated_retry_for` after the row's commit, then the row is deleted with a warning
//!   line and `jobpulse_outbox_unreplicated_given_up_total` (the write stands on its master;
//!   repair restores it if that master is lost later). Sending a write again is harmless: the
//!   store answers `Stale` to what it already holds.
//! - A store error keeps every row of the batch (counting the attempt on the row) and the relay
//!   backs off exponentially up to `max_backoff` (`jobpulse_outbox_errors_total`).
//! - It sleeps until a commit signals it (in process, and through PostgreSQL NOTIFY from any
//!   process) or `idle_poll` passes.
//! - Several relays may run at once: on PostgreSQL each batch is locked `FOR UPDATE SKIP
//!   LOCKED` while it is published, so relays take different rows; on SQLite two relays may
//!   publish the same row, which fencing makes harmless (the second answer is `Stale`).

use std::time::Duration;

use jobpulse_domain::{Outcome, Write};
use jobpulse_store::{SharedStore, StoreError};
use tokio_util::sync::CancellationToken;

use jobpulse_db::{Db, DbError, OutboxEntry, PendingRow};

/// The `last_error` of a row kept because its write is not replicated yet.
const UNREPLICATED: &str = "no replica acknowledged the write yet";

/// A failure to move writes from the database to the read model.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Relay settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    pub batch_size: usize,
    /// Poll this often even without a wake-up (covers wake-ups that cannot cross processes,
    /// such as several processes on one SQLite file).
    pub idle_poll: Duration,
    /// Longest wait between retries while the store fails.
    pub max_backoff: Duration,
    /// How long after its commit a row whose write no replica acknowledged is sent again
    /// (see the module docs).
    pub unreplicated_retry_for: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            idle_poll: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            unreplicated_retry_for: Duration::from_secs(120),
        }
    }
}

/// What one batch (or a drain) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Rows read from the outbox.
    pub fetched: u64,
    pub applied: u64,
    pub stale: u64,
    pub rejected: u64,
    /// Rows whose JSON could not be decoded (deleted, logged, counted as rejected).
    pub undecodable: u64,
    /// Rows kept because no replica acknowledged their write yet (sent again later).
    pub unreplicated: u64,
    /// Rows whose write no replica acknowledged within `unreplicated_retry_for` (deleted).
    pub unreplicated_given_up: u64,
}

impl RelayReport {
    fn add(&mut self, o: RelayReport) {
        self.fetched += o.fetched;
        self.applied += o.applied;
        self.stale += o.stale;
        self.rejected += o.rejected;
        self.undecodable += o.undecodable;
        self.unreplicated += o.unreplicated;
        self.unreplicated_given_up += o.unreplicated_given_up;
    }
}

/// See the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    db: Db,
    store: SharedStore,
    config: RelayConfig,
}

impl Relay {
    pub fn new(db: Db, store: SharedStore) -> Self {
        Self {
            db,
            store,
            config: RelayConfig::default(),
        }
    }

    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs until `shutdown` is cancelled, then publishes one last batch (best effort) so a
    /// graceful stop leaves little behind.
    pub async fn run(self, shutdown: CancellationToken) {
        self.db.ensure_listener();
        let mut failures: u32 = 0;
        let mut unreplicated_passes: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.relay_batch().await {
                Ok(report) if report.unreplicated > 0 => {
                    // Rows stay until a replica has their writes: send them again after a
                    // while, not in a tight loop (they are the oldest rows).
                    failures = 0;
                    unreplicated_passes = unreplicated_passes.saturating_add(1);
                    let delay = Duration::from_millis(100)
                        .saturating_mul(1 << unreplicated_passes.min(10))
                        .min(self.config.max_backoff);
                    tracing::debug!(
                        rows = report.unreplicated,
                        retry_in_ms = delay.as_millis(),
                        "outbox rows kept until a replica acknowledges their writes"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Ok(report) => {
                    failures = 0;
                    unreplicated_passes = 0;
                    if report.fetched >= self.config.batch_size as u64 {
                        continue;
                    }
                    self.update_gauge().await;
                    tokio::select! {
                        () = self.db.outbox_written() => {}
                        () = tokio::time::sleep(self.config.idle_poll) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("jobpulse_outbox_errors_total").increment(1);
                    let delay = Duration::from_millis(50)
                        .saturating_mul(1 << failures.min(10))
                        .min(self.config.max_backoff);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis(), "outbox relay failed; rows kept");
                    self.update_gauge().await;
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        if let Err(e) = self.relay_batch().await {
            tracing::warn!(error = %e, "outbox relay: final batch failed; rows kept");
        }
    }

    async fn update_gauge(&self) {
        match self.db.outbox_pending().await {
            Ok(n) => metrics::gauge!("jobpulse_outbox_pending").set(n as f64),
            Err(e) => tracing::debug!(error = %e, "outbox: cannot count pending rows"),
        }
    }

    /// Publishes batches until the outbox is empty (or only holds rows another relay has
    /// locked). Stops at the first error.
    pub async fn drain(&self) -> Result<RelayReport, PublishError> {
        let mut total = RelayReport::default();
        loop {
            let r = self.relay_batch().await?;
            total.add(r);
            if r.fetched < self.config.batch_size as u64 {
                return Ok(total);
            }
        }
    }

    /// Publishes one batch of the oldest rows.
    pub async fn relay_batch(&self) -> Result<RelayReport, PublishError> {
        // PostgreSQL: the batch holds its row locks while publishing so other relays skip these
        // rows. SQLite: it was read without a transaction, so the store call never holds the
        // write lock.
        let batch = self.db.outbox_batch(self.config.batch_size).await?;
        if batch.rows().is_empty() {
            batch.ack().await?;
            return Ok(RelayReport::default());
        }
        match self.publish_rows(batch.rows()).await {
            Ok((report, kept)) => {
                batch.settle(&kept, UNREPLICATED).await?;
                Ok(report)
            }
            Err(e) => {
                batch.fail(&e.to_string()).await?;
                Err(e.into())
            }
        }
    }

    /// Publishes the given rows now and deletes them (the API calls this with the rows of a
    /// change it just committed, before answering). On a store error the rows stay for the
    /// background relay.
    pub async fn publish_now(&self, entries: &[OutboxEntry]) -> Result<RelayReport, PublishError> {
        if entries.is_empty() {
            return Ok(RelayReport::default());
        }
        let rows: Vec<PendingRow> = entries.iter().map(PendingRow::committed).collect();
        let (report, kept) = self.publish_rows(&rows).await?;
        self.delete_published(&rows, &kept).await?;
        Ok(report)
    }

    /// Loads rows by id and publishes them (for callers that kept only the ids).
    pub async fn publish_ids(&self, ids: &[i64]) -> Result<RelayReport, PublishError> {
        let rows = self.db.outbox_rows(ids).await?;
        let (report, kept) = self.publish_rows(&rows).await?;
        self.delete_published(&rows, &kept).await?;
        Ok(report)
    }

    /// Deletes the rows but the `kept` ones (their writes are not replicated yet: the
    /// background relay sends them again).
    async fn delete_published(&self, rows: &[PendingRow], kept: &[i64]) -> Result<(), DbError> {
        let done: Vec<i64> = rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !kept.contains(id))
            .collect();
        if !done.is_empty() {
            self.db.delete_outbox(&done).await?;
        }
        Ok(())
    }

    /// Applies the rows' writes; returns what happened and the ids of the rows to keep (their
    /// writes are not replicated yet).
    async fn publish_rows(
        &self,
        rows: &[PendingRow],
    ) -> Result<(RelayReport, Vec<i64>), StoreError> {
        let mut report = RelayReport {
            fetched: rows.len() as u64,
            ..RelayReport::default()
        };
        let mut writes: Vec<Write> = Vec::with_capacity(rows.len());
        let mut sent: Vec<&PendingRow> = Vec::with_capacity(rows.len());
        for row in rows {
            match &row.write {
                Ok(w) => {
                    writes.push(w.clone());
                    sent.push(row);
                }
                Err(e) => {
                    report.undecodable += 1;
                    metrics::counter!("jobpulse_outbox_rejected_total", "reason" => "undecodable")
                        .increment(1);
                    tracing::error!(outbox.id = row.id, error = %e, "undecodable outbox row dropped");
                }
            }
        }
        if writes.is_empty() {
            return Ok((report, Vec::new()));
        }
        let outcomes = self.store.apply_many_durable(&writes).await?;
        let mut kept = Vec::new();
        for ((w, d), row) in writes.iter().zip(&outcomes).zip(&sent) {
            if !d.replicated && !matches!(d.outcome, Outcome::Rejected { .. }) {
                let age = row.age();
                if age < self.config.unreplicated_retry_for {
                    report.unreplicated += 1;
                    metrics::counter!("jobpulse_outbox_unreplicated_total").increment(1);
                    kept.push(row.id);
                } else {
                    report.unreplicated_given_up += 1;
                    metrics::counter!("jobpulse_outbox_unreplicated_given_up_total").increment(1);
                    tracing::warn!(
                        outbox.id = row.id,
                        tenant.id = %w.key.tenant,
                        age_ms = age.as_millis(),
                        "no replica acknowledged an outbox write within unreplicated_retry_for; \
                         the row is deleted (the write stands on its master)"
                    );
                }
            }
            match &d.outcome {
                Outcome::Applied { .. } => report.applied += 1,
                Outcome::Stale { .. } => report.stale += 1,
                Outcome::Rejected { reason } => {
                    report.rejected += 1;
                    metrics::counter!("jobpulse_outbox_rejected_total", "reason" => "store")
                        .increment(1);
                    tracing::error!(
                        tenant.id = %w.key.tenant,
                        task = %w.key.task,
                        fence = %w.fence,
                        %reason,
                        "read model rejected an outbox write; dropped"
                    );
                }
            }
        }
        metrics::counter!("jobpulse_outbox_published_total", "outcome" => "applied")
            .increment(report.applied);
        metrics::counter!("jobpulse_outbox_published_total", "outcome" => "stale")
            .increment(report.stale);
        Ok((report, kept))
    }
}
