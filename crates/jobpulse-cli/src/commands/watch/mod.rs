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
//!
//! The submodules: `view` (how an update is shown and when the task is over) and `follow`
//! (reading updates from the stream, else by polling).

mod follow;
mod texts;
mod view;

use std::io::IsTerminal;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use self::follow::{follow_polling, follow_stream};
use self::view::{Mode, Verdict, View, unknown_message};
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
