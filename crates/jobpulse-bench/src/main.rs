//! `jobpulse-bench`: load benchmarks of the real server over loopback, each printed as a ratio
//! against a baseline measured in the same run (docs/benchmarks.md records the figures).
//!
//! Scenarios (`--only` selects some):
//!
//! - `progress`: the progress endpoint on a read-model hit (a) and miss (b), a bare route that
//!   does no store work (c, the framework ceiling: `/healthz` behind the same middleware), and
//!   the old way (d): the same answer read from PostgreSQL with the old system's joins plus a
//!   membership lookup. Prints requests/s, p50/p99, (a)/(c) and (a)/(d).
//! - `batch`: one batch read of 100 ids vs 100 single polls.
//! - `etag`: bytes and requests/s of an unchanged poll with and without `If-None-Match`.
//! - `sse` (opt-in): SSE fan-out — streams one process holds, server memory per stream, and
//!   write-to-client latency with 1 000 streams watching, against the store's own change feed
//!   (see [`sse`]; the streams come from a child process, `--streams`, `--watchers`,
//!   `--tenants`, `--hold`, `--sse-writes`).
//! - `pipeline` (opt-in): the video pipeline (a real `VideoWorker` on SQLite + the in-process
//!   store) against the same ffmpeg commands run alone, on a generated clip (see [`pipeline`];
//!   `--clip-secs`, `--rounds`). Needs ffmpeg/ffprobe; no server.
//! - `queue` (opt-in): claims/s of small AI jobs through `Db::claim` → `Db::complete_ai_job`
//!   with 32 concurrent claimers against a bare `FOR UPDATE SKIP LOCKED` loop on the same
//!   PostgreSQL database, plus double claims (see [`queue`]; `--queue-jobs`, `--claimers`,
//!   `--queue-tenants`, `--queue-caps`, `--queue-rounds`). Needs PostgreSQL; no server.
//! - `fleet` (opt-in): a fleet of `scripts/fleet` (nginx, R replicas, a Redis Cluster of
//!   `scripts/redis-cluster`) driven by browsers polling at the front end's cadence, SSE
//!   watchers and workers writing progress; PostgreSQL transactions, Redis commands and CPU
//!   per poll (see [`fleet`]; `--fleet-*`). Needs the release `jobpulse` binary next to this
//!   one, nginx and redis-server.
//!
//! The default is `progress,batch,etag`: `sse` opens 10 000 connections, `pipeline`
//! transcodes for minutes, `queue` creates a database of its own and `fleet` starts a dozen
//! processes, so they run only when named (`--only sse,pipeline,queue,fleet`, or `--only all`).
//!
//! The server runs on its own runtime (2 threads) in this process; the load generator on
//! another (for `sse`, in another process). Both share the machine, identically for every
//! scenario.

mod fleet;
mod fleet_load;
mod fleet_probe;
mod floor;
mod load;
mod old_way;
mod pipeline;
mod queue;
mod server;
mod sse;
mod sse_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_api::hub::Hub;
use jobpulse_api::{AppSettings, Application, SseSettings};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{Fence, TaskKey, TenantId, VideoId, Write};
use jobpulse_store::{MemoryStore, RedisStore, SharedStore};
use tokio_util::sync::CancellationToken;

use jobpulse_cli::config::{ServerArgs, Settings};
use jobpulse_cli::logging;
use load::{LoadResult, MakeRequest};
use server::{Server, ServerSpec, start_server};

