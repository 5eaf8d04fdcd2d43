//! The hub's direct writes to lean-path streams (`jobpulse_api::outlet`): read over raw
//! sockets (so the stream is its connection's first request: the lean path), with the chunked
//! framing decoded strictly, so an interleaved partial write would fail the parse.

use std::time::Duration;

use jobpulse_domain::{State, VideoStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// A stream read over a raw socket.
struct RawStream {
    sock: TcpStream,
    /// Bytes read, not yet decoded.
    buf: Vec<u8>,
    /// Decoded events: (id, JSON body); heartbeats are counted apart.
    events: Vec<(Option<String>, serde_json::Value)>,
    heartbeats: usize,
    /// The response head was read (the body is decoded from here on).
    in_body: bool,
}

impl RawStream {
    /// Opens `?{query}` (optionally resuming after `last_id`); `rcvbuf` shrinks the client's
    /// receive buffer so that the server's writes block sooner.
    async fn open(
        app: &TestApp,
        query: &str,
        token: &str,
        last_id: Option<&str>,
        rcvbuf: Option<u32>,
    ) -> RawStream {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).expect("rcvbuf");
        }
        let mut sock = socket
            .connect(([127, 0, 0, 1], app.port).into())
            .await
            .expect("connects");
        let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let head = format!(
            "GET /api/v1/progress/stream?{query} HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\n{resume}\r\n"
        );
        sock.write_all(head.as_bytes()).await.expect("writes");
        let mut s = RawStream {
            sock,
            buf: Vec::new(),
            events: Vec::new(),
            heartbeats: 0,
            in_body: false,
        };
        let end = loop {
            if let Some(i) = s.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(s.read_some(Duration::from_secs(5)).await, "a response head");
        };
        let head = String::from_utf8_lossy(&s.buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        s.buf.drain(..end);
        s.in_body = true;
        s.decode();
        s
    }

    /// Reads once (within `wait`); false when nothing came.
    async fn read_some(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(wait, self.sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.decode();
                true
            }
            _ => false,
        }
    }

    /// Decodes every complete chunk; each must hold exactly one SSE block.
    fn decode(&mut self) {
        while self.in_body {
            let Some(line) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.buf[..line])
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "a chunk-size line, got {:?}",
                        String::from_utf8_lossy(&self.buf[..line.min(80)])
                    )
                });
            assert!(size > 0, "the stream ended");
            let start = line + 2;
            if self.buf.len() < start + size + 2 {
                return;
            }
            assert_eq!(
                &self.buf[start + size..start + size + 2],
                b"\r\n",
                "a chunk ends where its size says"
            );
            let data = String::from_utf8(self.buf[start..start + size].to_vec()).expect("utf-8");
            self.buf.drain(..start + size + 2);
            let block = data
                .strip_suffix("\n\n")
                .unwrap_or_else(|| panic!("a chunk is one whole SSE block: {data:?}"));
            assert!(!block.contains("\n\n"), "one block per chunk: {data:?}");
            if block == ": hb" {
                self.heartbeats += 1;
                continue;
            }
            let mut id = None;
            let mut body = None;
            for l in block.lines() {
                if let Some(v) = l.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = l.strip_prefix("data: ") {
                    body = Some(serde_json::from_str(v).expect("json data"));
                }
            }
            self.events.push((id, body.expect("a data line")));
        }
    }

    /// Reads until an event satisfies `done` (within `wait`).
    async fn read_until(&mut self, wait: Duration, done: impl Fn(&serde_json::Value) -> bool) {
        let until = tokio::time::Instant::now() + wait;
        while !self.events.iter().any(|(_, v)| done(v)) {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero() && self.read_some(left).await,
                "no such event within {wait:?}; got {} events, last {:?}",
                self.events.len(),
                self.events.last()
            );
        }
    }
}

fn ready() -> State {
    let mut s = State::video(VideoStatus::Ready);
    s.hls_path = Some(text("a/master.m3u8"));
    s.duration = Some(3);
    s
}

fn is_ready(v: &serde_json::Value) -> bool {
    v["status"] == "READY"
}

