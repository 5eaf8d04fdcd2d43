//! One task's visible [`State`], its invariants (docs/contract.md §2–3), and what the read
//! model holds of a job's result ([`JobResult`]).

use serde::{Deserialize, Serialize};

use super::{Percent, ProgressError, StepProgress, Text};
use crate::{JobType, MAX_INLINE_RESULT_BYTES, Status, TaskKind, VideoStatus};

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
    /// How many attempts the task may take (written with the claim and a retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// RETRY_WAIT / RETRYING: when the next attempt may start (epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// Set by the store, never by a writer: the last progress of the attempt before this one
    /// (same generation), kept from the write that ended it until the generation changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attempt: Option<Box<PreviousAttempt>>,
    /// Set by the store, never by a writer: this attempt's own percent when it is below the
    /// shown `percent`, which holds the highest percent of the generation (docs/contract.md
    /// §3b: the bar is held at the previous attempt's value until the new attempt passes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_percent: Option<Percent>,
}

/// What a task showed when its previous attempt ended (see [`State::previous_attempt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousAttempt {
    /// The attempt (fence attempt, 1-based).
    pub attempt: u32,
    /// Its last overall percent as shown.
    pub percent: Percent,
    /// Its last step, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepProgress>,
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
            max_attempts: None,
            retry_at: None,
            previous_attempt: None,
            attempt_percent: None,
        }
    }

    /// The state as its writer sent it: this attempt's own percent, and nothing of what only a
    /// store sets ([`State::previous_attempt`], [`State::attempt_percent`]). Any order of a
    /// well-formed history ends in its newest write's state as written; what a store adds
    /// depends on the order it saw the writes in.
    pub fn as_written(&self) -> Self {
        Self {
            percent: self.attempt_percent.unwrap_or(self.percent),
            previous_attempt: None,
            attempt_percent: None,
            ..self.clone()
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
