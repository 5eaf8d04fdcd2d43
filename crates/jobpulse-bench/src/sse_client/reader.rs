//! The reader thread: every open stream in one edge-triggered epoll set (`mio`), read until it
//! would block, its bytes split into SSE blocks by [`scan`].

use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{Shared, lock};
use crate::sse::{SEQ_BASE, unix_ns};

/// An opened stream handed to the reader.
pub(super) struct Conn {
    pub(super) stream: MioStream,
    /// Bytes read but not yet split into complete SSE blocks.
    pub(super) buf: Vec<u8>,
    /// In the latency group (its deliveries are recorded).
    pub(super) watching: bool,
}

/// What the reader thread is told.
pub(super) enum Cmd {
    Add(Conn),
    /// Close every latency-group stream; answers with how many were closed.
    CloseWatching(std::sync::mpsc::Sender<usize>),
}

/// The reader thread's handle.
pub(super) struct Reader {
    tx: std::sync::mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

const WAKER: Token = Token(1 << 40);

impl Reader {
    pub(super) fn start(shared: Arc<Shared>) -> anyhow::Result<Reader> {
        let poll = Poll::new().context("epoll")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("epoll waker")?);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sse-reader".into())
            .spawn(move || read_loop(poll, rx, &shared))
            .context("starting the reader thread")?;
        Ok(Reader { tx, waker })
    }

    pub(super) fn send(&self, cmd: Cmd) {
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

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