/// The sequence numbers (carried in `encoding_remaining_seconds`) of a stream's video events.
fn seqs(events: &[(Option<String>, serde_json::Value)]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|(_, v)| v["encoding_remaining_seconds"].as_u64())
        .collect()
}

#[tokio::test]
async fn stream_direct_writes_reach_an_idle_stream_without_its_task() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 1, 1),
        processing(10, None, Some(1)),
    )
    .await;
    let token = app.token(1, "teacher");
    let mut s = RawStream::open(&app, "videos=1,2", &token, None, None).await;
    s.read_until(Duration::from_secs(5), |v| v["id"] == 2).await;
    let before = app.direct_writes();
    for k in 2..=5u64 {
        // Time for the stream's task to go idle, so the hub writes to its socket itself.
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.put(
            video_key(1, 1),
            fence(1, 1, k),
            processing(10, None, Some(u32::try_from(k).expect("small"))),
        )
        .await;
    }
    s.read_until(Duration::from_secs(5), |v| {
        v["encoding_remaining_seconds"] == 5
    })
    .await;
    assert_eq!(seqs(&s.events), vec![1, 2, 3, 4, 5]);
    let (whole, _) = app.direct_writes();
    assert!(
        whole - before.0 >= 3,
        "live events were written by the hub: {before:?} → {whole}"
    );
    assert!(
        s.events[2..].iter().all(|(id, _)| id.is_some()),
        "live events carry their change-log id"
    );
}

#[tokio::test]
async fn stream_slow_reader_whose_socket_blocks_gets_its_events_in_order_and_the_final_state() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 1, 1),
        processing(10, None, Some(1)),
    )
    .await;
    let token = app.token(1, "teacher");
    let mut s = RawStream::open(&app, "videos=1", &token, None, Some(2048)).await;
    s.read_until(Duration::from_secs(5), |v| v["id"] == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The client stops reading while events are written until the socket's buffers are full:
    // a direct write would block (or is taken in part) and the stream's task takes over; a few
    // hundred more go through its queue (and its catch-up when the queue overflows).
    let mut k = 1u64;
    let mut after_block = 0;
    while after_block < 500 {
        k += 1;
        app.put(
            video_key(1, 1),
            fence(1, 1, k),
            processing(10, Some((4, 0.5)), Some(u32::try_from(k).expect("small"))),
        )
        .await;
        // The hub keeps up with the feed (the test runs on one thread).
        tokio::task::yield_now().await;
        if app.direct_writes().1 > 0 {
            after_block += 1;
        }
        assert!(k < 200_000, "no direct write ever blocked");
    }
    app.put(video_key(1, 1), fence(1, 1, k + 1), ready()).await;
    let (whole, blocked) = app.direct_writes();
    assert!(
        whole > 0 && blocked > 0,
        "direct writes, then one the socket would not take: {whole} / {blocked}"
    );
    // Now it reads: every chunk decodes (no interleaving), in order, ending with READY once.
    s.read_until(Duration::from_secs(20), is_ready).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    while s.read_some(Duration::from_millis(100)).await {}
    let got = seqs(&s.events);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "events in order, none repeated: {got:?}"
    );
    assert_eq!(got.first(), Some(&1));
    assert_eq!(
        s.events.iter().filter(|(_, v)| is_ready(v)).count(),
        1,
        "the terminal state exactly once"
    );
    assert!(is_ready(&s.events.last().expect("events").1), "READY last");
    assert!(s.heartbeats > 0, "heartbeats after the catch-up");
}

