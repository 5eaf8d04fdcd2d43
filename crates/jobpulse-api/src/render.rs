//! The browser contract's JSON bodies (docs/contract.md §2–3), rendered from read-model snapshots.
//!
//! Field order follows the contract's examples; optional fields the contract marks "adds" are
//! omitted when absent, while the always-present fields (`encoding_*`, `progress`) are `null`.
//! The unknown bodies depend on the requested id only, so an unknown id and another tenant's id
//! render byte-identically.

use std::time::Duration;

use jobpulse_domain::{JobId, Status, VideoId};
use jobpulse_store::Snapshot;
use serde::Serialize;
use utoipa::ToSchema;

/// How long a running task may go without a sign of its worker before it is shown `stalled`
/// (docs/contract.md §3a). A sign of life is any write of the attempt to the read model: the
/// claim, a progress tick, or the worker's liveness write on a heartbeat when no tick went out
/// for half a heartbeat period; its time is the record's revision (the store's clock, in
/// microseconds), so the read model needs no extra field and a heartbeat that finds progress
/// flowing costs no change-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub stalled_after: Duration,
}

impl Liveness {
    /// 20 s: twice the default heartbeat period (a live worker's longest quiet gap is 1.5
    /// periods) and below the default 30 s lease, so a stalled worker shows before the reaper
    /// hands its job on.
    pub const DEFAULT_STALLED_AFTER: Duration = Duration::from_secs(20);
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            stalled_after: Self::DEFAULT_STALLED_AFTER,
        }
    }
}

/// What an answer says of the worker of a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Epoch milliseconds of the last sign of life.
    pub at_ms: u64,
    pub seconds_ago: u64,
    pub stalled: bool,
}

/// The worker's liveness for an active snapshot (PROCESSING / RUNNING), as of `now_ms`.
/// `None` also for a record of the old system (`legacy_read`, revision 0): nothing says when its
/// worker wrote.
pub fn seen(snap: &Snapshot, live: Liveness, now_ms: u64) -> Option<Seen> {
    if !snap.state.status.is_active() || snap.rev == 0 {
        return None;
    }
    let at_ms = snap.rev / 1000;
    let ago_ms = now_ms.saturating_sub(at_ms);
    let limit = u64::try_from(live.stalled_after.as_millis()).unwrap_or(u64::MAX);
    Some(Seen {
        at_ms,
        seconds_ago: ago_ms / 1000,
        stalled: ago_ms > limit,
    })
}

/// Epoch milliseconds now (the API host's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `snap` is shown stalled now (the ETag and the SSE hub ask).
pub fn is_stalled(snap: &Snapshot, live: Liveness) -> bool {
    seen(snap, live, now_ms()).is_some_and(|s| s.stalled)
}

/// Path of the full result of a job (docs/contract.md §3).
pub fn result_url(job: &JobId) -> String {
    format!("/api/v1/jobs/{job}/result/")
}

/// `GET /api/v1/media/videos/{id}/progress/` for a known video.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoProgress<'a> {
    pub id: i64,
    #[schema(example = "PROCESSING")]
    pub status: &'static str,
    /// Always equals `encoding_progress`.
    pub progress: u8,
    pub encoding_progress: u8,
    pub encoding_remaining_seconds: Option<u32>,
    pub encoding_step_index: Option<u8>,
    pub encoding_step_total: Option<u8>,
    /// Display name of the step, e.g. `인코딩`.
    pub encoding_step_name: Option<&'a str>,
    pub encoding_step_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(flatten)]
    pub live: LiveFields,
    #[serde(flatten)]
    pub retry: RetryFields<'a>,
}

/// Added while PROCESSING / RUNNING (docs/contract.md §3a): when the worker last showed it is
/// alive, and whether that is too long ago. All three are present or all absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveFields {
    /// Epoch milliseconds of the worker's last sign of life (a write of its attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_seen_at: Option<u64>,
    /// Whole seconds since then, as of this answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_seen_seconds_ago: Option<u64>,
    /// No sign of the worker for longer than the server's threshold (default 20 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<bool>,
}