#[derive(Debug, Args)]
struct BenchArgs {
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time per scenario step, e.g. 10s.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Unmeasured warm-up before each step.
    #[arg(long, default_value = "2s")]
    warmup: String,
    /// Read model to serve from: redis (REDIS_URL, default redis://127.0.0.1:6379) or memory.
    #[arg(long, default_value = "redis")]
    store: String,
    /// Scenarios to run (comma-separated): progress, batch, etag, sse, pipeline, queue; or
    /// `all`. sse, pipeline and queue are heavy and run only when named.
    #[arg(long, default_value = "progress,batch,etag")]
    only: String,
    /// sse: streams to open (one connection each, from a child process).
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// sse: streams of the latency group (tenant 1, watching the written video).
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// sse: tenants the streams are spread over (the latency group is tenant 1).
    #[arg(long, default_value_t = 10)]
    tenants: i64,
    /// sse: how long every stream is held open before it is counted again, e.g. 10s.
    #[arg(long, default_value = "10s")]
    hold: String,
    /// sse: progress writes for the latency figure.
    #[arg(long, default_value_t = 200)]
    sse_writes: u32,
    /// sse: interval of those writes, e.g. 50ms (one write's fan-out should end before the
    /// next begins, or the figure measures a queue).
    #[arg(long, default_value = "50ms")]
    sse_write_every: String,
    /// sse: open each stream as the second request of its connection (after a GET /healthz),
    /// as a browser reusing a keep-alive connection may: such streams are served by hyper, not
    /// the lean stream path (for comparison).
    #[arg(long)]
    sse_reuse_connection: bool,
    /// sse: the hub's direct writes to idle lean-path streams (`off`: every delivery goes
    /// through the stream's task, for comparison).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    sse_direct_writes: String,
    /// pipeline: length of the generated 1280x720 clip, seconds.
    #[arg(long, default_value_t = 60)]
    clip_secs: u32,
    /// pipeline: rounds of (ffmpeg alone, pipeline).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// queue: AI jobs each side drains per round.
    #[arg(long, default_value_t = 10_000)]
    queue_jobs: u64,
    /// queue: concurrent claimers on each side.
    #[arg(long, default_value_t = 32)]
    claimers: usize,
    /// queue: tenants the jobs are spread over (round robin).
    #[arg(long, default_value_t = 16)]
    queue_tenants: u32,
    /// queue: the caps our claims pass — `worker` (the AI worker's default, 4 running per
    /// tenant), `queue-lock` (the same plus a global cap nobody reaches, which makes every claim
    /// take the queue's lock, as every capped claim did before issue 14 item 7) or `off`.
    #[arg(long, default_value = "worker", value_parser = ["worker", "queue-lock", "off"])]
    queue_caps: String,
    /// queue: `off` drops the outbox's NOTIFY trigger in the bench's database (a diagnosis of
    /// the design limit: every notifying commit takes PostgreSQL's one notify-queue lock).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    queue_outbox_notify: String,
    /// queue: rounds of (bare loop, ours), each on freshly seeded jobs.
    #[arg(long, default_value_t = 3)]
    queue_rounds: usize,
    /// fleet: reuse the fleet `scripts/fleet start DIR` started (default: start one, and a
    /// Redis Cluster unless JOBPULSE_REDIS_CLUSTER_NODES is set, and stop them afterwards).
    #[arg(long)]
    fleet_dir: Option<std::path::PathBuf>,
    /// fleet: API replicas behind nginx (when the fleet is started here).
    #[arg(long, default_value_t = 3)]
    fleet_replicas: usize,
    /// fleet: tenants.
    #[arg(long, default_value_t = 100)]
    fleet_tenants: usize,
    /// fleet: browsers (open work boxes) per tenant.
    #[arg(long, default_value_t = 100)]
    fleet_browsers: usize,
    /// fleet: videos in each work box.
    #[arg(long, default_value_t = 3)]
    fleet_tasks: usize,
    /// fleet: share of hidden tabs (they do not poll), percent.
    #[arg(long, default_value_t = 30)]
    fleet_hidden: u32,
    /// fleet: SSE watchers (one stream each, watching a box the workers write to).
    #[arg(long, default_value_t = 300)]
    fleet_watchers: usize,
    /// fleet: simulated workers, one progress write a second each.
    #[arg(long, default_value_t = 100)]
    fleet_workers: usize,
    /// fleet: tasks' ages at the start are uniform in [0, this), e.g. 30m.
    #[arg(long, default_value = "30m")]
    fleet_task_ages: String,
    /// fleet: the baseline window (workers and watchers, no polls).
    #[arg(long, default_value = "30s")]
    fleet_baseline: String,
    /// fleet: polls before the measured window.
    #[arg(long, default_value = "30s")]
    fleet_warmup: String,
    /// fleet: the measured window.
    #[arg(long, default_value = "60s")]
    fleet_duration: String,
    /// Internal: the SSE load client, run as a child process by `--only sse`.
    #[arg(long, hide = true)]
    sse_client: bool,
}

