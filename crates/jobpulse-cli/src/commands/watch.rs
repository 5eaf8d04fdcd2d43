//! `jobpulse watch video ID | job ID`: follow a task to its end with a progress bar.
//!
//! Uses the SSE stream (resuming with `Last-Event-ID` after a drop) and falls back to polling
//! with the server's `X-Poll-After` hint and `If-None-Match` when the stream is unavailable.
//! Exits 0 when the task succeeds (READY; DONE without an error message) and non-zero with the
//! reason when it fails.

use std::time::{Duration, Instant};

use anyhow::bail;
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
    follow(&client, &target, args.client.json).await
}

/// How long a task may stay UNKNOWN before we give up.
const UNKNOWN_LIMIT: Duration = Duration::from_secs(60);

/// Renders updates; decides when the task is over.
struct View {
    bar: Option<ProgressBar>,
    json: bool,
    last: Option<Value>,
    unknown_since: Option<Instant>,
}

enum Verdict {
    Continue,
    Done(String),
    Failed(String),
}

impl View {
    fn new(json: bool) -> View {
        let bar = (!json).then(|| {
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
            json,
            last: None,
            unknown_since: None,
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
        if self.json {
            #[allow(clippy::print_stdout)] // JSON lines are this mode's output.
            {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": status, "progress": percent, "step": step,
                        "step_percent": step_pct, "remaining_seconds": remaining,
                        "attempt": body.get("attempt"), "body": body,
                    })
                );
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
            if since.elapsed() > UNKNOWN_LIMIT {
                return Verdict::Failed(
                    "the server knows nothing about this task (wrong id or tenant?)".into(),
                );
            }
            return Verdict::Continue;
        }
        self.unknown_since = None;
        let error = body["error_message"]
            .as_str()
            .or(body["error_reason"].as_str())
            .map(str::to_owned);
        match status {
            "READY" => Verdict::Done(format!(
                "READY: {} ({} s)",
                body["hls_path"].as_str().unwrap_or("?"),
                body["duration"].as_u64().unwrap_or(0)
            )),
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

/// Follows `target` until it ends; Ok when it succeeded.
pub async fn follow(client: &Client, target: &Target, json: bool) -> anyhow::Result<()> {
    let mut view = View::new(json);
    let outcome = match follow_stream(client, target, &mut view).await {
        Ok(Some(v)) => v,
        // The stream is unavailable or keeps failing: poll instead.
        Ok(None) | Err(_) => follow_polling(client, target, &mut view).await?,
    };
    match outcome {
        Verdict::Done(msg) => {
            view.finish(&msg);
            if view.bar.is_none() && !json {
                eprintln!("{msg}");
            }
            Ok(())
        }
        Verdict::Failed(msg) => {
            view.finish(&msg);
            bail!("{msg}")
        }
        Verdict::Continue => bail!("stopped before the task ended"),
    }
}

async fn follow_stream(
    client: &Client,
    target: &Target,
    view: &mut View,
) -> anyhow::Result<Option<Verdict>> {
    let mut last_id: Option<String> = None;
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
            _ => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(failures)).await;
                continue;
            }
        };
        let mut body = res.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        last_id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    match view.update(v) {
                        Verdict::Continue => {}
                        end => return Ok(Some(end)),
                    }
                }
            }
        }
        failures += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
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
