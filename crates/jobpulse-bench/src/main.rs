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
//! - `eta` (opt-in): how honest the shown remaining time is — clips of several kinds through the
//!   real pipeline and an excel import, the shown `remaining` at 10/25/50/75/90 % of the step
//!   against what it really took, with a naive linear extrapolation as the baseline (see
//!   [`eta`]; `--eta-rounds`, `--eta-scale`, `--eta-import-rows`). Needs ffmpeg; no server.
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
//! processes, so they run only when named (`--only sse,pipeline,eta,queue,fleet`, or `--only all`).
//!
//! The server runs on its own runtime (2 threads) in this process; the load generator on
//! another (for `sse`, in another process). Both share the machine, identically for every
//! scenario.
//!
//! The modules: `args` (the command line), `requests` (the request/response scenarios) and one
//! module per heavy scenario; `server` starts the server they load, `load` is the load
//! generator.

mod args;
mod eta;
mod fleet;
mod fleet_load;
mod fleet_probe;
mod floor;
mod load;
mod old_way;
mod pipeline;
mod queue;
mod requests;
mod server;
mod sse;
mod sse_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_api::hub::Hub;
use jobpulse_api::{AppSettings, Application, SseSettings};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{Fence, TaskKey, TenantId, VideoId, Write};
use jobpulse_store::{MemoryStore, RedisStore, SharedStore};
use tokio_util::sync::CancellationToken;

use jobpulse_cli::config::{ServerArgs, Settings};
use jobpulse_cli::logging;
use server::{Server, ServerSpec, start_server};

use args::{BenchArgs, millis, secs, selected};
use requests::http_scenarios;

pub(crate) const SEEDED: i64 = 1000;

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
        .any(|s| !["pipeline", "eta", "queue", "fleet"].contains(s))
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
    if only.contains(&"eta") {
        eta::run(args.eta_rounds, args.eta_scale, args.eta_import_rows).await?;
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
