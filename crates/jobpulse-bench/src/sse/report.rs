//! The scenario's printed tables: streams and memory, latency against the baseline, the floor.

use super::phases::FloorRun;
use super::{Held, Latency, Opened, SseOptions, Stats};

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
}

pub(super) struct Report<'a> {
    pub(super) o: &'a SseOptions,
    pub(super) watchers: usize,
    pub(super) cap: usize,
    pub(super) limit: Option<u64>,
    pub(super) opened: Opened,
    pub(super) held: Held,
    pub(super) hub_streams: usize,
    pub(super) rss: (Option<u64>, Option<u64>, Option<u64>),
    pub(super) tcp_kb: (Option<u64>, Option<u64>),
    pub(super) base: Stats,
    pub(super) lat: Latency,
    pub(super) floor: FloorRun,
    /// The hub's direct writes: (taken whole, handed to the stream's task).
    pub(super) direct: (u64, u64),
}

impl Report<'_> {
    #[allow(clippy::print_stdout)]
    pub(super) fn print(&self) {
        let o = self.o;
        println!(
            "{} streams requested, one keep-alive connection each, from a separate client \
             process: {} in tenant 1 watching videos 1–20, the rest round-robin over tenants \
             2..={} on other pages of 20; hub cap {} per tenant; ulimit -n {}; {}; the hub's \
             direct writes {}.\n",
            o.streams,
            self.watchers,
            o.tenants,
            self.cap,
            self.limit.map_or("?".into(), |l| l.to_string()),
            if o.reuse_connection {
                "each stream is its connection's second request (served by hyper)"
            } else {
                "each stream is its connection's first request (the lean stream path)"
            },
            if o.direct_writes { "on" } else { "off" }
        );
        self.print_streams();
        self.print_latency();
    }

    #[allow(clippy::print_stdout)]
    fn print_streams(&self) {
        let (before, open, held) = self.rss;
        let delta = held.zip(before).map(|(h, b)| h.saturating_sub(b));
        let per = delta
            .filter(|_| self.held.open > 0)
            .map(|d| format!("{:.1} KB", d as f64 / self.held.open as f64));
        println!("| figure | value |");
        println!("|---|---|");
        println!(
            "| streams opened (initial snapshot of 20 videos received) | {} of {} in {:.1} s |",
            self.opened.verified, self.o.streams, self.opened.secs
        );
        println!(
            "| still open after a {} s hold (client) / held by the server's hub | {} / {} |",
            self.o.hold.as_secs(),
            self.held.open,
            self.hub_streams
        );
        println!(
            "| server process RSS: before / streams opened / after the hold | {} / {} / {} |",
            mb(before),
            mb(open),
            mb(held)
        );
        println!(
            "| server memory per stream (RSS delta / streams held) | {} |",
            per.unwrap_or("?".into())
        );
        println!(
            "| client process RSS (not in the figures above) | {} |",
            mb(self.held.rss_kb)
        );
        println!(
            "| kernel TCP buffers, whole machine, both ends (not in RSS): before / held | {} / {} |",
            mb(self.tcp_kb.0),
            mb(self.tcp_kb.1)
        );
        if self.opened.failed > 0 || self.opened.fd_limited {
            println!(
                "\n{} of {} streams failed to open; first error: {}",
                self.opened.failed,
                self.o.streams,
                self.opened.first_error.as_deref().unwrap_or("?")
            );
        }
        let needed = self.o.streams as u64 + 100;
        if let Some(limit) = self.limit.filter(|l| *l < needed) {
            println!(
                "BLOCKED by the open-files limit: ulimit -n is {limit} in both processes (the \
                 server needs one descriptor per stream, and so does the client); reached {} \
                 streams held by the server. Run with `ulimit -n {needed}` or more to measure \
                 {} streams.",
                self.hub_streams, self.o.streams
            );
        } else if self.opened.fd_limited {
            println!("BLOCKED by the client process's open-files limit (ulimit -n).");
        }
        if let Some(why) = &self.held.first_end {
            println!("first stream that ended during the hold: {why}");
        }
    }

    #[allow(clippy::print_stdout)]
    fn print_latency(&self) {
        let (b, s) = (&self.base, &self.lat.stats);
        let w = self.o.writes as usize;
        println!(
            "\n### write → client latency: {} streams watching video 1, {} writes every {} ms\n",
            self.lat.watching,
            self.o.writes,
            self.o.write_every.as_millis()
        );
        println!("| path | deliveries (of expected) | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        println!(
            "| baseline: store subscribe() in the server process | {} ({w}) | {:.2} | {:.2} | \
             {:.2} |",
            b.count, b.p50_ms, b.p99_ms, b.max_ms
        );
        println!(
            "| SSE: hub → HTTP → client process | {} ({}) | {:.2} | {:.2} | {:.2} |",
            s.count,
            w * self.lat.watching,
            s.p50_ms,
            s.p99_ms,
            s.max_ms
        );
        println!(
            "\nSSE/baseline: p50 {:.1}×, p99 {:.1}× (+{:.2} ms at p99); goal p99 ≤ 20 ms: {}",
            s.p50_ms / b.p50_ms,
            s.p99_ms / b.p99_ms,
            s.p99_ms - b.p99_ms,
            if s.p99_ms <= 20.0 { "met" } else { "NOT met" }
        );
        println!(
            "\nthe hub's direct writes (live events written by the dispatch loop itself, no \
             task wake-up): {} taken whole, {} handed to the stream's task (socket would block)",
            self.direct.0, self.direct.1
        );
        self.print_floor(s);
        if s.count < w * self.lat.watching {
            println!(
                "({} deliveries missing: a lagging stream is caught up with the current state \
                 only, so intermediate writes are coalesced by design)",
                w * self.lat.watching - s.count
            );
        }
    }
}

impl Report<'_> {
    #[allow(clippy::print_stdout)]
    fn print_floor(&self, s: &Stats) {
        let f = &self.floor;
        let Some(lat) = &f.lat else {
            println!(
                "\nfloor: not measured ({})",
                f.error.as_deref().unwrap_or("?")
            );
            return;
        };
        let fl = &lat.stats;
        let w = self.o.writes as usize;
        let loops = Stats::of(f.loop_ms.clone());
        println!(
            "\n**floor** (same run, after the above): the latency group's streams closed, {} raw \
             connections opened to a minimal server thread in this process and read by the same \
             reader; each write is the same event bytes sent with one non-blocking write per \
             socket from one thread ({} of {} socket writes taken whole; the write loop took \
             p50 {:.2} ms, max {:.2} ms).\n",
            f.opened,
            f.whole_writes,
            w * f.opened,
            loops.p50_ms,
            loops.max_ms
        );
        println!("| path | deliveries (of expected) | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        println!(
            "| floor: raw sockets → client process | {} ({}) | {:.2} | {:.2} | {:.2} |",
            fl.count,
            w * lat.watching,
            fl.p50_ms,
            fl.p99_ms,
            fl.max_ms
        );
        println!(
            "\njobpulse/floor: p50 {:.1}×, p99 {:.1}× (+{:.2} ms at p99); floor p99 {} 20 ms",
            s.p50_ms / fl.p50_ms,
            s.p99_ms / fl.p99_ms,
            s.p99_ms - fl.p99_ms,
            if fl.p99_ms <= 20.0 { "≤" } else { ">" }
        );
        if let Some(e) = &f.error {
            println!("(floor: {e})");
        }
    }
}
