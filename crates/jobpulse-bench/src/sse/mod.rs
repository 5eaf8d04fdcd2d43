//! `jobpulse-bench --only sse`: SSE fan-out — how many streams one server process holds (goal
//! ≥ 18 000 at an open-files limit of 20 000), memory per stream (goal ≤ 8 KB), and
//! write-to-client latency with `--watchers` streams watching one task (goal p99 ≤ 20 ms at
//! 10 000), against the store's own change feed as the baseline.
//!
//! # Processes
//!
//! The server (the real router with the stream route and a [`Hub`](jobpulse_api::hub::Hub))
//! runs in this process; the streams are opened by a **child process** (this binary, hidden
//! `--sse-client` mode, see [`super::sse_client`]), so this process's RSS is the server's
//! alone and each side needs only its own `--streams` file descriptors. They talk over the
//! child's stdin/stdout, one JSON message a line ([`Msg`]).
//!
//! # What the streams watch
//!
//! What a work box does: one `GET /api/v1/progress/stream?videos=…` per open page, watching the
//! 20 videos of that page. The first `--watchers` streams (default 1 000) belong to tenant 1
//! and watch videos 1–20 (the latency group: video 1 is the one being written); the others are
//! spread round-robin over tenants 2..=`--tenants` (default 10, so 1 000 streams per tenant)
//! and over the pages 21–40, 41–60, … of 1 000 seeded videos. The hub's per-tenant cap is
//! `max(serve's 2 000, --streams)`, so it never refuses a bench stream. A stream counts as
//! opened once its initial snapshot (20 `video` events) arrived.
//!
//! # Figures
//!
//! - Streams opened, then still open after `--hold` (client side), and the count the server's
//!   hub holds.
//! - Server RSS (`VmRSS` of this process) before the child connects and with every stream held;
//!   memory per stream = delta / streams held. The child's RSS is printed separately, and so
//!   is the kernel's TCP buffer memory (`/proc/net/sockstat`, machine-wide, both ends), which
//!   no RSS includes.
//! - Latency: `--sse-writes` progress writes to video 1 (one every `--sse-write-every`, each with a fresh
//!   fence) through the server's own store; each write's sequence number travels in
//!   `encoding_remaining_seconds` and its send instant (wall clock, shared by both processes)
//!   is given to the child at the end, which computes write → client latency for every
//!   (write, stream) delivery. Baseline: a plain `subscribe()` of the same store in this process
//!   (apply → Change received) running on the server's runtime beside the hub, so the ratio
//!   shows what the hub, HTTP and SSE add. The writer runs on this process's main runtime, as
//!   a worker would beside the server.
//!
//! - Floor ([`super::floor`]), same run, after the above: the latency group's streams are
//!   closed, as many raw connections are opened to a minimal server thread in this process
//!   (read by the same client code), and the same number of writes is sent through it — the
//!   same event bytes, one non-blocking write per socket from one thread. The report prints
//!   jobpulse's latency as a ratio of this floor's.
//! - The hub's direct writes (`--sse-direct-writes on`, the default) and how many of them the
//!   socket would not take; `off` sends every delivery through the stream's task, as before
//!   they existed.
//!
//! An open-files limit below what is needed is reported (figure reached, which limit) rather
//! than failing.

//! The submodules: `protocol` (the messages between the processes, [`Stats`]), `child` (the
//! client process as the parent drives it), `gauges` (`/proc` figures), `phases` (the latency
//! writes with their baseline and the floor phase) and `report` (the printed tables).

mod child;
mod gauges;
mod phases;
mod protocol;
mod report;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jobpulse_cli::config::Settings;

pub use self::gauges::{Gauges, open_files_limit, unix_ns};
pub use self::protocol::{ClientConfig, FloorConfig, Held, Latency, Msg, Opened, Stats};

use self::child::ClientProcess;
use self::phases::{floor_phase, write_and_watch};
use self::report::Report;
use super::ServerSpec;

/// Videos a stream watches (one page of the work box).
pub const PAGE: i64 = 20;
/// Added to a latency write's sequence number, so no seeded value (84) is mistaken for one.
pub const SEQ_BASE: u64 = 1_000_000;