/// Every scenario, in the order they run.
const SCENARIOS: [&str; 7] = [
    "progress", "batch", "etag", "sse", "pipeline", "queue", "fleet",
];

const SEEDED: i64 = 1000;

/// `50ms`, or anything [`secs`] takes.
fn millis(s: &str, what: &str) -> anyhow::Result<Duration> {
    match s.strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| anyhow::anyhow!("--{what}: e.g. 50ms or 1s")),
        None => secs(s, what),
    }
}

fn secs(s: &str, what: &str) -> anyhow::Result<Duration> {
    jobpulse_api::auth::parse_ttl(s)
        .map(Duration::from_secs)
        .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

fn row(name: &str, r: &LoadResult) -> String {
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} |",
        r.rps(),
        r.pct_ms(0.50),
        r.pct_ms(0.99),
        r.errors + r.non_2xx
    )
}

/// The scenarios `--only` names, checked; `all` is every one.
fn selected(only: &str) -> anyhow::Result<Vec<&'static str>> {
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

/// jobpulse-bench: load benchmarks of the real server over loopback (docs/benchmarks.md).
///
/// Takes the server settings `jobpulse` takes (flags, environment, config file): the store's
/// cache settings and REDIS_URL / DATABASE_URL come from them.
#[derive(Debug, Parser)]
#[command(name = "jobpulse-bench", version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.server.record_sources(&matches);
    let settings = match Settings::resolve(&cli.server) {
        Ok(s) => s,
        Err(e) => {
            logging::stderr_line(format_args!("error: {e:#}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    // Kept until `main` returns: dropping it flushes the queued log lines. No access log.
    let _log = logging::init(settings.log_format, false);
    let runtime = match jobpulse_cli::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(run(settings, cli.args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    jobpulse_cli::exit_code(result)
}

#[allow(clippy::print_stdout)] // The report is this command's output.
async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    if args.sse_client {
        return sse_client::main().await;
    }
    let only = selected(&args.only)?;
    // `pipeline` always runs on the embedded backends, `queue` on PostgreSQL and `fleet` on
    // processes of its own; the others serve from `--store`.
    let store = if only
        .iter()
        .any(|s| !["pipeline", "queue", "fleet"].contains(s))
    {
        let cache = if args.store == "redis" && settings.read_cache_entries > 0 {
            format!("{} entries", settings.read_cache_entries)
        } else {
            "off".to_owned()
        };
        format!("store={}, read cache={cache}, ", args.store)
    } else {
        String::new()
    };
    println!(
        "# jobpulse-bench — {}; {store}cpus={}",
        only.join(","),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if only
        .iter()
        .any(|s| ["progress", "batch", "etag"].contains(s))
    {
        http_scenarios(&settings, &args, &only).await?;
    }
    if only.contains(&"sse") {
        let options = sse::SseOptions {
            streams: args.streams,
            watchers: args.watchers,
            tenants: args.tenants,
            hold: secs(&args.hold, "hold")?,
            writes: args.sse_writes,
            write_every: millis(&args.sse_write_every, "sse-write-every")?,
            reuse_connection: args.sse_reuse_connection,
            direct_writes: args.sse_direct_writes == "on",
        };
        sse::run(&settings, &args.store, options).await?;
    }
    if only.contains(&"pipeline") {
        pipeline::run(args.clip_secs, args.rounds).await?;
    }
    if only.contains(&"queue") {
        let url = settings
            .database_url
            .clone()
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let caps = match args.queue_caps.as_str() {
            "off" => jobpulse_db::Caps::default(),
            "queue-lock" => jobpulse_db::Caps {
                global: Some(u32::MAX),
                ..jobpulse_worker::ai::AiWorkerConfig::default().common.caps
            },
            _ => jobpulse_worker::ai::AiWorkerConfig::default().common.caps,
        };
        let options = queue::QueueOptions {
            jobs: args.queue_jobs,
            claimers: args.claimers,
            tenants: args.queue_tenants,
            caps,
            rounds: args.queue_rounds.max(1),
            outbox_notify: args.queue_outbox_notify == "on",
        };
        queue::run(&url, options).await?;
    }
    if only.contains(&"fleet") {
        fleet::run(fleet::FleetOptions {
            fleet_dir: args.fleet_dir.clone(),
            replicas: args.fleet_replicas,
            layout: fleet_load::Layout {
                tenants: args.fleet_tenants.max(1),
                browsers: args.fleet_browsers.max(1),
                tasks: args.fleet_tasks.max(1),
            },
            hidden_pct: args.fleet_hidden.min(100),
            watchers: args.fleet_watchers,
            workers: args.fleet_workers,
            connections: args.connections,
            task_ages: secs(&args.fleet_task_ages, "fleet-task-ages")?,
            baseline: secs(&args.fleet_baseline, "fleet-baseline")?,
            warmup: secs(&args.fleet_warmup, "fleet-warmup")?,
            duration: secs(&args.fleet_duration, "fleet-duration")?,
        })
        .await?;
    }
    Ok(())
}

/// The request/response scenarios: progress, batch, etag.
#[allow(clippy::print_stdout)]
async fn http_scenarios(
    settings: &Settings,
    args: &BenchArgs,
    only: &[&str],
) -> anyhow::Result<()> {
    let duration = secs(&args.duration, "duration")?;
    let warmup = secs(&args.warmup, "warmup")?;
    let server = start_server(
        settings,
        &ServerSpec {
            store: &args.store,
            with_old: only.contains(&"progress"),
            sse_cap: None,
            tenants: 1,
        },
    )?;
    let c = args.connections;
    println!(
        "\nconnections={c}, duration={}s, warmup={}s",
        duration.as_secs(),
        warmup.as_secs()
    );
    let token = server.token.clone();
    let path_for = |p: String| -> MakeRequest {
        let token = token.clone();
        Arc::new(move |_| load::get(&p, &token))
    };
    let hit_token = token.clone();
    let hit: MakeRequest = Arc::new(move |n| {
        let id = (n as i64 % SEEDED) + 1;
        load::get(&format!("/api/v1/media/videos/{id}/progress/"), &hit_token)
    });

    if only.contains(&"progress") {
        let a = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        let b = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for("/api/v1/media/videos/999999/progress/".into()),
        )
        .await?;
        let bare = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for("/healthz".into()),
        )
        .await?;
        let old_token = token.clone();
        let old: MakeRequest = Arc::new(move |n| {
            let id = (n as i64 % SEEDED) + 1;
            load::get(
                &format!("/old/api/v1/media/videos/{id}/progress/"),
                &old_token,
            )
        });
        let d = load::run(server.addr, c, warmup, duration, old).await?;
        println!("\n## progress endpoint\n");
        println!("| route | requests/s | p50 ms | p99 ms | errors |");
        println!("|---|---|---|---|---|");
        println!("{}", row("(a) progress, read-model hit", &a));
        println!("{}", row("(b) progress, miss (UNKNOWN)", &b));
        println!("{}", row("(c) bare route /healthz", &bare));
        println!("{}", row("(d) old way: PostgreSQL joins + membership", &d));
        println!(
            "\n(a)/(c) = {:.2}   (a)/(d) = {:.1}   (b)/(c) = {:.2}",
            a.rps() / bare.rps(),
            a.rps() / d.rps(),
            b.rps() / bare.rps()
        );
    }

    if only.contains(&"batch") {
        let ids: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        let batch_path = format!("/api/v1/progress/?videos={}", ids.join(","));
        let batch = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for(batch_path.clone()),
        )
        .await?;
        let singles = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        // Wall time to refresh 100 tasks from one client: 100 sequential polls vs one batch.
        let (seq_ms, batch_ms) = refresh_times(server.addr, &token, &batch_path).await?;
        println!("\n## batch read of 100 ids vs 100 single polls\n");
        println!(
            "| way | requests per refresh | refreshes/s (at {c} conns) | one client's refresh, median ms |"
        );
        println!("|---|---|---|---|");
        println!(
            "| 100 single polls | 100 | {:.1} | {seq_ms:.2} |",
            singles.rps() / 100.0
        );
        println!(
            "| one batch read | 1 | {:.1} | {batch_ms:.2} |",
            batch.rps()
        );
        println!(
            "\nthroughput ratio (batch/singles) = {:.1}   wall-time ratio (singles/batch) = {:.1}",
            batch.rps() / (singles.rps() / 100.0),
            seq_ms / batch_ms
        );
    }

    if only.contains(&"etag") {
        let plain = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        // The current ETag of video 1, then conditional polls of it.
        let tag = current_etag(server.addr, &token).await?;
        let cond_token = token.clone();
        let cond: MakeRequest = Arc::new(move |_| {
            let mut r = load::get("/api/v1/media/videos/1/progress/", &cond_token);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&tag) {
                r.headers_mut().insert("if-none-match", v);
            }
            r
        });
        let conditional = load::run(server.addr, c, warmup, duration, cond).await?;
        let per = |r: &LoadResult| r.bytes as f64 / r.requests.max(1) as f64;
        println!("\n## unchanged poll with and without ETag\n");
        println!("| poll | bytes per answer (headers + body) | requests/s |");
        println!("|---|---|---|");
        println!(
            "| plain GET (200 + body) | {:.0} | {:.0} |",
            per(&plain),
            plain.rps()
        );
        println!(
            "| If-None-Match (304, no body) | {:.0} | {:.0} |",
            per(&conditional),
            conditional.rps()
        );
        println!(
            "\nbytes ratio (plain/304) = {:.2}",
            per(&plain) / per(&conditional)
        );
    }
    drop(server);
    Ok(())
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn refresh_times(
    addr: SocketAddr,
    token: &str,
    batch_path: &str,
) -> anyhow::Result<(f64, f64)> {
    use http_body_util::BodyExt;
    let mut send = connect(addr).await?;
    let mut seq = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        for id in 1..=100 {
            send.ready().await?;
            let res = send
                .send_request(load::get(
                    &format!("/api/v1/media/videos/{id}/progress/"),
                    token,
                ))
                .await?;
            res.into_body().collect().await?;
        }
        seq.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t0 = Instant::now();
        send.ready().await?;
        let res = send.send_request(load::get(batch_path, token)).await?;
        res.into_body().collect().await?;
        batch.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    seq.sort_by(f64::total_cmp);
    batch.sort_by(f64::total_cmp);
    Ok((seq[seq.len() / 2], batch[batch.len() / 2]))
}

async fn current_etag(addr: SocketAddr, token: &str) -> anyhow::Result<String> {
    let mut send = connect(addr).await?;
    send.ready().await?;
    let res = send
        .send_request(load::get("/api/v1/media/videos/1/progress/", token))
        .await?;
    res.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag on the progress answer")
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
