//! The load side of `jobpulse-bench --only sse`, run as a child process (hidden
//! `jobpulse-bench --sse-client`): reads [`Msg`]s on stdin, answers on stdout (see
//! [`super::sse`]).
//!
//! **Opening** (tokio, at most [`OPENING`] at a time): one TCP connection per stream, the
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

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};

use super::sse::{
    ClientConfig, FloorConfig, Gauges, Held, Latency, Msg, Opened, PAGE, SEQ_BASE, Stats, layout,
    path, unix_ns,
};

/// Stream opens in flight at once (keeps the server's accept backlog from overflowing).
const OPENING: usize = 128;
/// `EMFILE`: this process is out of file descriptors.
const EMFILE: i32 = 24;
/// Largest response head accepted while opening.
const MAX_HEAD: usize = 16 * 1024;

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

/// An opened stream handed to the reader.
struct Conn {
    stream: MioStream,
    /// Bytes read but not yet split into complete SSE blocks.
    buf: Vec<u8>,
    /// In the latency group (its deliveries are recorded).
    watching: bool,
}

/// What the reader thread is told.
enum Cmd {
    Add(Conn),
    /// Close every latency-group stream; answers with how many were closed.
    CloseWatching(std::sync::mpsc::Sender<usize>),
}

/// The reader thread's handle.
struct Reader {
    tx: std::sync::mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

const WAKER: Token = Token(1 << 40);

impl Reader {
    fn start(shared: Arc<Shared>) -> anyhow::Result<Reader> {
        let poll = Poll::new().context("epoll")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("epoll waker")?);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sse-reader".into())
            .spawn(move || read_loop(poll, rx, &shared))
            .context("starting the reader thread")?;
        Ok(Reader { tx, waker })
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// The reader thread: every stream in one epoll set, read until it would block.
fn read_loop(mut poll: Poll, rx: std::sync::mpsc::Receiver<Cmd>, shared: &Shared) {
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(200))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            lock(&shared.first_end).get_or_insert(format!("epoll: {e}"));
            return;
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            let i = ev.token().0;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(why) = drain(conn, &mut chunk, shared) {
                let Some(mut conn) = conns.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                let _ = poll.registry().deregister(&mut conn.stream);
                free.push(i);
                forget(&conn, shared);
                lock(&shared.first_end).get_or_insert(why);
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Cmd::Add(mut conn)) => {
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    if poll
                        .registry()
                        .register(&mut conn.stream, Token(i), Interest::READABLE)
                        .is_err()
                    {
                        free.push(i);
                        forget(&conn, shared);
                        continue;
                    }
                    // Bytes that came with the snapshot (none expected) are looked at too.
                    let at = unix_ns();
                    scan(&mut conn.buf, |_, seq| {
                        record(conn.watching, seq, at, shared)
                    });
                    conns[i] = Some(conn);
                }
                Ok(Cmd::CloseWatching(reply)) => {
                    let mut closed = 0;
                    for (i, slot) in conns.iter_mut().enumerate() {
                        if slot.as_ref().is_some_and(|c| c.watching)
                            && let Some(mut conn) = slot.take()
                        {
                            let _ = poll.registry().deregister(&mut conn.stream);
                            free.push(i);
                            forget(&conn, shared);
                            closed += 1;
                        }
                    }
                    let _ = reply.send(closed);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// Reads `conn` until it would block; `Some(why)` when it ended.
fn drain(conn: &mut Conn, chunk: &mut [u8], shared: &Shared) -> Option<String> {
    loop {
        match conn.stream.read(chunk) {
            Ok(0) => return Some("the stream ended".into()),
            Ok(n) => {
                let at = unix_ns();
                conn.buf.extend_from_slice(&chunk[..n]);
                let watching = conn.watching;
                scan(&mut conn.buf, |_, seq| record(watching, seq, at, shared));
                // Less than asked for: drained (bytes arriving later raise a new edge), so no
                // second read just to hear `EAGAIN`.
                if n < chunk.len() {
                    return None;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Some(format!("reading the stream: {e}")),
        }
    }
}

fn record(watching: bool, seq: Option<u64>, at: u64, shared: &Shared) {
    if let Some(seq) = seq.filter(|s| watching && *s > SEQ_BASE) {
        lock(&shared.deliveries).push((seq, at));
    }
}

fn forget(conn: &Conn, shared: &Shared) {
    shared.open.fetch_sub(1, Ordering::Relaxed);
    if conn.watching {
        shared.watching.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Splits the complete SSE blocks off `buf`: for each, whether it is a `video` event and the
/// number after `"encoding_remaining_seconds":`, if any.
pub(crate) fn scan(buf: &mut Vec<u8>, mut on: impl FnMut(bool, Option<u64>)) {
    const FIELD: &[u8] = b"\"encoding_remaining_seconds\":";
    let mut start = 0;
    while let Some(end) = find(&buf[start..], b"\n\n") {
        let block = &buf[start..start + end];
        start += end + 2;
        let video = find(block, b"event: video").is_some();
        let seq = find(block, FIELD).and_then(|i| {
            let digits: &[u8] = &block[i + FIELD.len()..];
            let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
        });
        on(video, seq);
    }
    if start > 0 {
        buf.drain(..start);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

/// Opens every stream (stopping early when out of file descriptors); returns once each has
/// opened or failed.
async fn open_all(cfg: Arc<ClientConfig>, shared: &Arc<Shared>, reader: &Arc<Reader>) -> Opened {
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
        let (cfg, shared, tx, reader) = (cfg.clone(), shared.clone(), tx.clone(), reader.clone());
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
            match result.and_then(|(tcp, buf)| {
                let std = tcp
                    .into_std()
                    .map_err(|e| OpenError::new(format!("into_std: {e}")))?;
                Ok(Conn {
                    stream: MioStream::from_std(std),
                    buf,
                    watching: i < cfg.watchers,
                })
            }) {
                Ok(conn) => {
                    shared.open.fetch_add(1, Ordering::Relaxed);
                    if conn.watching {
                        shared.watching.fetch_add(1, Ordering::Relaxed);
                    }
                    reader.send(Cmd::Add(conn));
                    let _ = tx.send(Ok(()));
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

/// Connects, asks for stream `i` and reads its initial snapshot; returns the socket and the
/// bytes read past the snapshot.
async fn open(cfg: &ClientConfig, i: usize) -> Result<(tokio::net::TcpStream, Vec<u8>), OpenError> {
    let (tenant, first) = layout(i, cfg.watchers, cfg.tenants);
    let token = usize::try_from(tenant - 1)
        .ok()
        .and_then(|t| cfg.tokens.get(t))
        .ok_or_else(|| OpenError::new(format!("no token for tenant {tenant}")))?;
    let mut tcp = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| OpenError {
            fd_limit: e.raw_os_error() == Some(EMFILE),
            why: format!("connect: {e}"),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut req = Vec::with_capacity(1024);
    if cfg.reuse_connection {
        // A first request on the connection: the stream then rides a connection hyper serves.
        req.extend_from_slice(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n");
    }
    req.extend_from_slice(
        format!(
            "GET {} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             accept: text/event-stream\r\n\r\n",
            path(first)
        )
        .as_bytes(),
    );
    tcp.write_all(&req)
        .await
        .map_err(|e| OpenError::new(format!("request: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    if cfg.reuse_connection {
        let (status, len) = read_head(&mut tcp, &mut buf).await?;
        if status != 200 {
            return Err(OpenError::new(format!("first request: status {status}")));
        }
        match len {
            Some(len) => {
                while buf.len() < len {
                    read_more(&mut tcp, &mut buf).await?;
                }
                buf.drain(..len);
            }
            None => skip_chunked(&mut tcp, &mut buf).await?,
        }
    }
    let (status, _) = read_head(&mut tcp, &mut buf).await?;
    if status != 200 {
        return Err(OpenError::new(format!("status {status}")));
    }
    let mut seen = 0;
    loop {
        scan(&mut buf, |video, _| seen += i64::from(video));
        if seen >= PAGE {
            return Ok((tcp, buf));
        }
        read_more(&mut tcp, &mut buf)
            .await
            .map_err(|e| OpenError::new(format!("before the snapshot was complete: {}", e.why)))?;
    }
}

/// Reads past a chunked body at the front of `buf`.
async fn skip_chunked(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(), OpenError> {
    loop {
        let Some(line) = find(buf, b"\r\n") else {
            read_more(tcp, buf).await?;
            continue;
        };
        let size = std::str::from_utf8(&buf[..line])
            .ok()
            .and_then(|h| usize::from_str_radix(h.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| OpenError::new("first request: a bad chunk size"))?;
        let end = line + 2 + size + 2;
        while buf.len() < end {
            read_more(tcp, buf).await?;
        }
        buf.drain(..end);
        if size == 0 {
            return Ok(());
        }
    }
}

async fn read_more(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(), OpenError> {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(0) => Err(OpenError::new("the connection closed")),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(OpenError::new(format!("reading: {e}"))),
    }
}

/// Reads one response head off the front of `buf` (reading more as needed): its status and
/// `content-length`.
async fn read_head(
    tcp: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, Option<usize>), OpenError> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(&buf[..end + 4]) {
                Ok(httparse::Status::Complete(_)) => {}
                _ => return Err(OpenError::new("a malformed response head")),
            }
            let status = res.code.unwrap_or(0);
            let len = res
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
            buf.drain(..end + 4);
            return Ok((status, len));
        }
        if buf.len() > MAX_HEAD {
            return Err(OpenError::new("a response head over 16 KiB"));
        }
        read_more(tcp, buf).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    fn blocks(bytes: &[u8]) -> (Vec<(bool, Option<u64>)>, Vec<u8>) {
        let mut buf = bytes.to_vec();
        let mut out = Vec::new();
        scan(&mut buf, |v, s| out.push((v, s)));
        (out, buf)
    }

    #[test]
    fn blocks_heartbeats_and_chunk_lines() {
        let (out, rest) = blocks(
            b"1a\r\nevent: video\ndata: {\"id\":1,\"encoding_remaining_seconds\":1000007}\nid: 5\n\n\r\n6\r\n: hb\n\n\r\n9\r\nevent: vi",
        );
        assert_eq!(out, vec![(true, Some(1_000_007)), (false, None)]);
        assert_eq!(rest, b"\r\n9\r\nevent: vi");
        let (out, _) = blocks(b"event: job\ndata: {\"encoding_remaining_seconds\":null}\n\n");
        assert_eq!(out, vec![(false, None)]);
    }
}