impl LiveFields {
    fn of(snap: &Snapshot, live: Liveness) -> Self {
        let seen = seen(snap, live, now_ms());
        Self {
            worker_seen_at: seen.map(|s| s.at_ms),
            worker_seen_seconds_ago: seen.map(|s| s.seconds_ago),
            stalled: seen.map(|s| s.stalled),
        }
    }
}

/// Retry-aware progress (docs/contract.md §3b), each omitted when it does not apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryFields<'a> {
    /// How many attempts the task may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// RETRY_WAIT / RETRYING: when the next attempt may start (epoch milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// What the previous attempt of this generation last showed (not on terminal answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_attempt: Option<PreviousAttemptBody<'a>>,
    /// PROCESSING / RUNNING: this attempt's own overall percent. The contract's percent
    /// (`progress`, `encoding_progress`, `progress.percent`) never goes back within a
    /// generation: after a retry it holds the previous attempt's value until this passes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_percent: Option<u8>,
    /// PROCESSING / RUNNING: `true` when this attempt is a retry (`previous_attempt` is set):
    /// its own percent started again from the beginning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_changed: Option<bool>,
}

/// `previous_attempt` of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviousAttemptBody<'a> {
    pub attempt: u32,
    /// Its last overall percent as shown.
    pub percent: u8,
    /// Its last step: machine name, display name, index, total and the step's percent.
    pub step: Option<&'a str>,
    pub step_name: Option<&'a str>,
    pub step_index: Option<u8>,
    pub step_total: Option<u8>,
    pub step_percent: Option<u8>,
}

impl<'a> RetryFields<'a> {
    fn of(s: &'a jobpulse_domain::State) -> Self {
        let active = s.status.is_active();
        let previous = s
            .previous_attempt
            .as_ref()
            .filter(|_| !s.status.is_terminal());
        Self {
            max_attempts: s.max_attempts,
            retry_at: s.retry_at,
            previous_attempt: previous.map(|p| {
                let step = p.step.as_ref();
                PreviousAttemptBody {
                    attempt: p.attempt,
                    percent: p.percent.get(),
                    step: step.map(|x| x.name.as_str()),
                    step_name: step.map(|x| x.display.as_str()),
                    step_index: step.map(|x| x.index),
                    step_total: step.map(|x| x.total),
                    step_percent: step.map(|x| x.percent.get()),
                }
            }),
            attempt_percent: active.then(|| s.attempt_percent.unwrap_or(s.percent).get()),
            attempt_changed: active.then_some(previous.is_some()),
        }
    }
}

/// The video answer when the read model knows nothing (or the id is another tenant's).
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoUnknown {
    pub id: i64,
    #[schema(example = "UNKNOWN")]
    pub state: &'static str,
    #[schema(example = "UNKNOWN")]
    pub status: &'static str,
    pub progress: u8,
    pub encoding_progress: u8,
    pub encoding_remaining_seconds: Option<u32>,
    pub encoding_step_index: Option<u8>,
    pub encoding_step_total: Option<u8>,
    pub encoding_step_name: Option<String>,
    pub encoding_step_percent: Option<u8>,
}

/// `progress` of a RUNNING job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStepProgress<'a> {
    /// Machine name of the step, e.g. `enrolling`.
    pub step: Option<&'a str>,
    /// Overall percent.
    pub percent: u8,
    pub step_index: Option<u8>,
    pub step_total: Option<u8>,
    pub step_name: Option<&'a str>,
    pub step_name_display: Option<&'a str>,
    pub step_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<u32>,
}

/// `GET /api/v1/jobs/{job_id}/progress/` for a known job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress<'a> {
    pub job_id: &'a str,
    pub job_type: &'a str,
    #[schema(example = "RUNNING")]
    pub status: &'static str,
    /// An object only while RUNNING, otherwise null.
    pub progress: Option<JobStepProgress<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<std::borrow::Cow<'a, serde_json::Map<String, serde_json::Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(flatten)]
    pub live: LiveFields,
    #[serde(flatten)]
    pub retry: RetryFields<'a>,
}

