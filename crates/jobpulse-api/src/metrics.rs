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

use std::sync::OnceLock;

use metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// What kind of metric a name is (for [`DESCRIPTIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// `(name, kind, help)` of every metric jobpulse records (the process metrics describe
/// themselves).
pub const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    // HTTP (crate::observe)
    (
        "jobpulse_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by method, route template and status.",
    ),
    (
        "jobpulse_http_request_duration_seconds",
        Kind::Histogram,
        "Time to the response head, by method and route template.",
    ),
    // progress reads (crate::routes::progress)
    (
        "jobpulse_progress_requests_total",
        Kind::Counter,
        "Progress polls, by kind (video, job).",
    ),
    (
        "jobpulse_progress_request_seconds",
        Kind::Histogram,
        "Progress poll handling time, by kind.",
    ),
    (
        "jobpulse_progress_not_modified_total",
        Kind::Counter,
        "Progress polls answered 304 Not Modified.",
    ),
    (
        "jobpulse_progress_behind_client_total",
        Kind::Counter,
        "Progress polls whose client held a newer revision than the read model had (answered 304).",
    ),
    (
        "jobpulse_progress_read_model_unavailable_total",
        Kind::Counter,
        "Progress polls answered UNKNOWN because the read model was unreachable.",
    ),
    (
        "jobpulse_read_model_lookups_total",
        Kind::Counter,
        "Read-model lookups of progress polls, by result (hit, miss).",
    ),
    // SSE
    (
        "jobpulse_sse_streams",
        Kind::Gauge,
        "Open Server-Sent Events streams in this process.",
    ),
    (
        "jobpulse_sse_dropped_total",
        Kind::Counter,
        "SSE events dropped for a stream that could not keep up.",
    ),
    (
        "jobpulse_sse_resync_total",
        Kind::Counter,
        "SSE streams told to resynchronise, by kind (expired, lagged).",
    ),
    // read model store
    (
        "jobpulse_store_ops_total",
        Kind::Counter,
        "Read-model store calls, by backend and op (op=get_cached: answered by the read cache).",
    ),
    (
        "jobpulse_store_outcomes_total",
        Kind::Counter,
        "Read-model writes, by backend and outcome (applied, stale, rejected).",
    ),
    (
        "jobpulse_store_errors_total",
        Kind::Counter,
        "Read-model store calls that failed to reach the store, by backend and op.",
    ),
    (
        "jobpulse_read_model_lost_total",
        Kind::Counter,
        "Times the read model was found empty or replaced (then rebuilt from the database).",
    ),
    (
        "jobpulse_repair_runs_total",
        Kind::Counter,
        "Read-model rebuilds, by outcome (ok, error).",
    ),
    (
        "jobpulse_repair_writes_total",
        Kind::Counter,
        "Writes of read-model rebuilds, by outcome (applied, stale).",
    ),
    (
        "jobpulse_read_repair_requests_total",
        Kind::Counter,
        "Read-repair requests after read-model misses, by outcome (queued, rate_limited, full).",
    ),
    (
        "jobpulse_read_repair_total",
        Kind::Counter,
        "Read repairs done, by outcome.",
    ),
    // outbox relay
    (
        "jobpulse_outbox_pending",
        Kind::Gauge,
        "Outbox rows not yet published to the read model.",
    ),
    (
        "jobpulse_outbox_oldest_age_seconds",
        Kind::Gauge,
        "Age of the oldest unpublished outbox row (the relay's lag; 0 when empty).",
    ),
    (
        "jobpulse_outbox_published_total",
        Kind::Counter,
        "Outbox rows published, by outcome (applied, stale).",
    ),
    (
        "jobpulse_outbox_rejected_total",
        Kind::Counter,
        "Outbox rows the read model rejected, by reason.",
    ),
    (
        "jobpulse_outbox_errors_total",
        Kind::Counter,
        "Relay batches that failed (rows kept and retried).",
    ),
    // dependencies
    (
        "jobpulse_dependency_up",
        Kind::Gauge,
        "1 when a dependency (read_model, database) answered its last check (every 10 s), else 0.",
    ),
    // queues
    (
        "jobpulse_queue_jobs",
        Kind::Gauge,
        "Active jobs in the database, by queue (video, ai) and state.",
    ),
    (
        "jobpulse_queue_oldest_runnable_age_seconds",
        Kind::Gauge,
        "How long the oldest job that could run has waited, by queue (0 when none waits).",
    ),
    (
        "jobpulse_queue_tenant_jobs",
        Kind::Gauge,
        "Jobs of a tenant, by queue, tenant and state: waiting (could run now) or running (live \
         lease); the 50 busiest tenants of each queue.",
    ),
    (
        "jobpulse_queue_tenants_waiting",
        Kind::Gauge,
        "Tenants with jobs that could run now, by queue.",
    ),
    (
        "jobpulse_queue_tenant_capped",
        Kind::Gauge,
        "Tenants at the per-tenant concurrency cap (--tenant-concurrency) with work waiting, by \
         queue: their jobs wait although workers may be idle (0 without a cap).",
    ),
    (
        "jobpulse_queue_failed_last_hour",
        Kind::Gauge,
        "Jobs that failed for good within the last hour, by queue.",
    ),
    (
        "jobpulse_ops_stats_errors_total",
        Kind::Counter,
        "Failed reads of the queue and outbox statistics.",
    ),
    (
        "jobpulse_queue_claims_total",
        Kind::Counter,
        "Jobs claimed by workers of this process, by queue.",
    ),
    (
        "jobpulse_queue_failures_total",
        Kind::Counter,
        "Failed attempts in this process, by queue and outcome (retry, dead).",
    ),
    (
        "jobpulse_queue_reaped_total",
        Kind::Counter,
        "Expired leases reaped, by queue and outcome.",
    ),
    (
        "jobpulse_queue_released_total",
        Kind::Counter,
        "Jobs released back to the queue (e.g. at shutdown), by queue.",
    ),
    // workers
    (
        "jobpulse_worker_busy",
        Kind::Gauge,
        "Attempts running in this process, by queue.",
    ),
    (
        "jobpulse_worker_attempts_total",
        Kind::Counter,
        "Attempts finished in this process, by queue and outcome.",
    ),
    (
        "jobpulse_worker_attempt_seconds",
        Kind::Histogram,
        "Attempt duration, by queue.",
    ),
    (
        "jobpulse_credentials_purged_jobs_total",
        Kind::Counter,
        "Finished imports whose initial passwords were purged.",
    ),
    // logging
    (
        "jobpulse_log_lines_dropped_total",
        Kind::Counter,
        "Log lines dropped because stderr could not keep up (or is gone).",
    ),
];

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

