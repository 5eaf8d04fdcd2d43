//! The migration read of the old system's keys (`StoreConfig::legacy_read`, off by default).
//!
//! On a miss, `get`/`get_many` also read, in the same round trip, the two keys
//! [`jobpulse_domain::keys::legacy_keys`] builds from the validated task (never any other key):
//!
//! - `tenant:{tid}:video:{vid}:status` / `tenant:{tid}:job:{jid}:status`: a plain string, exactly
//!   one of the contract's status names for the task's kind (`PROCESSING`, `DONE`, ...);
//! - `…:progress` (optional): a JSON object whose fields are all optional: `percent`,
//!   `step_index`, `step_total`, `step_name`, `step_name_display`, `step_percent`,
//!   `remaining_seconds` (numbers may be integers or floats, floats are truncated), and for jobs
//!   `job_type`.
//!
//! The mapped snapshot has fence `0.0.0` (below every real write, so the first write of the new
//! system replaces it) and revision 0. The percent follows the contract (UPLOADED/PENDING 0,
//! READY/DONE 100, a video below 100 otherwise); the step and remaining time are kept only while
//! PROCESSING/RUNNING and only when the step is complete and valid. A job without a `job_type` is
//! a miss: without it the staff-only rule cannot be applied. Anything else that does not fit
//! (unknown status, progress that is not a JSON object, out-of-range numbers, a state that fails
//! validation) is a miss, logged at debug.
//!
//! On a Redis Cluster the legacy keys live in other slots than the tenant's; the migration read is
//! meant for the single-node Redis the old system used.

use jobpulse_domain::{
    Fence, JobType, Percent, State, Status, StepProgress, TaskKey, TaskKind, VideoStatus,
};
use serde_json::{Map, Value};

use crate::Snapshot;

/// Maps the old keys' values to a snapshot; `None` for a miss or garbage.
pub(super) fn map(key: &TaskKey, status: Option<&str>, progress: Option<&str>) -> Option<Snapshot> {
    let status = status?;
    match try_map(key, status, progress) {
        Ok(snapshot) => Some(snapshot),
        Err(why) => {
            tracing::debug!(task = %key, why, "ignoring an unreadable legacy record");
            None
        }
    }
}

fn uint(obj: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, &'static str> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.trunc() as u64)
        }) {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err("a progress number is out of range"),
        },
    }
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    obj.get(field).and_then(Value::as_str)
}

fn try_map(key: &TaskKey, status: &str, progress: Option<&str>) -> Result<Snapshot, &'static str> {
    let kind = key.task.kind();
    let status = Status::parse(kind, status.trim()).ok_or("unknown status")?;
    let empty = Map::new();
    let parsed = match progress {
        Some(p) => match serde_json::from_str::<Value>(p) {
            Ok(Value::Object(obj)) => Some(obj),
            _ => return Err("progress is not a JSON object"),
        },
        None => None,
    };
    let obj = parsed.as_ref().unwrap_or(&empty);

    let mut state = State::new(status);
    if let Status::Video(v) = status
        && !matches!(v, VideoStatus::Uploaded | VideoStatus::Ready)
    {
        let p = uint(obj, "percent", 100)?.unwrap_or(0).min(99);
        state.percent = Percent::new(p as u8).map_err(|_| "percent")?;
    }
    if let Status::Job(_) = status
        && !status.is_initial()
        && !status.is_terminal()
    {
        let p = uint(obj, "percent", 100)?.unwrap_or(0);
        state.percent = Percent::new(p as u8).map_err(|_| "percent")?;
    }
    if kind == TaskKind::Job {
        let jt = string(obj, "job_type").ok_or("a legacy job without job_type")?;
        state.job_type = Some(JobType::parse(jt).map_err(|_| "bad job_type")?);
    }
    if status.is_active() {
        state.remaining_seconds =
            uint(obj, "remaining_seconds", u64::from(u32::MAX))?.map(|n| n as u32);
        let index = uint(obj, "step_index", 32)?;
        let total = uint(obj, "step_total", 32)?;
        let step_percent = uint(obj, "step_percent", 100)?.unwrap_or(0);
        if let (Some(index), Some(total), Some(name), Some(display)) = (
            index,
            total,
            string(obj, "step_name"),
            string(obj, "step_name_display"),
        ) {
            let percent = Percent::new(step_percent as u8).map_err(|_| "step percent")?;
            // A step our stricter schema refuses is dropped; the status is still worth showing.
            state.step = StepProgress::new(index as u8, total as u8, name, display, percent).ok();
        }
    }
    state
        .validate(kind)
        .map_err(|_| "the mapped state is invalid")?;
    Ok(Snapshot {
        fence: Fence {
            generation: 0,
            attempt: 0,
            seq: 0,
        },
        rev: 0,
        state,
    })
}

