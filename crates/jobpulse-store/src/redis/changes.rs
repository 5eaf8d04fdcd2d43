//! `changes_since` on a tenant's change log (a capped Redis stream).
//!
//! Every applied write appends `{k: task, r: rev}` to `…:{tN}:events` with `MAXLEN ~ 1024`; the
//! entry id is the change's cursor. Reading after a cursor is one pipelined round trip: `XRANGE
//! key (cursor + COUNT n` then `XINFO STREAM key`.
//!
//! When is a cursor expired? Trimming only ever removes the oldest entries, so every trimmed id is
//! below the stream's first entry. Hence:
//!
//! - nothing was ever trimmed (`entries-added == length`): every change after any cursor is still
//!   there;
//! - otherwise a cursor at or after the first entry has lost nothing, and a cursor before it may
//!   have: **Expired**. (Redis 7.0's `max-deleted-entry-id` would be tighter but it only follows
//!   XDEL, not trimming, so it cannot be used. Without `entries-added`, on Redis < 7, we assume
//!   trimming happened.)
//!
//! Also Expired: a malformed cursor, a cursor after the stream's last id (not issued by this
//! stream, e.g. before Redis lost its data), and a missing stream (a well-formed cursor came from
//! a stream that existed, so its absence means lost data).
//!
//! XRANGE runs before XINFO: a trim in between can only make XINFO look newer, which errs on the
//! side of Expired, never on the side of claiming "no changes".
//!
//! Differences from the in-process store: cursors are stream ids (`1712345678901-0`), not
//! integers; a cursor equal to the newest trimmed entry is Expired here (the in-process store
//! knows nothing after it was lost, Redis cannot tell); a tenant that never had a change answers
//! Expired rather than an empty list (its stream does not exist); the log may hold somewhat more
//! than 1024 entries (`MAXLEN ~`).

use super::conn::RedisConn;
use ::redis::Value;
use jobpulse_domain::TaskId;

use super::record::{array, opt_text, parse_task_label, text};
use crate::{ChangesSince, StoreError};

/// A stream entry id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamId(u64, u64);

impl StreamId {
    /// Strict: two runs of ASCII digits joined by `-`, each fitting a u64.
    pub(super) fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

/// What `XINFO STREAM` tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamInfo {
    pub(super) length: u64,
    pub(super) entries_added: Option<u64>,
    pub(super) last_generated: StreamId,
    pub(super) first_entry: Option<StreamId>,
}

/// Whether changes after `cursor` may have been trimmed away (see the module docs).
pub(super) fn expired(cursor: StreamId, info: &StreamInfo) -> bool {
    if cursor > info.last_generated {
        return true;
    }
    let trimmed = info.entries_added.is_none_or(|added| added > info.length);
    if !trimmed {
        return false;
    }
    match info.first_entry {
        Some(first) => cursor < first,
        // Everything was trimmed: only a cursor at the very last id lost nothing.
        None => cursor < info.last_generated,
    }
}

fn protocol(what: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(what.to_string())
}

fn parse_info(reply: Value) -> Result<StreamInfo, StoreError> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        other => {
            let items = array(other)?;
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
    };
    let mut length = None;
    let mut entries_added = None;
    let mut last_generated = None;
    let mut first_entry = None;
    for (k, v) in pairs {
        match text(&k)?.as_str() {
            "length" => length = text(&v)?.parse().ok(),
            "entries-added" => entries_added = text(&v)?.parse().ok(),
            "last-generated-id" => last_generated = StreamId::parse(&text(&v)?),
            "first-entry" => {
                first_entry = match v {
                    Value::Nil => None,
                    entry => {
                        let parts = array(entry)?;
                        let id = parts
                            .first()
                            .ok_or_else(|| protocol("empty stream entry"))?;
                        Some(
                            StreamId::parse(&text(id)?)
                                .ok_or_else(|| protocol("bad stream entry id"))?,
                        )
                    }
                }
            }
            _ => {}
        }
    }
    Ok(StreamInfo {
        length: length.ok_or_else(|| protocol("XINFO STREAM without length"))?,
        entries_added,
        last_generated: last_generated
            .ok_or_else(|| protocol("XINFO STREAM without last-generated-id"))?,
        first_entry,
    })
}

