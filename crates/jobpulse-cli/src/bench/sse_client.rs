//! The load side of `jobpulse bench --only sse`, run as a child process (hidden
//! `jobpulse bench --sse-client`): reads [`Msg`]s on stdin, answers on stdout (see
//! [`super::sse`]).
//!
//! Opens one HTTP/1.1 connection per stream (hyper client, at most [`OPENING`] handshakes at a
//! time), waits for each stream's initial snapshot (one event per watched video), then keeps
//! reading every stream. Streams of the latency group record, for each live event of video 1,
//! the write's sequence number (carried in `encoding_remaining_seconds`) and the arrival
//! instant; the parent's send instants arrive at the end and give one latency per delivery.
//! Events are parsed by `eventsource-stream` (the browser's rules: multi-line `data:` joined
//! with `\n`, comments skipped).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use http_body_util::{BodyDataStream, BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use super::sse::{
    ClientConfig, Gauges, Held, Latency, Msg, Opened, PAGE, SEQ_BASE, Stats, layout, path, unix_ns,
};

/// Stream opens in flight at once (keeps the server's accept backlog from overflowing).
const OPENING: usize = 128;
/// `EMFILE`: this process is out of file descriptors.
const EMFILE: i32 = 24;

/// What all stream tasks share.
#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    watching: AtomicUsize,
    first_end: Mutex<Option<String>>,
    /// (sequence, arrival Unix ns) of every latency-group delivery.
    deliveries: Mutex<Vec<(u64, u64)>>,
    fd_limited: AtomicBool,
}

/// Why a stream did not open.
#[derive(Debug)]
struct OpenError {
    why: String,
    fd_limit: bool,
}

impl OpenError {
    fn new(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            fd_limit: false,
        }
    }
}

/// The events of a stream's body.
type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<hyper::Error>>> + Send>>;

/// An open stream: its connection handle (kept so the connection stays up) and events.
struct Open {
    _send: SendRequest<Empty<Bytes>>,
    events: Events,
}

/// The part of an event body the client reads.
#[derive(Debug, Deserialize)]
struct Body {
    id: i64,
    encoding_remaining_seconds: Option<u64>,
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
    let mut gauges = Gauges::open();
    let mut opened = open_all(Arc::new(cfg), &shared).await;
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
    let at: std::collections::HashMap<u64, u64> = sent.iter().copied().collect();
    let ms = lock(&shared.deliveries)
        .iter()
        .filter_map(|(seq, t)| at.get(seq).map(|s0| t.saturating_sub(*s0) as f64 / 1e6))
        .collect();
    Latency {
        stats: Stats::of(ms),
        watching: shared.watching.load(Ordering::Relaxed),
    }
}

/// Opens every stream (stopping early when out of file descriptors); returns once each has
/// opened or failed.
async fn open_all(cfg: Arc<ClientConfig>, shared: &Arc<Shared>) -> Opened {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(OPENING));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(), OpenError>>();
    let mut spawned = 0;
    for i in 0..cfg.streams {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        if shared.fd_limited.load(Ordering::Relaxed) {
            break;
        }
        let (cfg, shared, tx) = (cfg.clone(), shared.clone(), tx.clone());
        tokio::spawn(async move {
            let timeout = Duration::from_secs(cfg.open_timeout_secs);
            let result = tokio::time::timeout(timeout, open(&cfg, i))
                .await
                .unwrap_or_else(|_| {
                    Err(OpenError::new(format!(
                        "no snapshot within {}s (server at its open-files limit or overloaded?)",
                        timeout.as_secs()
                    )))
                });
            drop(permit);
            match result {
                Ok(stream) => {
                    let _ = tx.send(Ok(()));
                    follow(stream, i < cfg.watchers, &shared).await;
                }
                Err(e) => {
                    if e.fd_limit {
                        shared.fd_limited.store(true, Ordering::Relaxed);
                    }
                    let _ = tx.send(Err(e));
                }
            }
        });
        spawned += 1;
    }
    drop(tx);
    let (mut verified, mut failed, mut first_error) = (0, 0, None);
    for _ in 0..spawned {
        match rx.recv().await {
            Some(Ok(())) => verified += 1,
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.why);
            }
            None => break,
        }
    }
    Opened {
        verified,
        failed: failed + (cfg.streams - spawned),
        first_error,
        fd_limited: shared.fd_limited.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        rss_kb: None,
    }
}