#[tokio::test]
async fn stream_resumes_with_last_event_id_on_the_lean_path() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher");
    let mut s = RawStream::open(&app, "videos=5,6", &token, None, None).await;
    s.read_until(Duration::from_secs(5), |v| v["id"] == 6).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.put(
        video_key(1, 5),
        fence(1, 1, 1),
        processing(15, None, Some(1)),
    )
    .await;
    s.read_until(Duration::from_secs(5), |v| {
        v["encoding_remaining_seconds"] == 1
    })
    .await;
    let last = s.events.last().and_then(|(id, _)| id.clone()).expect("id");
    drop(s);
    for k in 2..20u64 {
        app.put(
            video_key(1, 5),
            fence(1, 1, k),
            processing(15, None, Some(u32::try_from(k).expect("small"))),
        )
        .await;
    }
    app.put(video_key(1, 5), fence(1, 1, 50), ready()).await;
    let mut s = RawStream::open(&app, "videos=5,6", &token, Some(&last), None).await;
    s.read_until(Duration::from_secs(5), is_ready).await;
    // Then live again, after the catch-up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.put(
        video_key(1, 6),
        fence(1, 1, 1),
        processing(10, None, Some(99)),
    )
    .await;
    s.read_until(Duration::from_secs(5), |v| {
        v["encoding_remaining_seconds"] == 99
    })
    .await;
    let of_5: Vec<&str> = s
        .events
        .iter()
        .filter(|(_, v)| v["id"] == 5)
        .filter_map(|(_, v)| v["status"].as_str())
        .collect();
    assert_eq!(
        of_5,
        vec!["READY"],
        "what was missed, as the current state (progress coalesced), once"
    );
    assert!(
        s.events.iter().all(|(id, _)| id.is_some()),
        "{:?}",
        s.events
    );
}

#[tokio::test]
async fn streams_opened_while_writes_flow_get_the_terminal_state_once() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 1, 1),
        processing(1, None, Some(1)),
    )
    .await;
    let token = app.token(1, "teacher");
    let n = 300u64;
    let writer = {
        let store = app.store.clone();
        tokio::spawn(async move {
            for k in 2..=n {
                let w = jobpulse_domain::Write::set(
                    video_key(1, 1),
                    fence(1, 1, k),
                    processing(1, None, Some(u32::try_from(k).expect("small"))),
                )
                .expect("valid");
                store.apply(&w).await.expect("applies");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let w = jobpulse_domain::Write::set(video_key(1, 1), fence(1, 1, n + 1), ready())
                .expect("valid");
            store.apply(&w).await.expect("applies");
        })
    };
    // Streams open while the writes flow: snapshot and live events race.
    let mut streams = Vec::new();
    for _ in 0..30 {
        streams.push(RawStream::open(&app, "videos=1", &token, None, None).await);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.expect("writer");
    for s in &mut streams {
        s.read_until(Duration::from_secs(10), is_ready).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, s) in streams.iter_mut().enumerate() {
        while s.read_some(Duration::from_millis(50)).await {}
        let got = seqs(&s.events);
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "stream {i}: in order, none repeated: {got:?}"
        );
        assert_eq!(
            s.events.iter().filter(|(_, v)| is_ready(v)).count(),
            1,
            "stream {i}: the terminal state exactly once"
        );
        assert!(is_ready(&s.events.last().expect("events").1), "stream {i}");
    }
    assert!(app.direct_writes().0 > 0, "the hub wrote directly");
}

/// Sends `head` in `piece`-byte writes and returns the answer's status code.
async fn status_of(app: &TestApp, head: &str, piece: usize) -> u16 {
    let mut sock = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    for part in head.as_bytes().chunks(piece) {
        sock.write_all(part).await.expect("writes");
        sock.flush().await.expect("flushes");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
}

/// A forged 16 KB token on the stream route was answered 431 or 401 depending on how its bytes
/// arrived (the lean path's head limit was 16 KiB; a fresh-clone CI run caught it in s07). The
/// stream route must answer a large head exactly as every other route does.
#[tokio::test]
async fn a_large_token_is_answered_like_on_every_other_route() {
    let app = TestApp::spawn().await;
    for size in [15_000, 16 * 1024, 16_500, 40_000, 300_000] {
        let token = "a".repeat(size);
        for (path, piece) in [
            ("/api/v1/progress/stream?videos=1", 1000),
            ("/api/v1/progress/stream?videos=1", 64 * 1024),
            ("/api/v1/media/videos/1/progress/", 1000),
        ] {
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
            assert_eq!(
                status_of(&app, &head, piece).await,
                401,
                "{size}-byte token on {path} in {piece}-byte writes"
            );
        }
    }
}
