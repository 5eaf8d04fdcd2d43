//! How one task lives in Redis: the record hash, the task label used in the change log, and the
//! change message announced on the pub/sub channel. Decoding only; the scripts write them.
//!
//! Record hash fields (written by the scripts, see `common.lua`):
//!
//! | field | holds |
//! |---|---|
//! | `g`, `a`, `s` | the fence |
//! | `r` | the revision |
//! | `t` | `0` in progress, `1` terminal, `2` deletion tombstone |
//! | `p` | the overall percent readers see (after the within-attempt clamp) |
//! | `j` | the `State` JSON as the writer sent it (absent on a tombstone) |
//! | `qa`, `qp`, `qj` | the previous attempt of the generation: its fence attempt, last shown percent and last `State` JSON (absent when there is none) |
//!
//! `p` overrides the percent inside `j`: the script clamps without parsing JSON. What only a
//! store sets ([`State::previous_attempt`], [`State::attempt_percent`]) is rebuilt here from
//! these fields, whatever `j` says ([`settle`]).

use ::redis::Value;
use jobpulse_domain::{
    Fence, JobId, Percent, PreviousAttempt, State, TaskId, TaskKey, TenantId, VideoId,
};
use serde::Deserialize;

use crate::{Change, Snapshot, StoreError};

/// The fields `get` reads, in this order.
pub(super) const FIELDS: [&str; 10] = ["g", "a", "s", "r", "t", "p", "j", "qa", "qp", "qj"];

/// Sets what only a store decides on a state read back from the record or a change message:
/// the shown percent `p` (the writer's own, when lower, as the attempt's percent) and the
/// previous attempt.
fn settle(state: &mut State, p: Percent, previous: Option<Box<PreviousAttempt>>) {
    let own = state.percent;
    state.percent = p;
    state.attempt_percent = (own < p).then_some(own);
    state.previous_attempt = previous;
}

/// The previous attempt from its fields (its state JSON gives its step).
fn previous(a: u32, p: Percent, json: &str) -> Result<Box<PreviousAttempt>, StoreError> {
    let state: State = serde_json::from_str(json).map_err(protocol)?;
    Ok(Box::new(PreviousAttempt {
        attempt: a,
        percent: p,
        step: state.step,
    }))
}

/// `v:321` / `j:a1b2`: the task inside its tenant, as the change log and messages name it.
pub(super) fn task_label(task: &TaskId) -> String {
    match task {
        TaskId::Video(v) => format!("v:{v}"),
        TaskId::Job(j) => format!("j:{j}"),
    }
}

pub(super) fn parse_task_label(label: &str) -> Option<TaskId> {
    match label.split_once(':')? {
        ("v", id) => VideoId::parse(id).ok().map(TaskId::Video),
        ("j", id) => JobId::parse(id).ok().map(TaskId::Job),
        _ => None,
    }
}

fn protocol(what: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(what.to_string())
}

/// A bulk or simple string reply as text; `None` for nil.
pub(super) fn opt_text(v: &Value) -> Result<Option<String>, StoreError> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| protocol("reply is not UTF-8")),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        Value::Int(i) => Ok(Some(i.to_string())),
        other => Err(protocol(format_args!("expected a string, got {other:?}"))),
    }
}

pub(super) fn text(v: &Value) -> Result<String, StoreError> {
    opt_text(v)?.ok_or_else(|| protocol("expected a string, got nil"))
}

pub(super) fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::ServerError(e) => Err(protocol(format_args!("server error: {e:?}"))),
        other => Err(protocol(format_args!("expected an array, got {other:?}"))),
    }
}

fn number<T: std::str::FromStr>(field: &str, v: Option<&String>) -> Result<T, StoreError> {
    v.and_then(|s| s.parse().ok()).ok_or_else(|| {
        protocol(format_args!(
            "record field {field} is missing or not a number"
        ))
    })
}

/// What an HMGET of [`FIELDS`] found.
#[derive(Debug)]
pub(super) enum Record {
    Missing,
    Tombstone,
    Live(Box<Snapshot>),
}

impl Record {
    pub(super) fn into_snapshot(self) -> Option<Snapshot> {
        match self {
            Record::Live(s) => Some(*s),
            Record::Missing | Record::Tombstone => None,
        }
    }
}

