//! The messages between the bench and its SSE client process, one JSON object a line, and the
//! latency [`Stats`] they carry.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What the child is told at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// Token of tenant `t` at index `t - 1`.
    pub tokens: Vec<String>,
    pub streams: usize,
    pub watchers: usize,
    pub tenants: i64,
    pub open_timeout_secs: u64,
    /// Send `GET /healthz` first on each connection.
    #[serde(default)]
    pub reuse_connection: bool,
}

/// One line between the processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// Parent → child: the configuration; the child opens the streams, then answers `Opened`.
    Start(ClientConfig),
    Opened(Opened),
    /// Parent → child: how many streams are still open? Answer: `Held`.
    Check,
    Held(Held),
    /// Parent → child: the writes' send instants (sequence, Unix ns); answer: `Latency`.
    Sent(Vec<(u64, u64)>),
    Latency(Latency),
    /// Parent → child: close the latency group's streams (before the floor phase); answer:
    /// `Held`.
    CloseWatching,
    /// Parent → child: open the floor's connections; answer: `Opened`.
    Floor(FloorConfig),
}

/// The floor server's address and how many connections to open to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorConfig {
    pub addr: SocketAddr,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opened {
    /// Streams whose initial snapshot arrived.
    pub verified: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// The client ran out of file descriptors (opening stopped there).
    pub fd_limited: bool,
    pub secs: f64,
    pub rss_kb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub open: usize,
    pub first_end: Option<String>,
    pub rss_kb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub stats: Stats,
    /// Streams of the latency group open when the report was asked for.
    pub watching: usize,
}

/// Latency percentiles of a set of deliveries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub count: usize,
    // Not a number (no deliveries) travels as `null`.
    #[serde(deserialize_with = "nan_if_null")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max_ms: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Stats {
    /// From latencies in milliseconds (kept in an HDR histogram of microseconds, 3 significant
    /// digits, like every other latency figure of the bench).
    pub fn of(ms: Vec<f64>) -> Stats {
        let mut h = match hdrhistogram::Histogram::<u64>::new(3) {
            Ok(h) => h,
            Err(_) => return Stats::default(),
        };
        for v in &ms {
            // Auto-resizing: recording cannot fail on a large value.
            let _ = h.record((v.max(0.0) * 1000.0).round() as u64);
        }
        if h.is_empty() {
            return Stats {
                count: 0,
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                max_ms: f64::NAN,
            };
        }
        let at = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        Stats {
            count: ms.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}
