//! The status sets of docs/contract.md §2–4 and their life cycles.
//!
//! Two different layers use this module differently:
//!
//! - the **database** (source of truth) checks [`VideoStatus::can_transition`] /
//!   [`JobStatus::can_transition`] before it commits a state change;
//! - the **read model** does not: it may legitimately miss intermediate states (Redis emptied,
//!   relay delayed), so it orders writes by their fence alone (see [`crate::fence`]) and only uses
//!   [`Status::is_terminal`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which kind of task a status or key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Video,
    Job,
}

/// A video's status (docs/contract.md §2, §4). `RetryWait` is new relative to the old system;
/// `Pending` is a direct upload whose bytes are not complete yet (upload init → complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VideoStatus {
    Pending,
    Uploaded,
    Processing,
    RetryWait,
    Ready,
    Failed,
}

impl VideoStatus {
    pub const ALL: [VideoStatus; 6] = [
        Self::Pending,
        Self::Uploaded,
        Self::Processing,
        Self::RetryWait,
        Self::Ready,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Uploaded => "UPLOADED",
            Self::Processing => "PROCESSING",
            Self::RetryWait => "RETRY_WAIT",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }

    /// Transitions within one generation. Leaving a terminal status needs a new generation
    /// ([`VideoStatus::can_restart`]).
    pub fn can_transition(self, to: VideoStatus) -> bool {
        use VideoStatus::*;
        matches!(
            (self, to),
            (Pending, Uploaded)
                | (Pending, Failed)
                | (Uploaded, Processing)
                | (Uploaded, Failed)
                | (Processing, Processing)
                | (Processing, RetryWait)
                | (Processing, Ready)
                | (Processing, Failed)
                | (RetryWait, Processing)
                | (RetryWait, Failed)
        )
    }

    /// A user retry starts a new generation at `Uploaded`; only a failed video may be retried.
    pub fn can_restart(self) -> bool {
        self == Self::Failed
    }
}

/// An AI/tool job's status (docs/contract.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Retrying,
    Done,
    Failed,
    RejectedBadInput,
    FallbackToGpu,
    ReviewRequired,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        Self::Pending,
        Self::Running,
        Self::Retrying,
        Self::Done,
        Self::Failed,
        Self::RejectedBadInput,
        Self::FallbackToGpu,
        Self::ReviewRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Retrying => "RETRYING",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
            Self::RejectedBadInput => "REJECTED_BAD_INPUT",
            Self::FallbackToGpu => "FALLBACK_TO_GPU",
            Self::ReviewRequired => "REVIEW_REQUIRED",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Retrying)
    }

    pub fn can_transition(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (Pending, Running) | (Running, Running) | (Running, Retrying) | (Retrying, Running) => {
                true
            }
            // Cancel, dead-letter or bad input can end a job that is not running.
            (Pending | Retrying, Failed | RejectedBadInput) => true,
            (Running, t) => t.is_terminal(),
            _ => false,
        }
    }

    /// A job that ended without success may be resubmitted as a new generation.
    pub fn can_restart(self) -> bool {
        self.is_terminal() && self != Self::Done
    }
}

/// Either kind of status; the kind must match the task it is written for. Serialized with its
/// kind (`{"kind":"video","status":"FAILED"}`) because `FAILED` exists in both sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum Status {
    Video(VideoStatus),
    Job(JobStatus),
}

impl Status {
    pub fn kind(self) -> TaskKind {
        match self {
            Status::Video(_) => TaskKind::Video,
            Status::Job(_) => TaskKind::Job,
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            Status::Video(s) => s.is_terminal(),
            Status::Job(s) => s.is_terminal(),
        }
    }

    /// Statuses during which a worker holds the task and reports step progress.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Video(VideoStatus::Processing) | Status::Job(JobStatus::Running)
        )
    }

    /// The status a new generation starts in (video PENDING or UPLOADED, job PENDING).
    pub fn is_initial(self) -> bool {
        matches!(
            self,
            Status::Video(VideoStatus::Pending | VideoStatus::Uploaded)
                | Status::Job(JobStatus::Pending)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Video(s) => s.as_str(),
            Status::Job(s) => s.as_str(),
        }
    }

    /// Parses a status name for a given kind (the wire form, e.g. `"RETRY_WAIT"`).
    pub fn parse(kind: TaskKind, s: &str) -> Option<Status> {
        match kind {
            TaskKind::Video => VideoStatus::ALL
                .into_iter()
                .find(|v| v.as_str() == s)
                .map(Status::Video),
            TaskKind::Job => JobStatus::ALL
                .into_iter()
                .find(|v| v.as_str() == s)
                .map(Status::Job),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VideoStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

/// A status name outside the contract's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown status")]
pub struct UnknownStatus;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sets_match_the_contract() {
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(JobStatus::as_str)
            .collect();
        assert_eq!(
            terminal,
            [
                "DONE",
                "FAILED",
                "REJECTED_BAD_INPUT",
                "FALLBACK_TO_GPU",
                "REVIEW_REQUIRED"
            ]
        );
        let terminal: Vec<_> = VideoStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, [VideoStatus::Ready, VideoStatus::Failed]);
    }

    #[test]
    fn no_transition_leaves_a_terminal_status() {
        for from in VideoStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in VideoStatus::ALL {
                assert!(!from.can_transition(to), "{from:?} -> {to:?}");
            }
        }
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_transition(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn wire_names_round_trip() {
        for s in VideoStatus::ALL {
            assert_eq!(
                Status::parse(TaskKind::Video, s.as_str()),
                Some(Status::Video(s))
            );
            assert_eq!(s.as_str().parse::<VideoStatus>(), Ok(s));
        }
        for s in JobStatus::ALL {
            assert_eq!(
                Status::parse(TaskKind::Job, s.as_str()),
                Some(Status::Job(s))
            );
            assert_eq!(
                serde_json::to_string(&s).expect("serializes"),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Status::parse(TaskKind::Video, "RUNNING"), None);
    }
}
