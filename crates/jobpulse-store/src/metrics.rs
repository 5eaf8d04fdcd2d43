//! The store's counters, named the same for every backend so dashboards compare them directly.
//!
//! - `jobpulse_store_ops_total{backend, op}`: calls of each trait method;
//! - `jobpulse_store_outcomes_total{backend, outcome}`: `applied | stale | rejected` per write;
//! - `jobpulse_store_errors_total{backend, op}`: calls that failed to reach the store;
//! - `jobpulse_store_unreplicated_writes_total{backend}`: on a Redis Cluster, writes that no
//!   replica acknowledged within `RedisOptions::replica_ack_timeout`.
//!
//! Without an installed recorder these are no-ops.

use jobpulse_domain::Outcome;

pub(crate) fn op(backend: &'static str, op: &'static str) {
    metrics::counter!("jobpulse_store_ops_total", "backend" => backend, "op" => op).increment(1);
}

pub(crate) fn outcome(backend: &'static str, outcome: &Outcome) {
    let name = match outcome {
        Outcome::Applied { .. } => "applied",
        Outcome::Stale { .. } => "stale",
        Outcome::Rejected { .. } => "rejected",
    };
    metrics::counter!("jobpulse_store_outcomes_total", "backend" => backend, "outcome" => name)
        .increment(1);
}

pub(crate) fn error(backend: &'static str, op: &'static str) {
    metrics::counter!("jobpulse_store_errors_total", "backend" => backend, "op" => op).increment(1);
}

/// Exposes the error counters of `ops` at 0 before any error, so alerts and dashboards have a
/// series to watch from the start.
pub(crate) fn announce_errors(backend: &'static str, ops: &[&'static str]) {
    for &op in ops {
        metrics::counter!("jobpulse_store_errors_total", "backend" => backend, "op" => op)
            .increment(0);
    }
}

pub(crate) fn unreplicated(backend: &'static str, writes: usize) {
    metrics::counter!("jobpulse_store_unreplicated_writes_total", "backend" => backend)
        .increment(u64::try_from(writes).unwrap_or(u64::MAX));
}
