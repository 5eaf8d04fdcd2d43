//! The load side of `jobpulse-bench --only sse`, run as a child process (hidden
//! `jobpulse-bench --sse-client`): reads [`Msg`]s on stdin, answers on stdout (see
//! [`super::sse`]).
//!
//! **Opening** (tokio, at most `OPENING` at a time): one TCP connection per stream, the
//! request written by hand (`GET /healthz` first with `--sse-reuse-connection`, so hyper serves
//! the stream), the answer's head parsed with `httparse`, then the stream's initial snapshot
//! (one `video` event per watched video) read before the stream counts as opened.
//!
//! **Reading** (one thread, one `epoll` set through `mio`, [`Reader`]): every open socket is
//! registered edge-triggered and read until it would block; the bytes are split into SSE
//! blocks at `\n\n` (chunk-size lines end up between blocks and are ignored) and a block only
//! has its `encoding_remaining_seconds` number looked up — no HTTP client, no task per stream,
//! no JSON parse. Each read is timestamped once, right after the system call returns. A write's
//! sequence number travels in that field; the parent's send instants arrive at the end and give
//! one latency per (write, stream) delivery.
//!
//! The same opening and the same reader serve the jobpulse streams and the floor's raw
//! connections ([`super::floor`]), so both figures carry the same client cost.
//!
//! The submodules: `open` (opening a stream: the request, the head, the snapshot) and `reader`
//! (the epoll thread and the SSE block scanner).

mod open;
mod reader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::mpsc;

use super::sse::{ClientConfig, FloorConfig, Gauges, Held, Latency, Msg, Opened, Stats};

use self::open::open_all;
pub(crate) use self::reader::scan;
use self::reader::{Cmd, Reader};

/// What the opening tasks and the reader thread share.
#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    watching: AtomicUsize,
    first_end: Mutex<Option<String>>,
    /// (sequence, arrival Unix ns) of every latency-group delivery.
    deliveries: Mutex<Vec<(u64, u64)>>,
    fd_limited: AtomicBool,
}

/// Entry point of the child process.
#[allow(clippy::print_stdout)] // stdout is the channel to the parent.
pub async fn main() -> anyhow::Result<()> {
    let mut lines = stdin_lines();
    let Some(first) = lines.recv().await else {
        return Ok(());
    };
    let Msg::Start(cfg) = serde_json::from_str(&first).context("the first line")? else {
        anyhow::bail!("expected a start message");
    };
    let shared = Arc::new(Shared::default());
    let reader = Arc::new(Reader::start(shared.clone())?);
    let mut gauges = Gauges::open();
    let mut opened = open_all(Arc::new(cfg), &shared, &reader).await;
    opened.rss_kb = gauges.rss_kb();
    reply(&Msg::Opened(opened))?;
    while let Some(line) = lines.recv().await {
        match serde_json::from_str(&line).context("a line from the parent")? {
            Msg::Check => reply(&Msg::Held(Held {
                open: shared.open.load(Ordering::Relaxed),
                first_end: lock(&shared.first_end).clone(),
                rss_kb: gauges.rss_kb(),
            }))?,
            Msg::Sent(sent) => reply(&Msg::Latency(latency(&shared, &sent)))?,
            Msg::CloseWatching => {
                close_watching(&shared, &reader).await?;
                reply(&Msg::Held(Held {
                    open: shared.open.load(Ordering::Relaxed),
                    first_end: None,
                    rss_kb: gauges.rss_kb(),
                }))?;
            }
            Msg::Floor(floor) => {
                let opened = open_floor(floor, &shared, &reader).await;
                reply(&Msg::Opened(opened))?;
            }
            other => anyhow::bail!("unexpected message {other:?}"),
        }
    }
    Ok(())
}

/// Lines of stdin, read on a thread of their own (the parent closing stdin ends them).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[allow(clippy::print_stdout)]
fn reply(msg: &Msg) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(msg)?);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn latency(shared: &Shared, sent: &[(u64, u64)]) -> Latency {
    let at: HashMap<u64, u64> = sent.iter().copied().collect();
    let ms = lock(&shared.deliveries)
        .iter()
        .filter_map(|(seq, t)| at.get(seq).map(|s0| t.saturating_sub(*s0) as f64 / 1e6))
        .collect();
    Latency {
        stats: Stats::of(ms),
        watching: shared.watching.load(Ordering::Relaxed),
    }
}

/// Before the floor phase: the latency group's jobpulse streams are closed, so that both
/// processes keep the same number of sockets once the floor's connections are open.
async fn close_watching(shared: &Arc<Shared>, reader: &Arc<Reader>) -> anyhow::Result<usize> {
    let (tx, rx) = std::sync::mpsc::channel();
    reader.send(Cmd::CloseWatching(tx));
    let closed = tokio::task::spawn_blocking(move || rx.recv())
        .await?
        .context("the reader thread stopped")?;
    lock(&shared.deliveries).clear();
    Ok(closed)
}

/// The floor phase: as many raw connections to the floor server as the latency group had,
/// opened and read by the same code.
async fn open_floor(floor: FloorConfig, shared: &Arc<Shared>, reader: &Arc<Reader>) -> Opened {
    let cfg = ClientConfig {
        addr: floor.addr,
        tokens: vec!["floor".into()],
        streams: floor.count,
        watchers: floor.count,
        tenants: 1,
        open_timeout_secs: 30,
        reuse_connection: false,
    };
    open_all(Arc::new(cfg), shared, reader).await
}