/// Decodes an HMGET of [`FIELDS`].
pub(super) fn decode(reply: Value) -> Result<Record, StoreError> {
    let items = array(reply)?;
    if items.len() != FIELDS.len() {
        return Err(protocol("HMGET returned the wrong number of fields"));
    }
    let f = items.iter().map(opt_text).collect::<Result<Vec<_>, _>>()?;
    if f[0].is_none() {
        return Ok(Record::Missing);
    }
    if f[4].as_deref() == Some("2") {
        return Ok(Record::Tombstone);
    }
    let fence = Fence {
        generation: number("g", f[0].as_ref())?,
        attempt: number("a", f[1].as_ref())?,
        seq: number("s", f[2].as_ref())?,
    };
    let rev = number("r", f[3].as_ref())?;
    let percent = Percent::new(number("p", f[5].as_ref())?).map_err(protocol)?;
    let json = f[6]
        .as_deref()
        .ok_or_else(|| protocol("record has no state"))?;
    let mut state: State = serde_json::from_str(json).map_err(protocol)?;
    let prev = match (&f[7], &f[8], &f[9]) {
        (Some(_), Some(_), Some(j)) => Some(previous(
            number("qa", f[7].as_ref())?,
            Percent::new(number("qp", f[8].as_ref())?).map_err(protocol)?,
            j,
        )?),
        _ => None,
    };
    settle(&mut state, percent, prev);
    Ok(Record::Live(Box::new(Snapshot { fence, rev, state })))
}

/// The message `commit` in `common.lua` publishes for every applied change.
#[derive(Debug, Deserialize)]
struct ChangeMessage {
    t: TenantId,
    k: String,
    r: u64,
    c: String,
    g: u32,
    a: u32,
    s: u64,
    #[serde(default)]
    p: Option<Percent>,
    #[serde(default)]
    st: Option<State>,
    #[serde(default)]
    q: Option<PreviousMessage>,
}

/// The previous attempt in a change message.
#[derive(Debug, Deserialize)]
struct PreviousMessage {
    a: u32,
    p: Percent,
    st: State,
}

/// Rebuilds a [`Change`] from a published message; `None` for anything we did not write.
pub(super) fn parse_change(payload: &[u8]) -> Option<Change> {
    let m: ChangeMessage = serde_json::from_slice(payload).ok()?;
    let task = parse_task_label(&m.k)?;
    let fence = Fence {
        generation: m.g,
        attempt: m.a,
        seq: m.s,
    };
    let prev = m.q.map(|q| {
        Box::new(PreviousAttempt {
            attempt: q.a,
            percent: q.p,
            step: q.st.step,
        })
    });
    let snapshot = match (m.st, m.p) {
        (Some(mut state), Some(p)) => {
            settle(&mut state, p, prev);
            Some(Snapshot {
                fence,
                rev: m.r,
                state,
            })
        }
        (None, _) => None,
        (Some(_), None) => return None,
    };
    Some(Change {
        key: TaskKey { tenant: m.t, task },
        rev: m.r,
        snapshot,
        cursor: m.c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_refuse_garbage() {
        for task in [
            TaskId::Video(VideoId::new(321).expect("valid")),
            TaskId::Job(JobId::parse("a1b2").expect("valid")),
        ] {
            assert_eq!(parse_task_label(&task_label(&task)), Some(task));
        }
        for bad in ["", "v:", "v:0", "x:1", "j:a b", "v321"] {
            assert_eq!(parse_task_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn change_messages_parse_with_the_clamped_percent() {
        let msg = br#"{"t":3,"k":"v:7","r":12,"c":"5-0","g":1,"a":2,"s":3,"p":60,"st":{"kind":"video","status":"PROCESSING","percent":40}}"#;
        let c = parse_change(msg).expect("parses");
        assert_eq!(c.cursor, "5-0");
        let snap = c.snapshot.expect("a state");
        assert_eq!(snap.state.percent.get(), 60);
        assert_eq!(snap.fence, Fence::new(1, 2, 3).expect("valid"));
        let tomb = br#"{"t":3,"k":"j:ab","r":13,"c":"6-0","g":1,"a":2,"s":4}"#;
        assert!(parse_change(tomb).expect("parses").snapshot.is_none());
        assert!(parse_change(b"garbage").is_none());
        assert!(parse_change(br#"{"t":0,"k":"v:7","r":1,"c":"1-0","g":1,"a":0,"s":0}"#).is_none());
    }
}
