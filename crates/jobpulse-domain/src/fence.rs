//! Fenced, monotonic writes: the ordering rule of the read model (docs/contract.md §5).
//!
//! Every write carries a [`Fence`] `(generation, attempt, seq)`, compared lexicographically:
//!
//! - **generation** starts at 1 and grows only when a user restarts a finished task (retry of a
//!   FAILED video). A new generation is the only way out of a terminal status.
//! - **attempt** is the worker attempt within a generation: 0 before the first claim, `n` while
//!   attempt `n` runs. Writes made *between* attempts (RETRY_WAIT, or a FAILED written by the
//!   reaper after a crash) use `(generation, n + 1, 0)`, so every late write of the dead attempt `n`
//!   is older and is refused.
//! - **seq** orders the writes of one attempt; the attempt's single lease holder assigns it.
//!
//! [`decide`] is the rule itself. The in-process store calls it; the Redis store's Lua script is
//! a transcription of it, and a differential test drives both with the same writes.
//!
//! The rule, for a write `w` against the stored record `cur`:
//!
//! 1. no record: a state write applies; a heartbeat is rejected (there is nothing to keep alive);
//! 2. `w.generation < cur.generation`: stale;
//! 3. `w.generation > cur.generation`: applies (a restart; terminal or not);
//! 4. same generation, `cur` terminal or deleted: stale (terminal absorbs its generation);
//! 5. same generation, `(w.attempt, w.seq) <= (cur.attempt, cur.seq)`: stale;
//! 6. otherwise it applies; within the same generation (across attempts too) the overall
//!    percent is `max(cur.percent, w.percent)` (except for the initial states UPLOADED/PENDING,
//!    pinned at 0), so no reader ever sees it go back: after a retry the bar is held at the
//!    previous attempt's value until the new attempt passes it (docs/contract.md §3b). The
//!    writer's own percent, when held, is kept as [`State::attempt_percent`]; the write that
//!    moves to a later attempt keeps what the record showed as [`State::previous_attempt`]
//!    (none from attempt 0, dropped with a new generation).
//!
//! Before these, ownership ([`Origin`]): a record belongs to whoever created it. Tasks in our
//! database are written by our workers, relay and repair ([`Origin::Database`]); the worker
//! ingest API writes for external systems ([`Origin::External`]). Then:
//!
//! 0. an external write to a database-owned record is rejected ([`RejectReason::OwnedByDatabase`]);
//!    a database write to an external record takes it over whatever its fence (the database is
//!    the source of truth for its tasks; an external writer may have raced it to an id it owns),
//!    as if there were no record — except that the revision still grows.

use serde::{Deserialize, Serialize};

use crate::{PreviousAttempt, ProgressError, State, TaskKey};

/// Lua numbers are doubles; keeping `seq` below 2^53 makes the Redis script exact.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// `(generation, attempt, seq)`, ordered lexicographically.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Fence {
    pub generation: u32,
    pub attempt: u32,
    pub seq: u64,
}

impl Fence {
    pub fn new(generation: u32, attempt: u32, seq: u64) -> Result<Self, ProgressError> {
        if generation == 0 || seq > MAX_SEQ {
            return Err(ProgressError::Invariant(
                "fence generation starts at 1 and seq must be below 2^53",
            ));
        }
        Ok(Self {
            generation,
            attempt,
            seq,
        })
    }

    /// The fence of writes made between attempt `finished_attempt` and the next one:
    /// `(generation, finished_attempt + 1, 0)`.
    pub fn between_attempts(generation: u32, finished_attempt: u32) -> Self {
        Self {
            generation,
            attempt: finished_attempt,
            seq: 0,
        }
        .next_attempt()
    }

    /// The fence of attempt `attempt`'s claim (the first write of the attempt):
    /// `(generation, attempt, 1)`.
    pub fn claim(generation: u32, attempt: u32) -> Result<Self, ProgressError> {
        Self::new(generation, attempt, 1)
    }

    /// The next write of the same attempt: `(g, a, seq + 1)`. For the attempt's single writer
    /// (its lease holder), or for a change made while no worker holds the task (nobody else can
    /// be writing that attempt then). Saturates at [`MAX_SEQ`].
    pub fn next_seq(self) -> Self {
        Self {
            seq: self.seq.saturating_add(1).min(MAX_SEQ),
            ..self
        }
    }

