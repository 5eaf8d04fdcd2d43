//! The help text and kind of every metric jobpulse records: `/metrics` prints a `# HELP` and a
//! `# TYPE` line for each.

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
        "jobpulse_sse_stalled_total",
        Kind::Counter,
        "Running tasks re-sent to SSE streams because their worker gave no sign of life for \
         longer than --worker-stalled-after.",
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
    (
        "jobpulse_webhook_enqueued_total",
        Kind::Counter,
        "Webhook deliveries written with the state changes they announce.",
    ),
    (
        "jobpulse_webhook_deliveries_total",
        Kind::Counter,
        "Webhook delivery attempts by outcome (delivered, retry, dead).",
    ),
    (
        "jobpulse_store_unreplicated_writes_total",
        Kind::Counter,
        "Redis Cluster write pipelines' writes that no replica acknowledged within 50 ms, by backend.",
    ),
    (
        "jobpulse_outbox_unreplicated_total",
        Kind::Counter,
        "Outbox rows kept because no Redis Cluster replica acknowledged their write yet (sent again).",
    ),
    (
        "jobpulse_outbox_unreplicated_given_up_total",
        Kind::Counter,
        "Outbox rows deleted after unreplicated_retry_for without a replica's acknowledgement.",
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
