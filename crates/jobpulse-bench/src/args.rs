//! The bench's own command line (`BenchArgs`, beside the server settings) and the parsing of
//! its durations and of `--only`.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Measured time per scenario step, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub(crate) duration: String,
    /// Unmeasured warm-up before each step.
    #[arg(long, default_value = "2s")]
    pub(crate) warmup: String,
    /// Read model to serve from: redis (REDIS_URL, default redis://127.0.0.1:6379) or memory.
    #[arg(long, default_value = "redis")]
    pub(crate) store: String,
    /// Scenarios to run (comma-separated): progress, batch, etag, sse, pipeline, queue; or
    /// `all`. sse, pipeline and queue are heavy and run only when named.
    #[arg(long, default_value = "progress,batch,etag")]
    pub(crate) only: String,
    /// sse: streams to open (one connection each, from a child process).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) streams: usize,
    /// sse: streams of the latency group (tenant 1, watching the written video).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) watchers: usize,
    /// sse: tenants the streams are spread over (the latency group is tenant 1).
    #[arg(long, default_value_t = 10)]
    pub(crate) tenants: i64,
    /// sse: how long every stream is held open before it is counted again, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub(crate) hold: String,
    /// sse: progress writes for the latency figure.
    #[arg(long, default_value_t = 200)]
    pub(crate) sse_writes: u32,
    /// sse: interval of those writes, e.g. 50ms (one write's fan-out should end before the
    /// next begins, or the figure measures a queue).
    #[arg(long, default_value = "50ms")]
    pub(crate) sse_write_every: String,
    /// sse: open each stream as the second request of its connection (after a GET /healthz),
    /// as a browser reusing a keep-alive connection may: such streams are served by hyper, not
    /// the lean stream path (for comparison).
    #[arg(long)]
    pub(crate) sse_reuse_connection: bool,
    /// sse: the hub's direct writes to idle lean-path streams (`off`: every delivery goes
    /// through the stream's task, for comparison).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub(crate) sse_direct_writes: String,
    /// pipeline: length of the generated 1280x720 clip, seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) clip_secs: u32,
    /// pipeline: rounds of (ffmpeg alone, pipeline).
    #[arg(long, default_value_t = 2)]
    pub(crate) rounds: usize,
    /// eta: rounds per clip kind (and excel imports).
    #[arg(long, default_value_t = 1)]
    pub(crate) eta_rounds: usize,
    /// eta: stretches the long clips (1 = 300 s static, 120 s long, 40 s mixed, 20 s motion).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) eta_scale: f64,
    /// eta: rows of the excel import measured (0: no import).
    #[arg(long, default_value_t = 3000)]
    pub(crate) eta_import_rows: u32,
    /// queue: AI jobs each side drains per round.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) queue_jobs: u64,
    /// queue: concurrent claimers on each side.
    #[arg(long, default_value_t = 32)]
    pub(crate) claimers: usize,
    /// queue: tenants the jobs are spread over (round robin).
    #[arg(long, default_value_t = 16)]
    pub(crate) queue_tenants: u32,
    /// queue: the caps our claims pass — `worker` (the AI worker's default, 4 running per
    /// tenant), `queue-lock` (the same plus a global cap nobody reaches, which makes every claim
    /// take the queue's lock, as every capped claim did before issue 14 item 7) or `off`.
    #[arg(long, default_value = "worker", value_parser = ["worker", "queue-lock", "off"])]
    pub(crate) queue_caps: String,
    /// queue: `off` drops the outbox's NOTIFY trigger in the bench's database (a diagnosis of
    /// the design limit: every notifying commit takes PostgreSQL's one notify-queue lock).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub(crate) queue_outbox_notify: String,
    /// queue: rounds of (bare loop, ours), each on freshly seeded jobs.
    #[arg(long, default_value_t = 3)]
    pub(crate) queue_rounds: usize,
    /// fleet: reuse the fleet `scripts/fleet start DIR` started (default: start one, and a
    /// Redis Cluster unless JOBPULSE_REDIS_CLUSTER_NODES is set, and stop them afterwards).
    #[arg(long)]
    pub(crate) fleet_dir: Option<std::path::PathBuf>,
    /// fleet: API replicas behind nginx (when the fleet is started here).
    #[arg(long, default_value_t = 3)]
    pub(crate) fleet_replicas: usize,
    /// fleet: tenants.
    #[arg(long, default_value_t = 100)]
    pub(crate) fleet_tenants: usize,
    /// fleet: browsers (open work boxes) per tenant.
    #[arg(long, default_value_t = 100)]
    pub(crate) fleet_browsers: usize,
    /// fleet: videos in each work box.
    #[arg(long, default_value_t = 3)]
    pub(crate) fleet_tasks: usize,
    /// fleet: share of hidden tabs (they do not poll), percent.
    #[arg(long, default_value_t = 30)]
    pub(crate) fleet_hidden: u32,
    /// fleet: SSE watchers (one stream each, watching a box the workers write to).
    #[arg(long, default_value_t = 300)]
    pub(crate) fleet_watchers: usize,
    /// fleet: simulated workers, one progress write a second each.
    #[arg(long, default_value_t = 100)]
    pub(crate) fleet_workers: usize,
    /// fleet: tasks' ages at the start are uniform in [0, this), e.g. 30m.
    #[arg(long, default_value = "30m")]
    pub(crate) fleet_task_ages: String,
    /// fleet: the baseline window (workers and watchers, no polls).
    #[arg(long, default_value = "30s")]
    pub(crate) fleet_baseline: String,
    /// fleet: polls before the measured window.
    #[arg(long, default_value = "30s")]
    pub(crate) fleet_warmup: String,
    /// fleet: the measured window.
    #[arg(long, default_value = "60s")]
    pub(crate) fleet_duration: String,
    /// Internal: the SSE load client, run as a child process by `--only sse`.
    #[arg(long, hide = true)]
    pub(crate) sse_client: bool,
}

/// Every scenario, in the order they run.
pub(crate) const SCENARIOS: [&str; 8] = [
    "progress", "batch", "etag", "sse", "pipeline", "eta", "queue", "fleet",
];

/// `50ms`, or anything [`secs`] takes.
pub(crate) fn millis(s: &str, what: &str) -> anyhow::Result<Duration> {
    match s.strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| anyhow::anyhow!("--{what}: e.g. 50ms or 1s")),
        None => secs(s, what),
    }
}

pub(crate) fn secs(s: &str, what: &str) -> anyhow::Result<Duration> {
    jobpulse_api::auth::parse_ttl(s)
        .map(Duration::from_secs)
        .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

/// The scenarios `--only` names, checked; `all` is every one.
pub(crate) fn selected(only: &str) -> anyhow::Result<Vec<&'static str>> {
    let names: Vec<&str> = only.split(',').map(str::trim).collect();
    if names.contains(&"all") {
        return Ok(SCENARIOS.to_vec());
    }
    if let Some(bad) = names.iter().find(|n| !SCENARIOS.contains(n)) {
        anyhow::bail!(
            "--only: unknown scenario {bad:?}; pick from {} or all",
            SCENARIOS.join(", ")
        );
    }
    Ok(SCENARIOS
        .into_iter()
        .filter(|s| names.contains(s))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_selects_known_scenarios_in_order() {
        assert_eq!(
            super::selected("pipeline, progress").ok(),
            Some(vec!["progress", "pipeline"])
        );
        assert_eq!(super::selected("all").ok(), Some(super::SCENARIOS.to_vec()));
        assert!(super::selected("progres").is_err());
    }
}