    /// The write `seq` of the same attempt (a final write must use a seq above every progress
    /// tick's).
    pub fn with_seq(self, seq: u64) -> Result<Self, ProgressError> {
        Self::new(self.generation, self.attempt, seq)
    }

    /// Between this attempt and the next: `(g, a + 1, 0)`. Everything the attempt `a` still
    /// sends is older, so it is refused; the next claim writes `next_attempt().next_seq()`.
    pub fn next_attempt(self) -> Self {
        Self {
            generation: self.generation,
            attempt: self.attempt.saturating_add(1),
            seq: 0,
        }
    }

    /// A restart of the task (a user retry of a FAILED video) or its deletion: `(g + 1, 0, 1)`,
    /// newer than everything of the old generation, terminal or not.
    pub fn next_generation(self) -> Self {
        Self {
            generation: self.generation.saturating_add(1),
            attempt: 0,
            seq: 1,
        }
    }

    /// Whether `other` belongs to the same attempt (generation and attempt) as `self`.
    pub fn same_attempt(&self, other: &Fence) -> bool {
        (self.generation, self.attempt) == (other.generation, other.attempt)
    }
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.generation, self.attempt, self.seq)
    }
}

/// What a write does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "state", rename_all = "snake_case")]
// Nearly every write is a `Set`; boxing the state would add an allocation to each for the few
// heartbeats and deletes it would shrink.
#[allow(clippy::large_enum_variant)]
pub enum WriteKind {
    /// Replace the task's state (a transition or a progress tick).
    Set(State),
    /// Keep an in-progress record alive (slide its TTL) without changing it.
    Heartbeat,
    /// The task was deleted: readers see it as unknown; older writes stay refused.
    Delete,
}

/// Who writes a task's record (rule 0 of the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Our database owns the task: our workers, the outbox relay and repair write it.
    #[default]
    Database,
    /// An external system reports the task through the worker ingest API.
    External,
}

impl Origin {
    pub fn is_database(&self) -> bool {
        *self == Origin::Database
    }
}

/// One fenced write for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub key: TaskKey,
    pub fence: Fence,
    pub kind: WriteKind,
    /// Absent (database) in everything written before external writes were told apart.
    #[serde(default, skip_serializing_if = "Origin::is_database")]
    pub origin: Origin,
}

impl Write {
    /// A state write; the state is validated against the task's kind.
    pub fn set(key: TaskKey, fence: Fence, state: State) -> Result<Self, ProgressError> {
        state.validate(key.task.kind())?;
        Ok(Self {
            key,
            fence,
            kind: WriteKind::Set(state),
            origin: Origin::Database,
        })
    }

    pub fn heartbeat(key: TaskKey, fence: Fence) -> Self {
        Self {
            key,
            fence,
            kind: WriteKind::Heartbeat,
            origin: Origin::Database,
        }
    }

    pub fn delete(key: TaskKey, fence: Fence) -> Self {
        Self {
            key,
            fence,
            kind: WriteKind::Delete,
            origin: Origin::Database,
        }
    }

    /// The same write, made for an external system (the worker ingest API).
    pub fn external(mut self) -> Self {
        self.origin = Origin::External;
        self
    }
}

/// What a store holds for one task. `state == None` is a deletion tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub fence: Fence,
    /// Bumped by every applied state write: `max(previous + 1, now in µs)`, so a record rebuilt
    /// after the store lost everything never reuses a revision a client may still hold.
    pub rev: u64,
    pub state: Option<State>,
    /// Who created the record (rule 0).
    pub origin: Origin,
}

impl Stored {
    /// Terminal records (and tombstones) absorb every later write of their generation.
    pub fn absorbs_generation(&self) -> bool {
        self.state.as_ref().is_none_or(|s| s.status.is_terminal())
    }
}

/// Why a well-formed write could not be applied (as opposed to being merely stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    #[error("there is no record to keep alive")]
    Missing,
    #[error("the heartbeat is for an attempt the store has not seen")]
    UnknownAttempt,
    #[error("the task belongs to jobpulse's database; only its own workers write it")]
    OwnedByDatabase,
}

/// The result of a write, as every store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The write is now visible; `rev` is the record's revision after it.
    Applied { rev: u64 },
    /// The store holds something newer (or terminal); nothing changed.
    Stale { current: Fence, rev: u64 },
    /// The write could not apply to what the store holds; nothing changed.
    Rejected { reason: RejectReason },
}

