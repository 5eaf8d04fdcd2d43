//! Logging for every command: a subscriber whose writes can neither block nor panic the process.
//!
//! `tracing-subscriber`'s fmt layer writes each event to its writer on the thread that logged
//! it. With stderr a pipe whose reader went away, that write fails and the layer reports it with
//! `eprintln!`, which panics on `EPIPE` — inside whatever task logged (a request handler, a
//! worker, the task that turns SIGTERM into a shutdown). With stderr a pipe nobody reads, the
//! write blocks a runtime thread once the pipe's buffer is full. Either way serving stops because
//! logging failed.
//!
//! Here events go to [`tracing_appender::non_blocking()`] in lossy mode instead: the logging
//! thread only puts the formatted line into a bounded channel (a full channel drops the line), and
//! one dedicated thread writes to stderr, ignoring errors. A closed stderr loses log lines; a full
//! one stalls that thread alone; requests, jobs and shutdown go on. The returned [`LogGuard`]
//! flushes what is queued when `main` ends, bounded by about a second — and not at all when the
//! writer is stuck in a write nobody reads (stderr a full pipe): `tracing-appender`'s guard
//! would wait its full second for a thread that cannot answer, so the lines are left behind
//! (they could not be written anyway) and the process exits at once.
//!
//! The format is `text` (human-readable, ANSI colours only when stderr is a terminal) or `json`
//! (one object per line: `timestamp`, `level`, `target`, `fields`, and the current spans with
//! their fields — e.g. the worker's `tenant`, `task`, `attempt`).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines look (`--log-format`, `JOBPULSE_LOG_FORMAT`, `log_format` in the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Lines waiting for the writer thread beyond which new lines are dropped.
const QUEUE_LINES: usize = 64 * 1024;

static DROPPED: OnceLock<tracing_appender::non_blocking::ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the writer thread could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Keeps the writer thread; dropping it flushes what is queued (for at most about a second),
/// unless the writer is stuck (see the module docs).
#[derive(Debug)]
pub struct LogGuard(Option<tracing_appender::non_blocking::WorkerGuard>);

/// A write that has not returned for this long means nobody reads stderr.
const STUCK_AFTER: Duration = Duration::from_millis(200);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else { return };
        if writing_for().is_some_and(|d| d >= STUCK_AFTER) {
            // Dropping the guard would wait a second for the stuck writer thread, then report
            // on stdout that it could not. The process is ending: leave the thread behind.
            std::mem::forget(guard);
            return;
        }
        // The guard reports a writer that could not even take the shutdown message with
        // `println!`, which panics when stdout is closed too: nothing of that may escape `main`.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(guard)));
    }
}

/// When the writer thread's current write to stderr began (ms since [`epoch`] + 1; 0: none).
static WRITING_SINCE: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How long the writer thread has been inside its current write, if it is in one.
fn writing_for() -> Option<Duration> {
    match WRITING_SINCE.load(Ordering::Acquire) {
        0 => None,
        since => Some(
            epoch()
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1)),
        ),
    }
}

/// stderr, noting when each write begins and ends (see [`writing_for`]).
struct Stderr;

impl Stderr {
    fn timed<T>(f: impl FnOnce(&mut std::io::Stderr) -> T) -> T {
        let started = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        WRITING_SINCE.store(started, Ordering::Release);
        let out = f(&mut std::io::stderr());
        WRITING_SINCE.store(0, Ordering::Release);
        out
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::timed(|e| e.write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        Self::timed(|e| e.write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Self::timed(Write::flush)
    }
}

/// Installs the process-wide subscriber writing to stderr. `RUST_LOG` filters as usual; without
/// it, `info` (and, with `access_log: false`, no access log lines: `jobpulse-bench` measures
/// the server, not its logging).
pub fn init(format: LogFormat, access_log: bool) -> LogGuard {
    let default = if access_log {
        "info,sqlx=warn,hyper=warn"
    } else {
        "info,sqlx=warn,hyper=warn,jobpulse::access=off"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("jobpulse-log")
        .finish(Stderr);
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    // Only fails when a subscriber was installed already; logging then goes there.
    drop(installed);
    LogGuard(Some(guard))
}

/// How long [`stderr_line`] waits for a write nobody reads.
const STDERR_LINE_WAIT: Duration = Duration::from_secs(1);

/// Writes a line to stderr, ignoring failure (a closed stderr must not panic the process the
/// way `eprintln!` does) and not waiting more than a second for it: with stderr a full pipe the
/// write happens on a helper thread that is left behind, so an error on the way out (`error:
/// …` from `main`) cannot hang the process.
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    let mut text = line.to_string();
    text.push('\n');
    let (done, wait) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("jobpulse-stderr".into())
        .spawn(move || {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            let _ = done.send(());
        });
    if writer.is_ok() {
        let _ = wait.recv_timeout(STDERR_LINE_WAIT);
    }
}

/// Writes a line to stdout, ignoring failure (`jobpulse up | head -1` must not kill the server).
pub fn stdout_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes bytes to stdout, ignoring failure.
pub fn stdout_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}
