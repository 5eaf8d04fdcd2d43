//! `jobpulse watch video ID | job ID`: follow a task to its end with a progress bar.
//!
//! Uses the SSE stream (parsed by `eventsource-stream`; resuming with `Last-Event-ID` after a
//! drop, waiting the server's `retry:`) and falls back to polling with the server's
//! `X-Poll-After` hint and `If-None-Match` when the stream is unavailable.
//!
//! On a terminal it draws a progress bar; otherwise (a pipe, a CI log) it prints one line per
//! change of state on stdout; `--json` prints one JSON object per update. The last line says
//! how it ended and, for a READY video, gives its signed, playable `hls_url` (for a finished job,
//! the URL of its result). Exits 0 when the task succeeds (READY; DONE without an error message)
//! and non-zero with the reason when it fails, or when the server still knows nothing about it
//! after `--give-up-after`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{Client, ClientArgs};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(subcommand)]
    target: TargetArg,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum TargetArg {
    /// A video, by id.
    Video {
        /// The video's id.
        id: i64,
    },
    /// An AI/tool job, by job id.
    Job {
        /// The job's id. Job ids are random URL-safe strings and may start with `-` (`-uX3…`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// What to follow.
#[derive(Debug, Clone)]
pub enum Target {
    Video(i64),
    Job(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Video(id) => write!(f, "video {id}"),
            Target::Job(id) => write!(f, "job {id}"),
        }
    }
}

impl Target {
    fn progress_path(&self) -> String {
        match self {
            Target::Video(id) => format!("/api/v1/media/videos/{id}/progress/"),
            Target::Job(id) => format!("/api/v1/jobs/{id}/progress/"),
        }
    }

    fn stream_path(&self) -> String {
        match self {
            Target::Video(id) => format!("/api/v1/progress/stream?videos={id}"),
            Target::Job(id) => format!("/api/v1/progress/stream?jobs={id}"),
        }
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let target = match args.target {
        TargetArg::Video { id } => Target::Video(id),
        TargetArg::Job { id } => Target::Job(id),
    };
    follow(&client, &target, &args.client).await
}

/// How updates are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A progress bar on stderr (a terminal).
    Bar,
    /// One line per change of state on stdout (not a terminal).
    Lines,
    /// One JSON object per update on stdout.
    Json,
}

/// Renders updates; decides when the task is over.
struct View {
    bar: Option<ProgressBar>,
    mode: Mode,
    last: Option<Value>,
    /// The last line printed in `Lines` mode (a line is printed when it changes).
    last_line: String,
    unknown_since: Option<Instant>,
    /// How long the task may stay UNKNOWN.
    give_up: Duration,
    /// Whether the server ever knew the task.
    known: bool,
}

enum Verdict {
    Continue,
    Done(String),
    Failed(String),
}

impl View {
    fn new(mode: Mode, give_up: Duration) -> View {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {bar:40} {pos:>3}% {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        View {
            bar,
            mode,
            last: None,
            last_line: String::new(),
            unknown_since: None,
            give_up,
            known: false,
        }
    }

    fn update(&mut self, body: Value) -> Verdict {
        if self.last.as_ref() == Some(&body) {
            return self.verdict(&body);
        }
        let status = body["status"].as_str().unwrap_or("UNKNOWN").to_owned();
        let (percent, step, step_pct, remaining) = if body.get("encoding_progress").is_some() {
            (
                body["progress"].as_u64().unwrap_or(0),
                body["encoding_step_index"].as_u64().map(|i| {
                    format!(
                        "[{i}/{}] {}",
                        body["encoding_step_total"].as_u64().unwrap_or(0),
                        body["encoding_step_name"].as_str().unwrap_or("")
                    )
                }),
                body["encoding_step_percent"].as_u64(),
                body["encoding_remaining_seconds"].as_u64(),
            )
        } else {
            let p = &body["progress"];
            (
                p["percent"].as_u64().unwrap_or(0),
                p["step_index"].as_u64().map(|i| {
                    format!(
                        "[{i}/{}] {}",
                        p["step_total"].as_u64().unwrap_or(0),
                        p["step_name_display"]
                            .as_str()
                            .or(p["step_name"].as_str())
                            .unwrap_or("")
                    )
                }),
                p["step_percent"].as_u64(),
                p["remaining_seconds"].as_u64(),
            )
        };
        let percent = match status.as_str() {
            "READY" | "DONE" => 100,
            _ => percent,
        };
        if self.mode == Mode::Json {
            // JSON lines are this mode's output.
            crate::logging::stdout_line(format_args!(
                "{}",
                serde_json::json!({
                    "status": status, "progress": percent, "step": step,
                    "step_percent": step_pct, "remaining_seconds": remaining,
                    "attempt": body.get("attempt"), "body": body,
                })
            ));
        } else if self.mode == Mode::Lines {
            // A line per change of state or step, not per percent: a CI log stays short.
            let mut line = status.clone();
            if let Some(s) = &step {
                line = format!("{line} {s}");
            }
            if let Some(a) = body["attempt"].as_u64()
                && matches!(status.as_str(), "RETRY_WAIT" | "RETRYING")
            {
                line = format!("{line} (attempt {a} failed, retrying)");
            }
            if line != self.last_line {
                crate::logging::stdout_line(format_args!("{line} {percent}%"));
                self.last_line = line;
            }
        } else if let Some(bar) = &self.bar {
            bar.set_position(percent);
            let mut msg = status.clone();
            if let Some(s) = &step {
                msg = format!("{msg} {s}");
            }
            if let Some(p) = step_pct {
                msg = format!("{msg} {p}%");
            }
            if let Some(a) = body["attempt"].as_u64()
                && matches!(status.as_str(), "RETRY_WAIT" | "RETRYING")
            {
                msg = format!("{msg} (attempt {a} failed, retrying)");
            }
            if let Some(r) = remaining {
                msg = format!("{msg} · {}", eta(r));
            }
            bar.set_message(msg);
        }
        let verdict = self.verdict(&body);
        self.last = Some(body);
        verdict
    }

    fn verdict(&mut self, body: &Value) -> Verdict {
        let status = body["status"].as_str().unwrap_or("UNKNOWN");
        if status == "UNKNOWN" {
            let since = *self.unknown_since.get_or_insert_with(Instant::now);
            if since.elapsed() > self.give_up {
                return Verdict::Failed(unknown_message(self.give_up));
            }
            return Verdict::Continue;
        }
        self.unknown_since = None;
        self.known = true;
        let error = body["error_message"]
            .as_str()
            .or(body["error_reason"].as_str())
            .map(str::to_owned);
        match status {
            "READY" => Verdict::Done("READY".into()),
            "DONE" => match error {
                Some(e) if !e.is_empty() => Verdict::Failed(format!("DONE with an error: {e}")),
                _ => Verdict::Done(format!("DONE{}", summary(&body["result"]))),
            },
            "FAILED" | "REJECTED_BAD_INPUT" | "FALLBACK_TO_GPU" | "REVIEW_REQUIRED" => {
                Verdict::Failed(format!(
                    "{status}: {}",
                    error.unwrap_or_else(|| "no reason given".into())
                ))
            }
            _ => Verdict::Continue,
        }
    }

    fn finish(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(msg.to_owned());
        }
    }
}

fn eta(secs: u64) -> String {
    if secs < 60 {
        format!("about {secs} s left")
    } else {
        format!("about {} min left", secs.div_ceil(60))
    }
}

fn summary(result: &Value) -> String {
    let count = |k: &str| result[k].as_array().map_or(0, Vec::len);
    match result.get("created") {
        Some(created) => format!(
            ": {} created, {} duplicates, {} restored, {} failed",
            created,
            count("duplicates"),
            count("restored"),
            count("failed")
        ),
        None => String::new(),
    }
}

fn unknown_message(after: Duration) -> String {
    format!(
        "gave up after {}: the server knows nothing about this task (wrong id, another \
         tenant's, or its record expired; --give-up-after waits longer)",
        humantime::format_duration(after)
    )
}

/// Follows `target` until it ends; Ok when it succeeded.
pub async fn follow(client: &Client, target: &Target, args: &ClientArgs) -> anyhow::Result<()> {
    let mode = if args.json {
        Mode::Json
    } else if std::io::stderr().is_terminal() {
        Mode::Bar
    } else {
        Mode::Lines
    };
    let give_up = args.give_up_after.0;
    let mut view = View::new(mode, give_up);
    let outcome = {
        let updates = async {
            match follow_stream(client, target, &mut view).await {
                Ok(Some(v)) => Ok(v),
                // The stream is unavailable or keeps failing: poll instead.
                Ok(None) => follow_polling(client, target, &mut view).await,
                Err(e) => Err(e),
            }
        };
        let deadline = tokio::time::sleep(give_up);
        tokio::pin!(updates, deadline);
        tokio::select! {
            outcome = &mut updates => Some(outcome?),
            () = &mut deadline => None,
        }
    };
    // Past the deadline: keep following a task the server knows; give up on one it does not.
    let outcome = match outcome {
        Some(v) => v,
        None if !view.known => Verdict::Failed(unknown_message(give_up)),
        None => match follow_stream(client, target, &mut view).await? {
            Some(v) => v,
            None => follow_polling(client, target, &mut view).await?,
        },
    };
    match outcome {
        Verdict::Done(msg) => {
            let url = final_url(client, target).await;
            let line = match &url {
                Ok(Some(url)) => format!("{msg}: {url}"),
                Ok(None) => msg,
                Err(e) => format!("{msg} (no URL: {e:#})"),
            };
            view.finish(&line);
            match view.mode {
                // The bar's last message is the line.
                Mode::Bar => {}
                Mode::Lines => crate::logging::stdout_line(format_args!("{line}")),
                // The last JSON line: the final state, the summary line and the URL.
                Mode::Json => crate::logging::stdout_line(format_args!(
                    "{}",
                    serde_json::json!({
                        "status": view.last.as_ref().map(|b| b["status"].clone()),
                        "final": line,
                        "url": url.ok().flatten(),
                    })
                )),
            }
            Ok(())
        }
        Verdict::Failed(msg) => {
            view.finish(&msg);
            if view.mode == Mode::Lines {
                crate::logging::stdout_line(format_args!("{msg}"));
            }
            bail!("{msg}")
        }
        Verdict::Continue => bail!("stopped before the task ended"),
    }
}

/// Where a finished task's output is: a READY video's signed, playable `hls_url` (no token
/// needed); a job's result URL (with the token).
async fn final_url(client: &Client, target: &Target) -> anyhow::Result<Option<String>> {
    match target {
        Target::Video(id) => {
            let res = client
                .send(client.get(&format!("/api/v1/media/videos/{id}/")))
                .await?;
            let v: Value = res.json().await.context("reading the video")?;
            Ok(v["hls_url"].as_str().map(str::to_owned))
        }
        Target::Job(id) => {
            let res = client
                .send(client.get(&format!("/api/v1/jobs/{id}/progress/")))
                .await?;
            let v: Value = res.json().await.context("reading the job")?;
            Ok(v["result_url"]
                .as_str()
                .map(|path| format!("{}{path}", client.base)))
        }
    }
}

async fn follow_stream(
    client: &Client,
    target: &Target,
    view: &mut View,
) -> anyhow::Result<Option<Verdict>> {
    use eventsource_stream::Eventsource;
    let mut last_id: Option<String> = None;
    // The server's `retry:` (milliseconds) replaces our own back-off when it sends one.
    let mut retry: Option<Duration> = None;
    let mut failures = 0;
    while failures < 5 {
        let mut req = client.get(&target.stream_path());
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                return Ok(None);
            }
            Ok(_) => {
                failures += 1;
                tokio::time::sleep(retry.unwrap_or(Duration::from_secs(failures))).await;
                continue;
            }
            Err(e) => {
                let e = client.transport_error(e);
                // An untrusted certificate does not get better by retrying.
                if format!("{e}").contains("not trusted") {
                    return Err(e);
                }
                failures += 1;
                tokio::time::sleep(retry.unwrap_or(Duration::from_secs(failures))).await;
                continue;
            }
        };
        let mut events = res.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if let Some(r) = event.retry {
                retry = Some(r);
            }
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            if event.data.is_empty() {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
                match view.update(v) {
                    Verdict::Continue => {}
                    end => return Ok(Some(end)),
                }
            }
        }
        failures += 1;
        tokio::time::sleep(retry.unwrap_or(Duration::from_millis(500))).await;
    }
    Ok(None)
}

async fn follow_polling(
    client: &Client,
    target: &Target,
    view: &mut View,
) -> anyhow::Result<Verdict> {
    let mut etag: Option<String> = None;
    loop {
        let mut req = client.get(&target.progress_path());
        if let Some(t) = &etag {
            req = req.header("If-None-Match", t);
        }
        let res = client.send(req).await?;
        let wait = res
            .headers()
            .get("x-poll-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(3);
        if res.status() != reqwest::StatusCode::NOT_MODIFIED {
            etag = res
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = res.json().await?;
            match view.update(body) {
                Verdict::Continue => {}
                end => return Ok(end),
            }
        }
        tokio::time::sleep(Duration::from_secs(wait.clamp(1, 30))).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{TargetArg, WatchArgs};

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        watch: WatchArgs,
    }

    #[test]
    fn a_job_id_may_start_with_a_hyphen() {
        let cmd = Cmd::try_parse_from(["watch", "job", "-uX3kQ9", "--url", "http://h"])
            .expect("a job id starting with '-' is an id, not a flag");
        match cmd.watch.target {
            TargetArg::Job { id } => assert_eq!(id, "-uX3kQ9"),
            other => panic!("parsed as {other:?}"),
        }
    }
}