fn parse_entries(reply: Value, limit: usize) -> Result<Vec<(String, TaskId)>, StoreError> {
    let mut out = Vec::new();
    for entry in array(reply)?.into_iter().take(limit) {
        let mut parts = array(entry)?.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            return Err(protocol("malformed stream entry"));
        };
        let id = text(&id)?;
        let fields = array(fields)?;
        let mut task = None;
        for pair in fields.chunks(2) {
            if let [k, v] = pair
                && opt_text(k)?.as_deref() == Some("k")
            {
                task = opt_text(v)?.as_deref().and_then(parse_task_label);
            }
        }
        let task = task.ok_or_else(|| protocol(format_args!("change {id} names no task")))?;
        out.push((id, task));
    }
    Ok(out)
}

/// The newest entry's id of the change log at `events` (`None`: no log). Entries are trimmed
/// only from the front, so the newest entry is the last one generated.
pub(super) async fn head(conn: &mut RedisConn, events: &str) -> Result<Option<String>, StoreError> {
    let reply: Value = ::redis::cmd("XREVRANGE")
        .arg(events)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .map_err(super::redis_error)?;
    let Some(entry) = array(reply)?.into_iter().next() else {
        return Ok(None);
    };
    let id = array(entry)?
        .into_iter()
        .next()
        .ok_or_else(|| protocol("empty stream entry"))?;
    let id = text(&id)?;
    StreamId::parse(&id)
        .map(|_| Some(id))
        .ok_or_else(|| protocol("bad stream entry id"))
}

pub(super) async fn read(
    conn: &mut RedisConn,
    events: &str,
    cursor: &str,
    limit: usize,
) -> Result<ChangesSince, StoreError> {
    let Some(after) = StreamId::parse(cursor) else {
        return Ok(ChangesSince::Expired);
    };
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors()
        .cmd("XRANGE")
        .arg(events)
        .arg(format!("({}-{}", after.0, after.1))
        .arg("+")
        .arg("COUNT")
        .arg(limit.max(1))
        .cmd("XINFO")
        .arg("STREAM")
        .arg(events);
    let replies: Vec<Value> = pipe.query_async(conn).await.map_err(super::redis_error)?;
    let mut it = replies.into_iter();
    let (Some(range), Some(info)) = (it.next(), it.next()) else {
        return Err(protocol("change log read returned too few replies"));
    };
    if let Value::ServerError(e) = &info {
        if e.details().is_some_and(|d| d.contains("no such key")) {
            return Ok(ChangesSince::Expired);
        }
        return Err(protocol(format_args!("XINFO STREAM failed: {e:?}")));
    }
    if expired(after, &parse_info(info)?) {
        return Ok(ChangesSince::Expired);
    }
    parse_entries(range, limit).map(ChangesSince::Changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        StreamId::parse(s).expect("valid id")
    }

    #[test]
    fn ids_parse_strictly_and_order_numerically() {
        assert!(id("10-0") > id("9-5"));
        assert!(id("9-10") > id("9-9"));
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1- 2",
            "+1-2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_expires_only_when_changes_after_it_may_be_gone() {
        let untrimmed = StreamInfo {
            length: 3,
            entries_added: Some(3),
            last_generated: id("30-0"),
            first_entry: Some(id("10-0")),
        };
        assert!(!expired(id("0-0"), &untrimmed));
        assert!(!expired(id("20-0"), &untrimmed));
        assert!(!expired(id("30-0"), &untrimmed));
        assert!(expired(id("30-1"), &untrimmed), "from the future");
        let trimmed = StreamInfo {
            entries_added: Some(5),
            ..untrimmed.clone()
        };
        assert!(expired(id("9-0"), &trimmed));
        assert!(!expired(id("10-0"), &trimmed));
        let old_redis = StreamInfo {
            entries_added: None,
            ..untrimmed
        };
        assert!(expired(id("9-0"), &old_redis));
        assert!(!expired(id("10-0"), &old_redis));
    }
}
