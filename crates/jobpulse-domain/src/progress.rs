//! The progress schema: what a task's visible state may contain, with its bounds.
//!
//! [`State`] is what the read model stores for one task and what the progress endpoints render.
//! [`State::validate`] holds the invariants docs/contract.md states (UPLOADED is 0 %, READY is 100 %,
//! step detail only while a worker is active, results only on terminal job states, ...), so a
//! state that reached a store is always renderable.

use serde::{Deserialize, Serialize};

use crate::{JobType, MAX_INLINE_RESULT_BYTES, Status, TaskKind, VideoStatus};

/// Why a progress value or state was refused. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("percent must be an integer from 0 to 100")]
    Percent,
    #[error("step index must be between 1 and step total (at most 32)")]
    StepIndex,
    #[error("{field} must be 1 to {max} characters without control characters")]
    Text { field: &'static str, max: usize },
    #[error("step name must be 1 to 32 characters of a-z, 0-9 or '_'")]
    StepName,
    #[error("status {status} does not belong to a {kind} task")]
    KindMismatch {
        status: &'static str,
        kind: &'static str,
    },
    #[error("{0}")]
    Invariant(&'static str),
    #[error("result must be a JSON object")]
    ResultNotObject,
}

/// Overall or step percent, 0..=100.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const FULL: Percent = Percent(100);

    pub fn new(v: u8) -> Result<Self, ProgressError> {
        if v <= 100 {
            Ok(Self(v))
        } else {
            Err(ProgressError::Percent)
        }
    }

    /// Rounds down a fraction in `[0, 1]`; out-of-range and NaN inputs are clamped.
    pub fn from_fraction(f: f64) -> Self {
        if f.is_nan() {
            return Self::ZERO;
        }
        // Truncation is intended: 99.9 % is not yet 100 %.
        Self((f.clamp(0.0, 1.0) * 100.0).floor() as u8)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Percent {
    type Error = ProgressError;
    fn try_from(v: u8) -> Result<Self, ProgressError> {
        Self::new(v)
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> u8 {
        p.0
    }
}

/// A bounded, printable text: no control characters other than newline and tab.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// Longest error reason or message kept, in characters.
    pub const MAX_MESSAGE: usize = 2000;
    /// Longest step display name, in characters.
    pub const MAX_DISPLAY: usize = 64;

    /// Refuses a text that is empty, too long or contains control characters.
    pub fn parse(s: &str, field: &'static str, max: usize) -> Result<Self, ProgressError> {
        let n = s.chars().count();
        let clean = s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
        if n == 0 || n > max || !clean {
            return Err(ProgressError::Text { field, max });
        }
        Ok(Self(s.to_owned()))
    }

    /// For texts we produce ourselves (a tool's stderr, an error chain): control characters become
    /// spaces and the text is cut at `max` characters with an ellipsis, never refused.
    pub fn lossy(s: &str, max: usize) -> Self {
        let mut out: String = s
            .trim()
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .take(max)
            .collect();
        if s.trim().chars().count() > max {
            out.pop();
            out.push('…');
        }
        if out.is_empty() {
            out.push('-');
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a worker is inside its pipeline: `[step index/total] name`, with the step's own percent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepProgress {
    pub index: u8,
    pub total: u8,
    /// Machine name, e.g. `transcoding`.
    pub name: String,
    /// Display name, e.g. `인코딩`.
    pub display: Text,
    pub percent: Percent,
}

impl StepProgress {
    pub fn new(
        index: u8,
        total: u8,
        name: &str,
        display: &str,
        percent: Percent,
    ) -> Result<Self, ProgressError> {
        let step = Self {
            index,
            total,
            name: name.to_owned(),
            display: Text::parse(display, "step display name", Text::MAX_DISPLAY)?,
            percent,
        };
        step.validate()?;
        Ok(step)
    }

    fn validate(&self) -> Result<(), ProgressError> {
        if self.index == 0 || self.index > self.total || self.total > 32 {
            return Err(ProgressError::StepIndex);
        }
        let name_ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(ProgressError::StepName);
        }
        // `display` is a `Text`, but one that came through serde skipped `Text::parse`.
        Text::parse(
            self.display.as_str(),
            "step display name",
            Text::MAX_DISPLAY,
        )?;
        Ok(())
    }
}

/// What the read model holds of a job's result.
///
/// A result whose compact JSON is at most [`MAX_INLINE_RESULT_BYTES`] is kept inline. A larger
/// one, or one holding secrets (the excel import's credentials), lives in the database; the read
/// model then holds `full_available = true` (rendered as `result_url`) and, optionally, an inline
/// summary that is safe for every reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub inline: Option<serde_json::Map<String, serde_json::Value>>,
    pub full_available: bool,
}

impl JobResult {
    /// The whole result, inline when it fits, otherwise only a reference. Never dropped silently.
    pub fn whole(value: serde_json::Value) -> Result<Self, ProgressError> {
        let serde_json::Value::Object(map) = value else {
            return Err(ProgressError::ResultNotObject);
        };
        if fits_inline(&map) {
            Ok(Self {
                inline: Some(map),
                full_available: false,
            })
        } else {
            Ok(Self {
                inline: None,
                full_available: true,
            })
        }
    }

    /// A public summary inline (when it fits) plus a reference to the full result.
    pub fn summary_with_full(summary: serde_json::Value) -> Result<Self, ProgressError> {
        let serde_json::Value::Object(map) = summary else {
            return Err(ProgressError::ResultNotObject);
        };
        Ok(Self {
            inline: fits_inline(&map).then_some(map),
            full_available: true,
        })
    }

    fn validate(&self) -> Result<(), ProgressError> {
        match &self.inline {
            Some(map) if !fits_inline(map) => Err(ProgressError::Invariant(
                "inline result is larger than 10 KB",
            )),
            None if !self.full_available => Err(ProgressError::Invariant(
                "a result needs an inline value or a full result",
            )),
            _ => Ok(()),
        }
    }
}

fn fits_inline(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    serde_json::to_vec(map).is_ok_and(|v| v.len() <= MAX_INLINE_RESULT_BYTES)
}

/// One task's visible state: what a progress endpoint renders and what the read model stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(flatten)]
    pub status: Status,
    /// Overall percent (`progress`/`encoding_progress` for videos, `progress.percent` for jobs).
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<u32>,
    /// The attempt shown to users (1-based) while retrying or after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Jobs only: their type (needed at read time for the staff-only rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<JobType>,
    /// Videos only, READY: storage key of the master playlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_path: Option<Text>,
    /// Videos only, READY: whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Failure reason (video `error_reason`, job `error_message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Text>,
    /// Jobs only, terminal: the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
}

impl State {
    /// A bare state of `status` with everything else empty and the percent the contract implies
    /// (100 for READY and DONE, 0 otherwise).
    pub fn new(status: Status) -> Self {
        let percent = match status {
            Status::Video(VideoStatus::Ready) | Status::Job(crate::JobStatus::Done) => {
                Percent::FULL
            }
            _ => Percent::ZERO,
        };
        Self {
            status,
            percent,
            step: None,
            remaining_seconds: None,
            attempt: None,
            job_type: None,
            hls_path: None,
            duration: None,
            error: None,
            result: None,
        }
    }

    pub fn video(status: VideoStatus) -> Self {
        Self::new(Status::Video(status))
    }

    pub fn job(status: crate::JobStatus, job_type: JobType) -> Self {
        Self {
            job_type: Some(job_type),
            ..Self::new(Status::Job(status))
        }
    }

    /// Checks the invariants of docs/contract.md §2–3 for a task of `kind`.
    pub fn validate(&self, kind: TaskKind) -> Result<(), ProgressError> {
        use ProgressError::Invariant;
        if self.status.kind() != kind {
            return Err(ProgressError::KindMismatch {
                status: self.status.as_str(),
                kind: match kind {
                    TaskKind::Video => "video",
                    TaskKind::Job => "job",
                },
            });
        }
        if let Some(step) = &self.step {
            step.validate()?;
            if !self.status.is_active() {
                return Err(Invariant(
                    "step detail is only allowed while PROCESSING or RUNNING",
                ));
            }
        }
        for t in [&self.hls_path, &self.error].into_iter().flatten() {
            Text::parse(t.as_str(), "text", Text::MAX_MESSAGE)?;
        }
        match self.status {
            Status::Video(v) => {
                if self.job_type.is_some() || self.result.is_some() {
                    return Err(Invariant("a video has no job type or result"));
                }
                match v {
                    VideoStatus::Pending | VideoStatus::Uploaded
                        if self.percent != Percent::ZERO =>
                    {
                        return Err(Invariant("PENDING and UPLOADED are always 0 %"));
                    }
                    VideoStatus::Ready if self.percent != Percent::FULL => {
                        return Err(Invariant("READY is always 100 %"));
                    }
                    VideoStatus::Uploaded
                    | VideoStatus::Processing
                    | VideoStatus::RetryWait
                    | VideoStatus::Failed
                        if self.percent == Percent::FULL =>
                    {
                        return Err(Invariant("a video reaches 100 % only at READY"));
                    }
                    _ => {}
                }
                if v != VideoStatus::Ready && (self.hls_path.is_some() || self.duration.is_some()) {
                    return Err(Invariant("hls_path and duration belong to READY"));
                }
            }
            Status::Job(j) => {
                if self.job_type.is_none() {
                    return Err(Invariant("a job state needs its job type"));
                }
                if self.hls_path.is_some() || self.duration.is_some() {
                    return Err(Invariant("a job has no hls_path or duration"));
                }
                if let Some(r) = &self.result {
                    if !j.is_terminal() {
                        return Err(Invariant("a result belongs to a terminal job state"));
                    }
                    r.validate()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobStatus;

    #[test]
    fn percent_bounds() {
        assert!(Percent::new(100).is_ok());
        assert!(Percent::new(101).is_err());
        assert_eq!(Percent::from_fraction(0.999).get(), 99);
        assert_eq!(Percent::from_fraction(f64::NAN).get(), 0);
        assert_eq!(Percent::from_fraction(7.0).get(), 100);
        assert!(serde_json::from_str::<Percent>("101").is_err());
    }

    #[test]
    fn texts_are_bounded_and_printable() {
        assert!(Text::parse("ok", "x", 5).is_ok());
        assert!(Text::parse("", "x", 5).is_err());
        assert!(Text::parse("toolong", "x", 5).is_err());
        assert!(Text::parse("a\u{0}b", "x", 5).is_err());
        assert_eq!(Text::lossy("a\u{1b}[31mb", 100).as_str(), "a [31mb");
        assert_eq!(Text::lossy("abcdef", 4).as_str(), "abc…");
        assert_eq!(Text::lossy("  ", 4).as_str(), "-");
    }

    #[test]
    fn steps_are_validated() {
        assert!(StepProgress::new(4, 7, "transcoding", "인코딩", Percent::ZERO).is_ok());
        assert!(StepProgress::new(0, 7, "x", "x", Percent::ZERO).is_err());
        assert!(StepProgress::new(8, 7, "x", "x", Percent::ZERO).is_err());
        assert!(StepProgress::new(1, 7, "Bad Name", "x", Percent::ZERO).is_err());
    }

    #[test]
    fn large_results_become_references() {
        let small = serde_json::json!({"created": 3});
        let r = JobResult::whole(small).expect("object");
        assert!(r.inline.is_some() && !r.full_available);
        let big = serde_json::json!({"blob": "x".repeat(MAX_INLINE_RESULT_BYTES)});
        let r = JobResult::whole(big).expect("object");
        assert!(r.inline.is_none() && r.full_available);
        assert!(JobResult::whole(serde_json::json!([1])).is_err());
    }

    #[test]
    fn state_invariants() {
        let mut s = State::video(VideoStatus::Uploaded);
        assert!(s.validate(TaskKind::Video).is_ok());
        assert!(s.validate(TaskKind::Job).is_err());
        s.percent = Percent::new(5).expect("valid");
        assert!(s.validate(TaskKind::Video).is_err());

        let mut p = State::video(VideoStatus::Processing);
        p.percent = Percent::FULL;
        assert!(p.validate(TaskKind::Video).is_err(), "100 % only at READY");

        let mut q = State::video(VideoStatus::Failed);
        q.step = Some(StepProgress::new(1, 7, "presigning", "준비", Percent::ZERO).expect("ok"));
        assert!(q.validate(TaskKind::Video).is_err(), "no steps on FAILED");

        let jt = JobType::parse("excel_parsing").expect("valid");
        let mut j = State::job(JobStatus::Running, jt.clone());
        j.result = JobResult::whole(serde_json::json!({})).ok();
        assert!(
            j.validate(TaskKind::Job).is_err(),
            "result only when terminal"
        );
        let mut d = State::job(JobStatus::Done, jt);
        d.result = JobResult::whole(serde_json::json!({"created": 1})).ok();
        assert!(d.validate(TaskKind::Job).is_ok());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = State::video(VideoStatus::Processing);
        s.percent = Percent::new(57).expect("valid");
        s.step =
            StepProgress::new(4, 7, "transcoding", "인코딩", Percent::new(40).expect("v")).ok();
        s.remaining_seconds = Some(84);
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(
            json.contains(r#""kind":"video","status":"PROCESSING""#),
            "{json}"
        );
        let back: State = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, s);
    }
}
