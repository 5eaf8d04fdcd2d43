//! The load of `--only fleet`: browsers polling their work boxes at the front end's cadence,
//! simulated workers writing progress every second, and SSE watchers — all through the
//! balancer except the workers, which write to the read model directly, as jobpulse's own
//! workers do (`jobpulse_worker::progress::Reporter`: progress ticks go straight to Redis).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use jobpulse_domain::{Fence, TaskKey, TenantId, VideoId, Write};
use jobpulse_store::SharedStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// First tenant id of the bench's tenants (apart from the fleet's own tenant).
pub(crate) const TENANT_BASE: i64 = 1000;
/// Worker writes carry `SEQ_BASE + n` in `encoding_remaining_seconds` (n: the write's number).
const SEQ_BASE: u64 = 1_000_000;

/// A small deterministic generator (splitmix64): the same layout every run.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The front end's poll interval for a task watched for `age`: 5 s, 15 s, 30 s.
pub(crate) fn cadence(age: Duration) -> Duration {
    if age < Duration::from_secs(60) {
        Duration::from_secs(5)
    } else if age < Duration::from_secs(600) {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(30)
    }
}

/// The layout: tenant `t` (0-based) has `browsers` boxes of `tasks` videos each; box `b`'s
/// videos are `b * tasks + 1 ..= b * tasks + tasks`. Box number `i` is tenant `i % tenants`,
/// browser `i / tenants`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) tenants: usize,
    pub(crate) browsers: usize,
    pub(crate) tasks: usize,
}

impl Layout {
    pub(crate) fn boxes(&self) -> usize {
        self.tenants * self.browsers
    }
    /// (tenant index, video ids) of box `i`.
    pub(crate) fn box_of(&self, i: usize) -> (usize, Vec<i64>) {
        let (t, b) = (i % self.tenants, i / self.tenants);
        let first = (b * self.tasks) as i64 + 1;
        (t, (first..first + self.tasks as i64).collect())
    }
    pub(crate) fn key(t: usize, video: i64) -> anyhow::Result<TaskKey> {
        Ok(TaskKey::video(
            TenantId::new(TENANT_BASE + t as i64)?,
            VideoId::new(video)?,
        ))
    }
}

fn processing(percent: u8, remaining: u32) -> anyhow::Result<jobpulse_domain::State> {
    let mut s = jobpulse_domain::State::video(jobpulse_domain::VideoStatus::Processing);
    s.percent = jobpulse_domain::Percent::new(percent)?;
    s.step = Some(jobpulse_domain::steps::VIDEO.step(4, f64::from(percent) / 100.0));
    s.remaining_seconds = Some(remaining);
    Ok(s)
}

/// Every task of every box, PROCESSING (fence 1/1/1).
pub(crate) async fn seed(store: &SharedStore, layout: Layout) -> anyhow::Result<()> {
    for t in 0..layout.tenants {
        let mut writes = Vec::new();
        for v in 1..=(layout.browsers * layout.tasks) as i64 {
            let state = processing(30, 600)?;
            writes.push(Write::set(Layout::key(t, v)?, Fence::new(1, 1, 1)?, state)?);
        }
        for chunk in writes.chunks(100) {
            store.apply_many(chunk).await?;
        }
    }
    Ok(())
}