/// What [`decide`] tells a store to do.
#[derive(Debug, Clone, PartialEq, Eq)]
// A short-lived return value, moved once into the store: boxing would cost an allocation per
// write for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Store this record (its `rev` is already bumped).
    Write(Stored),
    /// Heartbeat accepted: slide the TTL, keep the record.
    Refresh {
        rev: u64,
    },
    Stale {
        current: Fence,
        rev: u64,
    },
    Reject(RejectReason),
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Write(s) => Outcome::Applied { rev: s.rev },
            Decision::Refresh { rev } => Outcome::Applied { rev: *rev },
            Decision::Stale { current, rev } => Outcome::Stale {
                current: *current,
                rev: *rev,
            },
            Decision::Reject(reason) => Outcome::Rejected { reason: *reason },
        }
    }
}

/// The ordering rule (see the module docs). `now_micros` feeds the revision.
pub fn decide(current: Option<&Stored>, write: &Write, now_micros: u64) -> Decision {
    let w = write.fence;
    let origin = write.origin;
    let (current, floor_rev) = match current {
        Some(cur) if cur.origin != origin => match origin {
            Origin::External => return Decision::Reject(RejectReason::OwnedByDatabase),
            Origin::Database => (None, cur.rev),
        },
        other => (other, 0),
    };
    let Some(cur) = current else {
        let rev = now_micros.max(floor_rev.saturating_add(1)).max(1);
        return match &write.kind {
            WriteKind::Heartbeat => Decision::Reject(RejectReason::Missing),
            WriteKind::Set(state) => Decision::Write(Stored {
                fence: w,
                rev,
                // What only a store sets starts empty.
                state: Some(State {
                    previous_attempt: None,
                    attempt_percent: None,
                    ..state.clone()
                }),
                origin,
            }),
            WriteKind::Delete => Decision::Write(Stored {
                fence: w,
                rev,
                state: None,
                origin,
            }),
        };
    };
    let stale = Decision::Stale {
        current: cur.fence,
        rev: cur.rev,
    };
    let c = cur.fence;
    if w.generation < c.generation {
        return stale;
    }
    let same_generation = w.generation == c.generation;
    if same_generation && cur.absorbs_generation() {
        return stale;
    }
    let next_rev = (cur.rev + 1).max(now_micros);
    match &write.kind {
        WriteKind::Heartbeat => {
            if !same_generation || w.attempt > c.attempt {
                Decision::Reject(RejectReason::UnknownAttempt)
            } else if w.attempt < c.attempt {
                stale
            } else {
                Decision::Refresh { rev: cur.rev }
            }
        }
        WriteKind::Delete => {
            if same_generation && (w.attempt, w.seq) <= (c.attempt, c.seq) {
                return stale;
            }
            Decision::Write(Stored {
                fence: w,
                rev: next_rev,
                state: None,
                origin,
            })
        }
        WriteKind::Set(state) => {
            if same_generation && (w.attempt, w.seq) <= (c.attempt, c.seq) {
                return stale;
            }
            let mut state = state.clone();
            let own = state.percent;
            // Within a generation no reader sees the percent go back, across attempts too (the
            // bar is held at the previous attempt's value until the new attempt passes it).
            // Initial states (UPLOADED, PENDING) are pinned at 0 % by the contract; a late one
            // is a writer's mistake we store as sent rather than make invalid.
            if same_generation
                && !state.status.is_initial()
                && let Some(prev) = &cur.state
            {
                state.percent = state.percent.max(prev.percent);
            }
            state.attempt_percent = (own < state.percent).then_some(own);
            state.previous_attempt = if !same_generation {
                None
            } else if w.attempt > c.attempt {
                // The write that ends an attempt (or starts one without a retry state between)
                // keeps what that attempt last showed; attempt 0 is the record before a claim.
                cur.state.as_ref().filter(|_| c.attempt >= 1).map(|prev| {
                    Box::new(PreviousAttempt {
                        attempt: c.attempt,
                        percent: prev.percent,
                        step: prev.step.clone(),
                    })
                })
            } else {
                cur.state.as_ref().and_then(|p| p.previous_attempt.clone())
            };
            Decision::Write(Stored {
                fence: w,
                rev: next_rev,
                state: Some(state),
                origin,
            })
        }
    }
}