#[cfg(test)]
mod tests {
    use jobpulse_domain::{JobId, TenantId, VideoId};

    use super::*;

    fn video() -> TaskKey {
        TaskKey::video(
            TenantId::new(3).expect("valid"),
            VideoId::new(9).expect("valid"),
        )
    }

    fn job() -> TaskKey {
        TaskKey::job(
            TenantId::new(3).expect("valid"),
            JobId::parse("ab").expect("valid"),
        )
    }

    #[test]
    fn maps_a_processing_video_with_its_step() {
        let p = r#"{"percent":57.4,"step_index":4,"step_total":7,"step_name":"transcoding",
                    "step_name_display":"인코딩","step_percent":40,"remaining_seconds":84}"#;
        let s = map(&video(), Some("PROCESSING"), Some(p)).expect("maps");
        assert_eq!(s.fence.generation, 0);
        assert_eq!(s.rev, 0);
        assert_eq!(s.state.percent.get(), 57);
        assert_eq!(s.state.remaining_seconds, Some(84));
        let step = s.state.step.expect("a step");
        assert_eq!((step.index, step.total, step.percent.get()), (4, 7, 40));
    }

    #[test]
    fn follows_the_contract_percents_and_drops_what_does_not_fit() {
        let ready = map(&video(), Some("READY"), Some(r#"{"percent":3}"#)).expect("maps");
        assert_eq!(ready.state.percent, Percent::FULL);
        let almost = map(&video(), Some("PROCESSING"), Some(r#"{"percent":100}"#)).expect("maps");
        assert_eq!(almost.state.percent.get(), 99);
        let odd_step =
            r#"{"step_index":1,"step_total":7,"step_name":"Bad Name","step_name_display":"x"}"#;
        let s = map(&video(), Some("PROCESSING"), Some(odd_step)).expect("maps");
        assert!(s.state.step.is_none());
        let failed = map(&video(), Some("FAILED"), None).expect("maps");
        assert!(failed.state.step.is_none());
    }

    #[test]
    fn jobs_need_their_type() {
        assert!(map(&job(), Some("RUNNING"), Some(r#"{"percent":5}"#)).is_none());
        let s = map(
            &job(),
            Some("RUNNING"),
            Some(r#"{"percent":5,"job_type":"excel_parsing"}"#),
        )
        .expect("maps");
        assert_eq!(
            s.state.job_type.map(String::from).as_deref(),
            Some("excel_parsing")
        );
    }

    #[test]
    fn garbage_is_a_miss() {
        for (status, progress) in [
            (Some("RUNNING"), None),
            (Some("processing"), None),
            (Some("PROCESSING"), Some("not json")),
            (Some("PROCESSING"), Some("[1,2]")),
            (Some("PROCESSING"), Some(r#"{"percent":101}"#)),
            (Some("PROCESSING"), Some(r#"{"percent":-1}"#)),
            (Some("PROCESSING"), Some(r#"{"percent":"x"}"#)),
            (None, Some(r#"{"percent":5}"#)),
        ] {
            assert!(
                map(&video(), status, progress).is_none(),
                "{status:?} {progress:?}"
            );
        }
    }
}
