//! Logging for every command: a subscriber whose writes can neither block nor panic the process.
//!
//! `tracing-subscriber`'s fmt layer writes each event to its writer on the thread that logged
//! it. With stderr a pipe whose reader went away, that write fails and the layer reports it with
//! `eprintln!`, which panics on `EPIPE` — inside whatever task logged (a request handler, a
//! worker, the task that turns SIGTERM into a shutdown). With stderr a pipe nobody reads, the
//! write blocks a runtime thread once the pipe's buffer is full. Either way serving stops because
//! logging failed.
//!
//! Here events go to [`tracing_appender::non_blocking`] in lossy mode instead: the logging
//! thread only puts the formatted line into a bounded channel (a full channel drops the line), and
//! one dedicated thread writes to stderr, ignoring errors. A closed stderr loses log lines; a full
//! one stalls that thread alone; requests, jobs and shutdown go on. The returned [`LogGuard`]
//! flushes what is queued when `main` ends, bounded by about a second.
//!
//! The format is `text` (human-readable, ANSI colours only when stderr is a terminal) or `json`
//! (one object per line: `timestamp`, `level`, `target`, `fields`, and the current spans with
//! their fields — e.g. the worker's `tenant`, `task`, `attempt`).

use std::io::IsTerminal;
use std::sync::OnceLock;

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

/// Keeps the writer thread; dropping it flushes what is queued (for at most about a second).
#[derive(Debug)]
pub struct LogGuard(Option<tracing_appender::non_blocking::WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The guard reports a writer that could not even take the shutdown message with
        // `println!`, which panics when stdout is closed too: nothing of that may escape `main`.
        if let Some(guard) = self.0.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(guard)));
        }
    }
}

/// Installs the process-wide subscriber writing to stderr. `RUST_LOG` filters as usual; without
/// it, `info` (and, with `access_log: false`, no access log lines: `jobpulse bench` measures
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
        .finish(std::io::stderr());
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

/// Writes a line to stderr, ignoring failure (a closed stderr must not panic the process the
/// way `eprintln!` does).
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line);
    let _ = err.write_all(b"\n");
}

/// Writes a line to stdout, ignoring failure (`jobpulse up | head -1` must not kill the server).
pub fn stdout_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes bytes to stdout, ignoring failure.
pub fn stdout_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}