/// The job answer when the read model knows nothing (or the id is another tenant's).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobUnknown<'a> {
    pub job_id: &'a str,
    #[schema(example = "UNKNOWN")]
    pub status: &'static str,
    pub message: &'static str,
}

const UNKNOWN_JOB_MESSAGE: &str =
    "No progress is known for this job: it may not exist, or its record has expired.";

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

/// The video body for a snapshot (must be a video snapshot; a job snapshot renders as unknown).
pub fn video(id: VideoId, snap: Option<&Snapshot>, live: Liveness) -> Vec<u8> {
    let Some(snap) = snap.filter(|s| matches!(s.state.status, Status::Video(_))) else {
        return video_unknown(id);
    };
    let s = &snap.state;
    let step = s.step.as_ref();
    let pct = s.percent.get();
    to_json(&VideoProgress {
        id: id.get(),
        status: s.status.as_str(),
        progress: pct,
        encoding_progress: pct,
        encoding_remaining_seconds: s.remaining_seconds,
        encoding_step_index: step.map(|x| x.index),
        encoding_step_total: step.map(|x| x.total),
        encoding_step_name: step.map(|x| x.display.as_str()),
        encoding_step_percent: step.map(|x| x.percent.get()),
        hls_path: s.hls_path.as_ref().map(|t| t.as_str()),
        duration: s.duration,
        error_reason: s.error.as_ref().map(|t| t.as_str()),
        attempt: s.attempt,
        live: LiveFields::of(snap, live),
        retry: RetryFields::of(s),
    })
}

pub fn video_unknown(id: VideoId) -> Vec<u8> {
    to_json(&VideoUnknown {
        id: id.get(),
        state: "UNKNOWN",
        status: "UNKNOWN",
        progress: 0,
        encoding_progress: 0,
        encoding_remaining_seconds: None,
        encoding_step_index: None,
        encoding_step_total: None,
        encoding_step_name: None,
        encoding_step_percent: None,
    })
}

/// The job body for a snapshot. A result with sealed credentials (a DONE import) shows them
/// opened with `seal` while they have not expired (`crate::credentials`); only staff ever get
/// such a job's body.
pub fn job(
    id: &JobId,
    snap: Option<&Snapshot>,
    seal: Option<&jobpulse_db::CredentialSeal>,
    live: Liveness,
) -> Vec<u8> {
    let Some(snap) = snap.filter(|s| matches!(s.state.status, Status::Job(_))) else {
        return job_unknown(id);
    };
    let s = &snap.state;
    let running = s.status.is_active();
    let progress = running.then(|| {
        let step = s.step.as_ref();
        JobStepProgress {
            step: step.map(|x| x.name.as_str()),
            percent: s.percent.get(),
            step_index: step.map(|x| x.index),
            step_total: step.map(|x| x.total),
            step_name: step.map(|x| x.name.as_str()),
            step_name_display: step.map(|x| x.display.as_str()),
            step_percent: step.map(|x| x.percent.get()),
            remaining_seconds: s.remaining_seconds,
        }
    });
    let terminal = s.status.is_terminal();
    let result = s.result.as_ref().filter(|_| terminal);
    to_json(&JobProgress {
        job_id: id.as_str(),
        job_type: s.job_type.as_ref().map_or("", |t| t.as_str()),
        status: s.status.as_str(),
        progress,
        result: result.and_then(|r| r.inline.as_ref()).map(|m| {
            if crate::credentials::has_sealed(m) {
                std::borrow::Cow::Owned(crate::credentials::reveal(
                    m.clone(),
                    id.as_str(),
                    seal,
                    crate::credentials::now_ms(),
                ))
            } else {
                std::borrow::Cow::Borrowed(m)
            }
        }),
        result_url: result.filter(|r| r.full_available).map(|_| result_url(id)),
        error_message: s.error.as_ref().map(|t| t.as_str()),
        attempt: s.attempt,
        live: LiveFields::of(snap, live),
        retry: RetryFields::of(s),
    })
}

pub fn job_unknown(id: &JobId) -> Vec<u8> {
    to_json(&JobUnknown {
        job_id: id.as_str(),
        status: "UNKNOWN",
        message: UNKNOWN_JOB_MESSAGE,
    })
}
