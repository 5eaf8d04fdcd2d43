//! The gauges `/metrics` shows that nothing else updates, refreshed by a task of the serving
//! process.

use jobpulse_db::Db;
use jobpulse_store::SharedStore;
use tokio_util::sync::CancellationToken;

/// How often the gauges read from the database (queues, outbox) are refreshed.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes the gauges `/metrics` shows but nothing else updates: whether the read model and
/// the database answer, the queues and the outbox (from the database, when there is one), and
/// the dropped log lines.
pub(crate) fn spawn(
    store: SharedStore,
    db: Option<Db>,
    tenant_caps: jobpulse_db::TenantCaps,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut failing = false;
        let limit = std::time::Duration::from_secs(5);
        loop {
            metrics::counter!("jobpulse_log_lines_dropped_total")
                .absolute(crate::logging::dropped_lines());
            let store_up = matches!(tokio::time::timeout(limit, store.ping()).await, Ok(Ok(())));
            metrics::gauge!("jobpulse_dependency_up", "dependency" => "read_model")
                .set(if store_up { 1.0 } else { 0.0 });
            if let Some(db) = &db {
                let db_up = matches!(tokio::time::timeout(limit, db.ping()).await, Ok(Ok(())));
                metrics::gauge!("jobpulse_dependency_up", "dependency" => "database")
                    .set(if db_up { 1.0 } else { 0.0 });
                match db.ops_stats().await {
                    Ok(stats) => {
                        jobpulse_api::metrics::record_ops_stats(&stats, tenant_caps);
                        failing = false;
                    }
                    Err(e) => {
                        metrics::counter!("jobpulse_ops_stats_errors_total").increment(1);
                        if !failing {
                            tracing::warn!(error = %e, "reading queue statistics failed");
                            failing = true;
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(GAUGES_EVERY) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}
