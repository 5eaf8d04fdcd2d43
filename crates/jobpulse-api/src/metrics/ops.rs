//! The queue and outbox gauges, set from a database snapshot ([`jobpulse_db::OpsStats`]).

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
