//! The write scripts (one per write kind) and how a [`Write`] becomes their arguments and their
//! reply becomes an [`Outcome`].
//!
//! Each script is `common.lua` followed by its own file, so the three share one transcription of
//! the fence rule; before both, one line names the publish command (`PUBLISH` to the one changes
//! channel on a single node, `SPUBLISH` to the tenant's shard channel on a cluster). They run by EVALSHA; after a Redis restart or `SCRIPT FLUSH` the server answers
//! NOSCRIPT and we load them and run the refused calls again (a refused call did not run, so
//! running it again is safe).

use ::redis::{RedisError, Script, ScriptInvocation, ServerErrorKind, Value};
use jobpulse_domain::fence::MAX_SEQ;
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{Fence, Origin, Outcome, RejectReason, Write, WriteKind};

use super::conn::RedisConn;
use super::record::{array, task_label, text};
use crate::{StoreConfig, StoreError, TENANT_LOG_LEN};

/// Everything a script needs besides the write itself, rendered once at connect.
#[derive(Debug, Clone)]
pub(super) struct WriteContext {
    pub(super) keys: KeySpace,
    live_ttl_ms: String,
    terminal_ttl_ms: String,
    tombstone_ttl_ms: String,
    /// `None`: each tenant's own channel (a cluster).
    channel: Option<String>,
}

/// Milliseconds for PEXPIRE, at least 1 (PEXPIRE 0 would delete the record at once).
fn millis(d: std::time::Duration) -> String {
    d.as_millis().clamp(1, u128::from(u64::MAX)).to_string()
}

impl WriteContext {
    pub(super) fn new(keys: KeySpace, config: &StoreConfig, sharded: bool) -> Self {
        Self {
            live_ttl_ms: millis(config.live_ttl),
            terminal_ttl_ms: config
                .terminal_retention
                .map_or_else(|| "0".to_owned(), millis),
            tombstone_ttl_ms: millis(config.tombstone_ttl),
            channel: (!sharded).then(|| keys.changes_channel()),
            keys,
        }
    }
}

#[derive(Debug)]
pub(super) struct Scripts {
    set: Script,
    delete: Script,
    heartbeat: Script,
    /// On a cluster: `WAIT 1 <ms>` ends every write pipeline (see `RedisOptions`).
    replica_ack: Option<u64>,
}

/// What a write pipeline answered: one reply per call, and on a cluster how many replicas
/// acknowledged the writes.
#[derive(Debug)]
pub(super) struct Replies {
    pub(super) replies: Vec<Value>,
    pub(super) replicas: Option<i64>,
}

impl Scripts {
    /// `cluster`: publish with `SPUBLISH` to the tenant's channel, and wait this long for a
    /// replica to acknowledge each write pipeline.
    pub(super) fn new(cluster: Option<std::time::Duration>) -> Self {
        let publish = if cluster.is_some() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let script = |own: &str| {
            Script::new(&format!(
                "local PUBLISH = '{publish}'\n{}{own}",
                include_str!("common.lua")
            ))
        };
        Self {
            set: script(include_str!("set.lua")),
            delete: script(include_str!("delete.lua")),
            heartbeat: script(include_str!("heartbeat.lua")),
            replica_ack: cluster.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
        }
    }