/// Send instants of the workers' writes, by sequence number, and how many watchers each box
/// has (to count the deliveries expected).
#[derive(Default)]
pub(crate) struct Writes {
    pub(crate) sent: Mutex<HashMap<u64, (Instant, usize)>>,
    pub(crate) next: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Worker `w` works on box `w % boxes`: one progress tick a second to one of its tasks (the
/// next one every 20 s), until `end`. Writes are spread over the second.
pub(crate) async fn worker(
    store: SharedStore,
    layout: Layout,
    w: usize,
    workers: usize,
    writes: Arc<Writes>,
    end: Instant,
) -> anyhow::Result<()> {
    let boxn = w % layout.boxes();
    let (t, videos) = layout.box_of(boxn);
    let offset = Duration::from_millis((w * 1000 / workers.max(1)) as u64);
    let mut tick =
        tokio::time::interval_at((Instant::now() + offset).into(), Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        let at = tick.tick().await.into_std();
        if at >= end {
            return Ok(());
        }
        let video = videos[(n / 20) as usize % videos.len()];
        let seq = writes.next.fetch_add(1, Ordering::Relaxed);
        let state = processing((n % 100) as u8, u32::try_from(SEQ_BASE + seq)?)?;
        let write = Write::set(Layout::key(t, video)?, Fence::new(1, 1, 2 + n)?, state)?;
        lock(&writes.sent).insert(seq + SEQ_BASE, (Instant::now(), boxn));
        if store.apply(&write).await.is_err() {
            writes.failed.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One polled task: its tenant's token index, its video id, its age at the start.
#[derive(Debug, Clone)]
pub(crate) struct Polled {
    pub(crate) tenant: usize,
    pub(crate) video: i64,
    pub(crate) age0: Duration,
}

/// What one connection's polls measured (inside the window only).
#[derive(Debug)]
pub(crate) struct PollStats {
    pub(crate) lat_us: hdrhistogram::Histogram<u64>,
    /// How late each poll was sent against its due time, µs.
    pub(crate) late_us: hdrhistogram::Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) not_modified: u64,
    pub(crate) errors: u64,
    pub(crate) bad_status: u64,
}

impl PollStats {
    pub(crate) fn new() -> anyhow::Result<PollStats> {
        Ok(PollStats {
            lat_us: hdrhistogram::Histogram::new(3)?,
            late_us: hdrhistogram::Histogram::new(3)?,
            ok: 0,
            not_modified: 0,
            errors: 0,
            bad_status: 0,
        })
    }
    pub(crate) fn add(&mut self, o: &PollStats) -> anyhow::Result<()> {
        self.lat_us.add(&o.lat_us)?;
        self.late_us.add(&o.late_us)?;
        self.ok += o.ok;
        self.not_modified += o.not_modified;
        self.errors += o.errors;
        self.bad_status += o.bad_status;
        Ok(())
    }
    pub(crate) fn polls(&self) -> u64 {
        self.ok + self.not_modified + self.errors + self.bad_status
    }
}

/// One keep-alive connection to the balancer carrying the polls of `tasks` (open loop: each
/// task is polled when due, at `cadence(age0 + elapsed)`, with `If-None-Match` once it has an
/// ETag, as a browser's HTTP cache revalidates a `no-cache` answer). Polls start at `start`;
/// those due in `[window.0, window.1)` are counted; the last is due before `window.1`.
pub(crate) async fn poller(
    lb: SocketAddr,
    tokens: Arc<Vec<String>>,
    tasks: Vec<Polled>,
    start: Instant,
    window: (Instant, Instant),
    seed: u64,
) -> anyhow::Result<PollStats> {
    let mut stats = PollStats::new()?;
    let mut rng = Rng::new(seed);
    let mut etags: Vec<Option<String>> = vec![None; tasks.len()];
    let mut heap = BinaryHeap::new();
    for (i, t) in tasks.iter().enumerate() {
        let first = cadence(t.age0).mul_f64(rng.unit());
        heap.push(Reverse((start + first, i)));
    }
    let mut send = connect(lb).await?;
    while let Some(Reverse((due, i))) = heap.pop() {
        if due >= window.1 {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let t = &tasks[i];
        let mut req = Request::get(format!("/api/v1/media/videos/{}/progress/", t.video))
            .header("host", "fleet")
            .header("authorization", format!("Bearer {}", tokens[t.tenant]));
        if let Some(tag) = &etags[i] {
            req = req.header("if-none-match", tag.as_str());
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let counted = due >= window.0;
        // nginx closes a client connection after `keepalive_requests` (1 000): a browser
        // opens a new one.
        if send.ready().await.is_err() {
            send = connect(lb).await?;
        }
        let t0 = Instant::now();
        let result = send.send_request(req).await;
        match result {
            Ok(res) => {
                let status = res.status().as_u16();
                if let Some(tag) = res.headers().get("etag").and_then(|v| v.to_str().ok()) {
                    etags[i] = Some(tag.to_owned());
                }
                res.into_body().collect().await?;
                if counted {
                    stats
                        .lat_us
                        .record(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX))?;
                    stats
                        .late_us
                        .record(u64::try_from(t0.duration_since(due).as_micros()).unwrap_or(0))?;
                    match status {
                        200 => stats.ok += 1,
                        304 => stats.not_modified += 1,
                        _ => stats.bad_status += 1,
                    }
                }
            }
            Err(e) => {
                if counted {
                    stats.errors += 1;
                }
                anyhow::bail!("a poll failed: {e}");
            }
        }
        let age = t.age0 + due.duration_since(start);
        heap.push(Reverse((due + cadence(age), i)));
    }
    Ok(stats)
}

async fn connect(
    lb: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(lb).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// What the SSE watchers saw.
pub(crate) struct Watched {
    pub(crate) lag_us: Mutex<hdrhistogram::Histogram<u64>>,
    pub(crate) deliveries: AtomicU64,
    pub(crate) opened: AtomicU64,
    /// Only writes sent in this span count (watchers all open, the run not ending).
    pub(crate) span: (Instant, Instant),
}

/// One SSE watcher of `videos` through the balancer, until `end`: a delivery is an event that
/// carries a worker write's sequence number; its lag is arrival − the write's send instant.
pub(crate) async fn watcher(
    lb: SocketAddr,
    token: String,
    videos: Vec<i64>,
    writes: Arc<Writes>,
    seen: Arc<Watched>,
    end: Instant,
) -> anyhow::Result<()> {
    let ids: Vec<String> = videos.iter().map(i64::to_string).collect();
    let mut stream = tokio::net::TcpStream::connect(lb).await?;
    stream.set_nodelay(true)?;
    let req = format!(
        "GET /api/v1/progress/stream?videos={} HTTP/1.1\r\nHost: fleet\r\nAuthorization: Bearer \
         {token}\r\nAccept: text/event-stream\r\n\r\n",
        ids.join(",")
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    let mut head_done = false;
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => r?,
            () = tokio::time::sleep_until(end.into()) => return Ok(()),
        };
        if n == 0 {
            anyhow::bail!("an SSE stream ended early");
        }
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            anyhow::ensure!(
                buf.starts_with(b"HTTP/1.1 200"),
                "the SSE stream was refused: {}",
                String::from_utf8_lossy(&buf[..i.min(200)])
            );
            buf.drain(..i + 4);
            head_done = true;
            seen.opened.fetch_add(1, Ordering::Relaxed);
        }
        crate::sse_client::scan(&mut buf, |_, seq| {
            let Some(seq) = seq.filter(|s| *s >= SEQ_BASE) else {
                return;
            };
            let sent = lock(&writes.sent).get(&seq).map(|s| s.0);
            if let Some(s0) = sent.filter(|s0| *s0 >= seen.span.0 && *s0 < seen.span.1) {
                seen.deliveries.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(at.duration_since(s0).as_micros()).unwrap_or(u64::MAX);
                let _ = lock(&seen.lag_us).record(us);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_is_the_front_ends() {
        assert_eq!(cadence(Duration::from_secs(59)), Duration::from_secs(5));
        assert_eq!(cadence(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(cadence(Duration::from_secs(599)), Duration::from_secs(15));
        assert_eq!(cadence(Duration::from_secs(600)), Duration::from_secs(30));
    }

    #[test]
    fn boxes_cover_every_task_once() {
        let l = Layout {
            tenants: 3,
            browsers: 2,
            tasks: 3,
        };
        let mut seen = std::collections::HashSet::new();
        for i in 0..l.boxes() {
            let (t, vs) = l.box_of(i);
            for v in vs {
                assert!(seen.insert((t, v)));
            }
        }
        assert_eq!(seen.len(), 18);
    }
}
