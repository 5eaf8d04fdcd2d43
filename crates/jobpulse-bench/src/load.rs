//! A small closed-loop HTTP load generator over loopback (hyper client, keep-alive).
//!
//! Each of `connections` tasks sends one request at a time on its own connection for the
//! duration, after a warm-up, and records every latency. Closed-loop load measures the
//! server's throughput at that concurrency and the latency a client sees.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Builds the n-th request of a connection.
pub type MakeRequest = Arc<dyn Fn(usize) -> Request<Empty<Bytes>> + Send + Sync>;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds (3 significant digits).
    latencies_us: hdrhistogram::Histogram<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency percentile in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.value_at_quantile(p) as f64 / 1000.0
    }
}

/// Runs the load; `warmup` is excluded from every figure.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let (mut errors, mut non_2xx, mut bytes) = (0u64, 0u64, 0u64);
            let mut n = c;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                send.ready().await?;
                let t0 = Instant::now();
                let result = send.send_request(make(n)).await;
                n += connections;
                let measured = t0 >= start;
                match result {
                    Ok(res) => {
                        let ok = res.status().is_success() || res.status().as_u16() == 304;
                        let head: usize = res
                            .headers()
                            .iter()
                            .map(|(k, v)| k.as_str().len() + v.len() + 4)
                            .sum::<usize>()
                            + 17;
                        let body = res.into_body().collect().await?.to_bytes();
                        if measured {
                            lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                            bytes += (head + body.len()) as u64;
                            if !ok {
                                non_2xx += 1;
                            }
                        }
                    }
                    Err(_) if measured => errors += 1,
                    Err(_) => {}
                }
            }
            anyhow::Ok((lat, errors, non_2xx, bytes))
        }));
    }
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    let (mut errors, mut non_2xx, mut bytes) = (0, 0, 0);
    for t in tasks {
        let (lat, e, n, b) = t.await??;
        for us in lat {
            all.record(u64::from(us))?;
        }
        errors += e;
        non_2xx += n;
        bytes += b;
    }
    Ok(LoadResult {
        requests: all.len(),
        errors,
        non_2xx,
        bytes,
        elapsed: duration,
        latencies_us: all,
    })
}

/// A GET with a bearer token.
pub fn get(path: &str, token: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap_or_else(|_| Request::new(Empty::new()))
}