/// Sets the queue and outbox gauges from a database snapshot.
/// `tenant_caps`: the workers' per-tenant concurrency caps (`--tenant-video-concurrency`,
/// `--tenant-job-concurrency`).
pub fn record_ops_stats(stats: &jobpulse_db::OpsStats, tenant_caps: jobpulse_db::TenantCaps) {
    // Tenants exported before: set back to 0 when they have no active job any more.
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<(&'static str, i64)>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut now = std::collections::BTreeSet::new();
    for t in &stats.tenants {
        let tenant = t.tenant.to_string();
        metrics::gauge!("jobpulse_queue_tenant_jobs", "queue" => t.queue, "tenant" => tenant.clone(), "state" => "waiting")
            .set(t.waiting as f64);
        metrics::gauge!("jobpulse_queue_tenant_jobs", "queue" => t.queue, "tenant" => tenant, "state" => "running")
            .set(t.running as f64);
        now.insert((t.queue, t.tenant));
    }
    for &(queue, tenant) in seen.difference(&now) {
        for state in ["waiting", "running"] {
            metrics::gauge!("jobpulse_queue_tenant_jobs", "queue" => queue, "tenant" => tenant.to_string(), "state" => state)
                .set(0.0);
        }
    }
    seen.extend(now);
    for q in [jobpulse_db::Queue::Video, jobpulse_db::Queue::Ai] {
        let queue = q.as_str();
        let of_queue = || stats.tenants.iter().filter(move |t| t.queue == queue);
        let waiting = of_queue().filter(|t| t.waiting > 0).count();
        let capped = of_queue().filter(|t| t.capped(tenant_caps.of(q))).count();
        metrics::gauge!("jobpulse_queue_tenants_waiting", "queue" => queue).set(waiting as f64);
        metrics::gauge!("jobpulse_queue_tenant_capped", "queue" => queue).set(capped as f64);
    }
    for &(queue, state, n) in &stats.jobs {
        metrics::gauge!("jobpulse_queue_jobs", "queue" => queue, "state" => state).set(n as f64);
    }
    for &(queue, age) in &stats.oldest_runnable_age_secs {
        metrics::gauge!("jobpulse_queue_oldest_runnable_age_seconds", "queue" => queue).set(age);
    }
    for &(queue, n) in &stats.failed_recently {
        metrics::gauge!("jobpulse_queue_failed_last_hour", "queue" => queue).set(n as f64);
    }
    metrics::gauge!("jobpulse_outbox_pending").set(stats.outbox_pending as f64);
    metrics::gauge!("jobpulse_outbox_oldest_age_seconds").set(stats.outbox_oldest_age_secs);
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
