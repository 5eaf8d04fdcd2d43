//! The seam between the queue and its two task tables.
//!
//! A [`TaskTable`] says what differs between transcode jobs (`video_jobs` beside `videos`) and AI
//! jobs (`ai_jobs`, whose contract status is also the queue state): how a job is claimed, how a
//! lease is extended, how an attempt's end is written (the lease row and the task's visible
//! change, both fenced by the lease), and how an expired lease is reaped. The queue operations
//! — [`Db::claim`](crate::Db::claim), [`Db::heartbeat`](crate::Db::heartbeat),
//! [`Db::fail`](crate::Db::fail), [`Db::cancelled`](crate::Db::cancelled),
//! [`Db::release`](crate::Db::release), [`Db::reap_expired`](crate::Db::reap_expired) — are
//! written once over it.
//!
//! Imports run one way: the tables use `videos.rs` / `ai_jobs.rs` (the checked change of each
//! row); those modules know nothing of the queue.

use std::time::Duration;

use jobpulse_domain::{Fence, TenantId};

use super::{Claim, Queue};
use crate::DbError;
use crate::conn::{Conn, Tx};
use crate::outbox::OutboxEntry;

pub(super) mod ai;
pub(super) mod video;
pub(super) mod video_jobs;

pub(super) use ai::AiTable;
pub(super) use video::VideoTable;

/// How an attempt ends, as [`TaskTable::end`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End<'a> {
    /// Another attempt after the backoff: RETRY_WAIT / RETRYING, runnable at `run_after`.
    Retry { run_after: i64, message: &'a str },
    /// No attempt left (`code` `exhausted`) or a permanent error (`permanent`): FAILED.
    Dead {
        code: &'static str,
        message: &'a str,
    },
    /// The worker acknowledged a cancel: FAILED "cancelled".
    Cancelled,
    /// Given back unfinished (see `release`): waiting again, runnable at `now`, with one more
    /// attempt allowed; a cancel requested meanwhile wins (FAILED "cancelled").
    Release { message: &'a str, now: i64 },
}

/// What [`TaskTable::end`] wrote.
#[derive(Debug)]
// Returned once per final write and taken apart at once: boxing would cost an allocation for
// nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Ended {
    /// The task's visible change; `cancelled` when a pending cancel decided it (release).
    Written { entry: OutboxEntry, cancelled: bool },
    /// The task went away while the attempt ran (a deleted video): its job row is closed and
    /// nothing visible written (the delete published its own tombstone).
    Gone,
}

/// What the reaper decides for an expired lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Retry,
    Dead,
    Cancelled,
}

/// What the task of a job whose worker stopped responding shows.
pub(super) const LOST: &str = "the worker stopped responding (lease expired)";

impl Verdict {
    /// The reason the task shows.
    pub(super) fn message(self) -> &'static str {
        match self {
            Verdict::Retry | Verdict::Dead => LOST,
            Verdict::Cancelled => "cancelled",
        }
    }

    pub(super) fn of(attempt: u32, max_attempts: u32, cancel_requested: bool) -> Self {
        if cancel_requested {
            Verdict::Cancelled
        } else if attempt >= max_attempts {
            Verdict::Dead
        } else {
            Verdict::Retry
        }
    }
}

/// A RUNNING job whose lease expired, locked for the reaper.
#[derive(Debug)]
pub(super) struct Expired<R> {
    pub(super) row: R,
    pub(super) tenant: TenantId,
    /// The job, as logs name it.
    pub(super) label: String,
    pub(super) attempt: u32,
    pub(super) max_attempts: u32,
    pub(super) cancel_requested: bool,
}

/// What reaping one expired job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaped {
    /// The job moved on and its task shows the verdict.
    Moved,
    /// The task went away meanwhile: the job is closed, counted as cancelled.
    Closed,
    /// Someone else moved the job first: nothing done.
    Skipped,
}

/// The parameters of one claim statement.
pub(super) struct ClaimParams<'a> {
    pub(super) worker: &'a str,
    pub(super) lease: Duration,
    pub(super) now: i64,
    pub(super) caps: super::Caps,
}

/// One claim statement's result.
pub(super) enum Claimed {
    Claim(Box<Claim>),
    Empty,
    /// The picked job was inconsistent with its task and was closed; try again.
    Skipped,
}

/// See the module docs. Implemented by [`VideoTable`] and [`AiTable`].
pub(super) trait TaskTable {
    const QUEUE: Queue;
    /// Advisory-lock key serializing capped claims of this queue on PostgreSQL.
    const CLAIM_LOCK: i64;
    /// The row the reaper holds for an expired job.
    type Row: Send + Sync;

    /// Takes a runnable job (fairness and caps as in the `queue` docs) and commits nothing: the
    /// caller commits `tx`.
    async fn claim(tx: &mut Tx, p: &ClaimParams<'_>) -> Result<Claimed, DbError>;

    /// Extends the claim's lease to `until`: `Some(cancel_requested)`, `None` when the lease is
    /// gone.
    async fn heartbeat(
        c: Conn<'_>,
        claim: &Claim,
        now: i64,
        until: i64,
    ) -> Result<Option<bool>, DbError>;

    /// Ends the claim's attempt with `end`: the lease row leaves RUNNING (a compare-and-set on
    /// the lease: [`DbError::LeaseLost`], nothing written, when it no longer holds) and the task
    /// shows the change at `fence`.
    async fn end(tx: &mut Tx, claim: &Claim, end: End<'_>, fence: Fence) -> Result<Ended, DbError>;

    /// Up to `limit` RUNNING jobs whose lease expired at `now` (locked, skipping locked ones, on
    /// PostgreSQL).
    async fn expired(tx: &mut Tx, now: i64, limit: i64)
    -> Result<Vec<Expired<Self::Row>>, DbError>;

    /// Moves one expired job on (a compare-and-set on its expired lease) and shows `verdict` on
    /// its task at `between_attempts`.
    async fn reap(
        tx: &mut Tx,
        job: &Expired<Self::Row>,
        verdict: Verdict,
        run_after: i64,
        now: i64,
    ) -> Result<Reaped, DbError>;
}
