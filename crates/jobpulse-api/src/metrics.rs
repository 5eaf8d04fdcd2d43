//! Prometheus metrics: one process-wide recorder, and pre-registered handles for the hot path.
//!
//! `metrics::counter!` looks a metric up by name and labels on every call; the progress handlers
//! instead hold [`ReadMetrics`], handles resolved once, so counting a poll is an atomic add.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process (without its own HTTP listener: `/metrics`
/// is served by our router). Returns `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Handles used by every progress read.
#[derive(Debug, Clone)]
pub struct ReadMetrics {
    pub video_requests: Counter,
    pub job_requests: Counter,
    pub hits: Counter,
    pub misses: Counter,
    pub not_modified: Counter,
    /// Polls answered UNKNOWN because the read model could not be reached.
    pub unavailable: Counter,
    pub video_latency: Histogram,
    pub job_latency: Histogram,
}

impl ReadMetrics {
    /// Resolves the handles; call after [`install`].
    pub fn new() -> Self {
        Self {
            video_requests: metrics::counter!("jobpulse_progress_requests_total", "kind" => "video"),
            job_requests: metrics::counter!("jobpulse_progress_requests_total", "kind" => "job"),
            hits: metrics::counter!("jobpulse_read_model_lookups_total", "result" => "hit"),
            misses: metrics::counter!("jobpulse_read_model_lookups_total", "result" => "miss"),
            not_modified: metrics::counter!("jobpulse_progress_not_modified_total"),
            unavailable: metrics::counter!("jobpulse_progress_read_model_unavailable_total"),
            video_latency: metrics::histogram!("jobpulse_progress_request_seconds", "kind" => "video"),
            job_latency: metrics::histogram!("jobpulse_progress_request_seconds", "kind" => "job"),
        }
    }
}

impl Default for ReadMetrics {
    fn default() -> Self {
        Self::new()
    }
}
