//! How `jobpulse watch` shows an update (a bar, lines, JSON) and decides when the task is over.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::texts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A progress bar on stderr (a terminal).
    Bar,
    /// One line per change of state on stdout (not a terminal).
    Lines,
    /// One JSON object per update on stdout.
    Json,
}

/// Renders updates; decides when the task is over.
pub(super) struct View {
    bar: Option<ProgressBar>,
    pub(super) mode: Mode,
    pub(super) last: Option<Value>,
    /// The last line printed in `Lines` mode (a line is printed when it changes).
    last_line: String,
    unknown_since: Option<Instant>,
    /// How long the task may stay UNKNOWN.
    give_up: Duration,
    /// Whether the server ever knew the task.
    pub(super) known: bool,
}

pub(super) enum Verdict {
    Continue,
    Done(String),
    Failed(String),
}

impl View {
    pub(super) fn new(mode: Mode, give_up: Duration) -> View {
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

    pub(super) fn update(&mut self, body: Value) -> Verdict {
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
                // Between attempts `progress` is null: the bar stays where the failed attempt
                // left it (docs/contract.md §3b).
                p["percent"]
                    .as_u64()
                    .or(body["previous_attempt"]["percent"].as_u64())
                    .unwrap_or(0),
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
            // The countdown and the seconds since the worker's last sign change every answer:
            // a line is printed when the rest changes, with them as of then.
            // The key is what the line shows but for those two figures: the attempt only when
            // it is shown (a first attempt's body may or may not name it) and the stalled flag.
            let shown_attempt = texts::attempt(&body, 0).and(body["attempt"].as_u64());
            let key = format!(
                "{line} {shown_attempt:?} {}",
                body["stalled"].as_bool().unwrap_or(false)
            );
            for extra in [
                texts::attempt(&body, texts::now_ms()),
                texts::liveness(&body),
            ]
            .into_iter()
            .flatten()
            {
                line = format!("{line} ({extra})");
            }
            if key != self.last_line {
                crate::logging::stdout_line(format_args!("{line} {percent}%"));
                self.last_line = key;
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
            for extra in [
                texts::attempt(&body, texts::now_ms()),
                texts::liveness(&body),
            ]
            .into_iter()
            .flatten()
            {
                msg = format!("{msg} · {extra}");
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

    pub(super) fn finish(&self, msg: &str) {
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

pub(super) fn unknown_message(after: Duration) -> String {
    format!(
        "gave up after {}: the server knows nothing about this task (wrong id, another \
         tenant's, or its record expired; --give-up-after waits longer)",
        humantime::format_duration(after)
    )
}