/// Settings of the scenario (from `BenchArgs`).
#[derive(Debug, Clone)]
pub struct SseOptions {
    pub streams: usize,
    pub watchers: usize,
    pub tenants: i64,
    pub hold: Duration,
    pub writes: u32,
    /// Interval of the latency writes.
    pub write_every: Duration,
    /// Open each stream after a first request on its connection (hyper's path).
    pub reuse_connection: bool,
    /// The hub writes live events to idle lean-path streams itself.
    pub direct_writes: bool,
}

/// Stream `i`: its tenant and the first of the `PAGE` videos it watches.
pub fn layout(i: usize, watchers: usize, tenants: i64) -> (i64, i64) {
    if i < watchers || tenants < 2 {
        let page = if i < watchers { 0 } else { 1 + (i % 49) };
        return (1, 1 + PAGE * page as i64);
    }
    let j = i - watchers;
    let others = (tenants - 1) as usize;
    let tenant = 2 + (j % others) as i64;
    let page = 1 + (j / others) % 49;
    (tenant, 1 + PAGE * page as i64)
}

/// The stream path of a page.
pub fn path(first: i64) -> String {
    let ids: Vec<String> = (first..first + PAGE).map(|v| v.to_string()).collect();
    format!("/api/v1/progress/stream?videos={}", ids.join(","))
}

/// Runs the scenario and prints its tables.
#[allow(clippy::print_stdout)] // The report is this command's output.
pub async fn run(settings: &Settings, store_kind: &str, o: SseOptions) -> anyhow::Result<()> {
    anyhow::ensure!(o.streams >= 1, "--streams must be at least 1");
    anyhow::ensure!((1..=1000).contains(&o.tenants), "--tenants: 1 to 1000");
    let watchers = o.watchers.min(o.streams);
    let limit = open_files_limit();
    println!("\n## SSE fan-out (store={store_kind})\n");
    if let Some(l) = limit.filter(|l| *l < o.streams as u64 + 100) {
        println!(
            "warning: the open-files limit (ulimit -n) is {l}, below the {} descriptors each \
             process needs for {} streams; the figures will stop where it blocks.",
            o.streams + 100,
            o.streams
        );
    }
    let cap = o.streams.max(jobpulse_api::SseSettings::PER_TENANT);
    let server = super::start_server(
        settings,
        &ServerSpec {
            store: store_kind,
            with_old: false,
            sse_cap: Some(cap),
            tenants: o.tenants,
        },
    )?;
    if let Some(hub) = &server.hub {
        hub.set_direct_writes(o.direct_writes);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut gauges = Gauges::open();
    let rss_before = gauges.rss_kb();
    let tcp_before = gauges.tcp_kernel_kb();
    let mut client = ClientProcess::spawn()?;
    client
        .send(&Msg::Start(ClientConfig {
            addr: server.addr,
            tokens: server.tokens.clone(),
            streams: o.streams,
            watchers,
            tenants: o.tenants,
            open_timeout_secs: 30,
            reuse_connection: o.reuse_connection,
        }))
        .await?;
    let open_budget = Duration::from_secs(120 + o.streams as u64 / 50);
    let Msg::Opened(opened) = client.recv(open_budget).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    let rss_open = gauges.rss_kb();
    tokio::time::sleep(o.hold).await;
    client.send(&Msg::Check).await?;
    let Msg::Held(held) = client.recv(Duration::from_secs(30)).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    let rss_held = gauges.rss_kb();
    let tcp_held = gauges.tcp_kernel_kb();
    let hub_streams = server.hub.as_ref().map_or(0, |h| h.streams());

    let (sent, base_ms, last) = write_and_watch(&server, o.writes, o.write_every).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.send(&Msg::Sent(sent)).await?;
    let Msg::Latency(lat) = client.recv(Duration::from_secs(60)).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    let direct = server.hub.as_ref().map_or((0, 0), |h| h.direct_writes());
    let floor = floor_phase(&mut client, &server, &o, watchers, last.as_ref()).await?;
    client.finish().await;
    drop(server);

    let report = Report {
        o: &o,
        watchers,
        cap,
        limit,
        opened,
        held,
        hub_streams,
        rss: (rss_before, rss_open, rss_held),
        tcp_kb: (tcp_before, tcp_held),
        base: Stats::of(base_ms),
        lat,
        floor,
        direct,
    };
    report.print();
    Ok(())
}
