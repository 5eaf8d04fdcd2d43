//! Prometheus metrics: one process-wide recorder, and pre-registered handles for the hot path.
//!
//! `metrics::counter!` looks a metric up by name and labels on every call; the progress handlers
//! instead hold [`ReadMetrics`], handles resolved once, so counting a poll is an atomic add.
//!
//! Every metric any crate of the workspace records is described in [`DESCRIPTIONS`], so
//! `/metrics` carries a `# HELP` and a `# TYPE` line for each (a test checks that no metric
//! goes undescribed). [`render`] also samples the process (`process_resident_memory_bytes`,
//! `process_open_fds`, `process_cpu_seconds_total`, … from the `metrics-process` crate), and
//! [`record_ops_stats`] turns a database snapshot (queues, outbox) into gauges.
//!
//! The submodules: `descriptions` (every metric's name, [`Kind`] and help) and `ops` (the
//! database snapshot's gauges).

mod descriptions;
mod ops;

use std::sync::OnceLock;

use metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use self::descriptions::{DESCRIPTIONS, Kind};
pub use self::ops::record_ops_stats;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

fn describe() {
    for &(name, kind, help) in DESCRIPTIONS {
        let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
        match (kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
    let process = PROCESS.get_or_init(|| metrics_process::Collector::new(""));
    process.describe();
    // Shown from the start (at 0), so alerts and dashboards see a series before the first
    // error rather than none.
    for name in ZERO_FROM_START {
        metrics::counter!(*name).increment(0);
    }
    metrics::gauge!("jobpulse_sse_streams").increment(0.0);
}

/// Label-less counters exposed at 0 before their first increment.
const ZERO_FROM_START: &[&str] = &[
    "jobpulse_outbox_errors_total",
    "jobpulse_ops_stats_errors_total",
    "jobpulse_log_lines_dropped_total",
    "jobpulse_sse_dropped_total",
    "jobpulse_sse_stalled_total",
    "jobpulse_progress_not_modified_total",
    "jobpulse_progress_behind_client_total",
    "jobpulse_progress_read_model_unavailable_total",
    "jobpulse_read_model_lost_total",
];

/// The `/metrics` text: samples the process first.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    handle.render()
}

/// Installs the Prometheus recorder once per process (without its own HTTP listener: `/metrics`
/// is served by our router). Returns `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ];
            // Whole requests include uploads and downloads: up to a minute.
            let http = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("jobpulse_http_request_duration_seconds".into()),
                    &http,
                )
                .and_then(|b| {
                    // A transcode takes seconds to many minutes.
                    b.set_buckets_for_metric(
                        Matcher::Full("jobpulse_worker_attempt_seconds".into()),
                        &[
                            0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                            3600.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok();
            if handle.is_some() {
                describe();
            }
            handle
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
    /// Polls whose client held a newer revision than the read model had.
    pub behind_client: Counter,
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
            behind_client: metrics::counter!("jobpulse_progress_behind_client_total"),
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