/// Connects, asks for stream `i` and reads its initial snapshot.
async fn open(cfg: &ClientConfig, i: usize) -> Result<Open, OpenError> {
    let (tenant, first) = layout(i, cfg.watchers, cfg.tenants);
    let token = usize::try_from(tenant - 1)
        .ok()
        .and_then(|t| cfg.tokens.get(t))
        .ok_or_else(|| OpenError::new(format!("no token for tenant {tenant}")))?;
    let tcp = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| OpenError {
            fd_limit: e.raw_os_error() == Some(EMFILE),
            why: format!("connect: {e}"),
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| OpenError::new(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    if cfg.reuse_connection {
        // A first request on the connection: the stream then rides a connection hyper serves.
        let first = hyper::Request::get("/healthz")
            .header("host", "bench")
            .body(Empty::new())
            .map_err(|e| OpenError::new(e.to_string()))?;
        let res = send
            .send_request(first)
            .await
            .map_err(|e| OpenError::new(format!("first request: {e}")))?;
        res.into_body()
            .collect()
            .await
            .map_err(|e| OpenError::new(format!("first request's body: {e}")))?;
    }
    let req = hyper::Request::get(path(first))
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .map_err(|e| OpenError::new(e.to_string()))?;
    let res = send
        .send_request(req)
        .await
        .map_err(|e| OpenError::new(format!("request: {e}")))?;
    if !res.status().is_success() {
        return Err(OpenError::new(format!("status {}", res.status())));
    }
    let mut stream = Open {
        _send: send,
        events: Box::pin(BodyDataStream::new(res.into_body()).eventsource()),
    };
    let mut seen = 0;
    while seen < PAGE {
        let event = next_event(&mut stream)
            .await
            .map_err(|e| OpenError::new(format!("before the snapshot was complete: {e}")))?;
        if event.event == "video" {
            seen += 1;
        }
    }
    Ok(stream)
}

/// The next event of a stream (comments, i.e. heartbeats, are skipped by the parser).
async fn next_event(s: &mut Open) -> anyhow::Result<Event> {
    match s.events.next().await {
        Some(Ok(event)) => Ok(event),
        Some(Err(e)) => Err(anyhow::anyhow!("reading the stream: {e}")),
        None => anyhow::bail!("the stream ended"),
    }
}

/// Reads a stream until it ends, recording latency-group deliveries.
async fn follow(mut s: Open, watching: bool, shared: &Shared) {
    shared.open.fetch_add(1, Ordering::Relaxed);
    if watching {
        shared.watching.fetch_add(1, Ordering::Relaxed);
    }
    let why = loop {
        let event = match next_event(&mut s).await {
            Ok(e) => e,
            Err(e) => break format!("{e:#}"),
        };
        let at = unix_ns();
        if !watching {
            continue;
        }
        let seq = serde_json::from_str::<Body>(&event.data)
            .ok()
            .filter(|b| b.id == 1)
            .and_then(|b| b.encoding_remaining_seconds)
            .filter(|s| *s > SEQ_BASE);
        if let Some(seq) = seq {
            lock(&shared.deliveries).push((seq, at));
        }
    };
    shared.open.fetch_sub(1, Ordering::Relaxed);
    if watching {
        shared.watching.fetch_sub(1, Ordering::Relaxed);
    }
    lock(&shared.first_end).get_or_insert(why);
}

#[cfg(test)]
mod tests {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;

    /// What the bench and `jobpulse watch` rely on from the parser: an event split over
    /// chunks and over several `data:` lines comes out whole (lines joined with `\n`),
    /// heartbeats (comments) produce nothing, `retry:` is read (only in a block with data: the
    /// crate drops a `retry:`-only block, unlike browsers; our server sends none).
    #[tokio::test]
    async fn events_across_chunks_multi_line_data_and_heartbeats() {
        let chunks = [
            ": hb\n\nevent: video\nretry: 1500\nid: 7\ndata: {\"id\":",
            "\ndata: 1}\n",
            "\n: hb\n\n",
        ];
        let events: Vec<_> = futures::stream::iter(
            chunks.map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(c))),
        )
        .eventsource()
        .collect()
        .await;
        let events: Vec<_> = events.into_iter().map(|e| e.expect("parsed")).collect();
        let video = events
            .iter()
            .find(|e| e.event == "video")
            .expect("the video event");
        assert_eq!(
            (video.id.as_str(), video.data.as_str()),
            ("7", "{\"id\":\n1}")
        );
        let body: serde_json::Value = serde_json::from_str(&video.data).expect("JSON");
        assert_eq!(body["id"], 1);
        assert!(
            events
                .iter()
                .any(|e| e.retry == Some(std::time::Duration::from_millis(1500))),
            "{events:?}"
        );
    }
}