    /// One pipeline of calls, ended by `WAIT` on a cluster; the WAIT's answer is split off.
    async fn send<'c, 's: 'c>(
        &self,
        conn: &mut RedisConn,
        calls: impl Iterator<Item = &'c ScriptInvocation<'s>>,
    ) -> Result<Replies, RedisError> {
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        for call in calls {
            pipe.invoke_script(call);
        }
        if let Some(ms) = self.replica_ack {
            pipe.cmd("WAIT").arg(1).arg(ms);
        }
        let mut replies: Vec<Value> = pipe.query_async(conn).await?;
        let replicas = match self.replica_ack {
            Some(_) => match replies.pop() {
                Some(Value::Int(n)) => Some(n),
                _ => Some(0),
            },
            None => None,
        };
        Ok(Replies { replies, replicas })
    }

    /// `SCRIPT LOAD`s every script (on a cluster the client sends it to every node).
    pub(super) async fn load(&self, conn: &mut RedisConn) -> Result<(), RedisError> {
        for script in [&self.set, &self.delete, &self.heartbeat] {
            script.load_async(conn).await?;
        }
        Ok(())
    }

    /// The script call for one write.
    pub(super) fn invocation(
        &self,
        ctx: &WriteContext,
        w: &Write,
    ) -> Result<ScriptInvocation<'_>, StoreError> {
        // Fence::new guarantees this; a hand-built fence could still exceed what Lua's doubles
        // hold exactly, and then the script would compare the wrong numbers.
        if w.fence.seq > MAX_SEQ {
            return Err(StoreError::Protocol(format!(
                "fence {} has a seq of 2^53 or more",
                w.fence
            )));
        }
        let f = w.fence;
        let record = ctx.keys.record(&w.key);
        let script = match &w.kind {
            WriteKind::Set(_) => &self.set,
            WriteKind::Delete => &self.delete,
            WriteKind::Heartbeat => &self.heartbeat,
        };
        let mut inv = script.prepare_invoke();
        inv.key(record);
        if !matches!(w.kind, WriteKind::Heartbeat) {
            inv.key(ctx.keys.tenant_events(w.key.tenant));
        }
        let origin = match w.origin {
            Origin::Database => "d",
            Origin::External => "x",
        };
        inv.arg(f.generation)
            .arg(f.attempt)
            .arg(f.seq)
            .arg(&ctx.live_ttl_ms);
        if matches!(w.kind, WriteKind::Heartbeat) {
            inv.arg(origin);
            return Ok(inv);
        }
        inv.arg(&ctx.terminal_ttl_ms)
            .arg(&ctx.tombstone_ttl_ms)
            .arg(task_label(&w.key.task))
            .arg(w.key.tenant.get())
            .arg(match &ctx.channel {
                Some(one) => one.clone(),
                None => ctx.keys.tenant_changes_channel(w.key.tenant),
            })
            .arg(TENANT_LOG_LEN);
        if let WriteKind::Set(state) = &w.kind {
            let json = serde_json::to_string(state)
                .map_err(|e| StoreError::Protocol(format!("cannot encode the state: {e}")))?;
            inv.arg(if state.status.is_terminal() { "1" } else { "0" })
                .arg(if state.status.is_initial() { "1" } else { "0" })
                .arg(state.percent.get())
                .arg(json);
        }
        inv.arg(origin);
        Ok(inv)
    }

    /// Runs the calls in one pipeline (one round trip), loading the scripts if Redis lost them.
    /// Per-call server errors stay in the returned replies.
    pub(super) async fn run(
        &self,
        conn: &mut RedisConn,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Replies, RedisError> {
        let mut first = self.send(conn, calls.iter()).await?;
        let refused: Vec<usize> = first
            .replies
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
            })
            .map(|(i, _)| i)
            .collect();
        if refused.is_empty() {
            return Ok(first);
        }
        tracing::info!(
            calls = refused.len(),
            "Redis does not know the write scripts (restarted or flushed); loading them"
        );
        self.load(conn).await?;
        let retried = self.send(conn, refused.iter().map(|&i| &calls[i])).await?;
        for (i, v) in refused.into_iter().zip(retried.replies) {
            first.replies[i] = v;
        }
        first.replicas = retried.replicas;
        Ok(first)
    }
}

/// A script reply: `{'applied', rev[, cursor]}`, `{'stale', g, a, s, rev}` or
/// `{'rejected', reason}`.
pub(super) fn parse_outcome(reply: Value) -> Result<Outcome, StoreError> {
    let items = array(reply)?;
    let texts = items.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    let bad = || StoreError::Protocol(format!("unexpected script reply {texts:?}"));
    let num = |i: usize| -> Result<u64, StoreError> {
        texts.get(i).and_then(|t| t.parse().ok()).ok_or_else(bad)
    };
    let small = |i: usize| -> Result<u32, StoreError> {
        texts.get(i).and_then(|t| t.parse().ok()).ok_or_else(bad)
    };
    match texts.first().map(String::as_str) {
        Some("applied") => Ok(Outcome::Applied { rev: num(1)? }),
        Some("stale") => Ok(Outcome::Stale {
            current: Fence {
                generation: small(1)?,
                attempt: small(2)?,
                seq: num(3)?,
            },
            rev: num(4)?,
        }),
        Some("rejected") => match texts.get(1).map(String::as_str) {
            Some("missing") => Ok(Outcome::Rejected {
                reason: RejectReason::Missing,
            }),
            Some("unknown_attempt") => Ok(Outcome::Rejected {
                reason: RejectReason::UnknownAttempt,
            }),
            Some("owned") => Ok(Outcome::Rejected {
                reason: RejectReason::OwnedByDatabase,
            }),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(parts: &[&str]) -> Value {
        Value::Array(
            parts
                .iter()
                .map(|p| Value::BulkString(p.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn replies_map_to_outcomes() {
        assert_eq!(
            parse_outcome(reply(&["applied", "1795689582866124", "1-0"])).expect("parses"),
            Outcome::Applied {
                rev: 1_795_689_582_866_124
            }
        );
        assert_eq!(
            parse_outcome(reply(&["stale", "2", "1", "9007199254740991", "7"])).expect("parses"),
            Outcome::Stale {
                current: Fence {
                    generation: 2,
                    attempt: 1,
                    seq: MAX_SEQ
                },
                rev: 7
            }
        );
        assert_eq!(
            parse_outcome(reply(&["rejected", "unknown_attempt"])).expect("parses"),
            Outcome::Rejected {
                reason: RejectReason::UnknownAttempt
            }
        );
        for bad in [
            reply(&["applied"]),
            reply(&["stale", "1", "x", "1", "1"]),
            reply(&["rejected", "why"]),
            reply(&["other"]),
            Value::Int(1),
        ] {
            assert!(matches!(parse_outcome(bad), Err(StoreError::Protocol(_))));
        }
    }
}
