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
use crate::conn::{FromRow, RowId, Tx};
use crate::outbox::OutboxEntry;

/// The claim statement of a task table (see [`TaskTable::CLAIM_SQL`]): `r` holds each tenant's
/// RUNNING jobs (live lease); among the runnable ones the tenant with the fewest goes first, then
/// the oldest job (`queue` docs, Fairness); `lock` is `FOR NO KEY UPDATE OF j SKIP LOCKED` on
/// PostgreSQL (`queue` docs, Locks).
macro_rules! claim_sql {
    (
        table: $t:literal,
        key: $k:literal,
        state: $s:literal,
        waiting: $w:literal,
        again: $a:literal,
        also_set: $set:literal,
        order: $o:expr,
        lock: $lock:expr,
        returning: $ret:expr $(,)?
    ) => {
        concat!(
            "UPDATE ",
            $t,
            " SET ",
            $s,
            " = 'RUNNING', attempt = attempt + 1, ",
            $set,
            "lease_owner = $1, lease_until = $2, heartbeat_at = $3, updated_at = $3 \
             WHERE ",
            $k,
            " = (SELECT j.",
            $k,
            " FROM ",
            $t,
            " j \
             LEFT JOIN (SELECT tenant_id, COUNT(*) AS n FROM ",
            $t,
            " \
                  WHERE ",
            $s,
            " = 'RUNNING' AND lease_until > $3 GROUP BY tenant_id) r \
                  ON r.tenant_id = j.tenant_id \
             WHERE (j.",
            $s,
            " = '",
            $w,
            "' OR (j.",
            $s,
            " = '",
            $a,
            "' AND j.run_after <= $3)) \
             AND ($4 IS NULL OR COALESCE(r.n, 0) < $4) \
             AND ($5 IS NULL OR (SELECT COUNT(*) FROM ",
            $t,
            " g WHERE g.",
            $s,
            " = 'RUNNING' \
                  AND g.lease_until > $3) < $5) \
             ORDER BY COALESCE(r.n, 0), ",
            $o,
            " LIMIT 1 ",
            $lock,
            ") RETURNING ",
            $ret
        )
    };
}
pub(super) use claim_sql;

/// The lease statements of a task table, written once for both: [`TaskTable::RUNNING_SQL`],
/// [`TaskTable::HEARTBEAT_SQL`] and [`TaskTable::EXPIRED_SQL`], and its [`TaskTable::QUEUE`] and
/// [`TaskTable::CLAIM_LOCK`] (inside the table's `impl`). `from` names the lease table `j` (and
/// may join what `cols` also reads).
macro_rules! lease_sql {
    (
        queue: $queue:expr,
        lock: $lock:literal,
        table: $t:literal,
        key: $k:literal,
        state: $s:literal,
        cols: $cols:expr,
        from: $from:literal $(,)?
    ) => {
        const QUEUE: Queue = $queue;
        const CLAIM_LOCK: i64 = $lock;
        const RUNNING_SQL: &'static str = concat!(
            "SELECT COUNT(*) FROM ",
            $t,
            " WHERE tenant_id = $1 AND ",
            $s,
            " = 'RUNNING' AND lease_until > $2"
        );
        const HEARTBEAT_SQL: &'static str = concat!(
            "UPDATE ",
            $t,
            " SET lease_until = $1, heartbeat_at = $2 WHERE ",
            $k,
            " = $3 AND attempt = $4 AND lease_owner = $5 AND ",
            $s,
            " = 'RUNNING' RETURNING cancel_requested"
        );
        const EXPIRED_SQL: (&'static str, &'static str) = (
            concat!(
                "SELECT ",
                $cols,
                " FROM ",
                $from,
                " WHERE j.",
                $s,
                " = 'RUNNING' AND j.lease_until <= $1 ORDER BY j.",
                $k,
                " LIMIT $2 FOR NO KEY UPDATE OF j SKIP LOCKED"
            ),
            concat!(
                "SELECT ",
                $cols,
                " FROM ",
                $from,
                " WHERE j.",
                $s,
                " = 'RUNNING' AND j.lease_until <= $1 ORDER BY j.",
                $k,
                " LIMIT $2"
            ),
        );
    };
}

pub(super) mod ai;
mod run;
pub(super) mod video;
pub(super) mod video_jobs;

pub(super) use ai::AiTable;
pub(super) use run::{heartbeat, pick, scan};
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

/// A RUNNING job whose lease expired, locked for the reaper (see [`TaskTable::expired`]).
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

impl<R> Expired<R> {
    pub(super) fn new(
        tenant: TenantId,
        label: String,
        (attempt, max_attempts): (u32, u32),
        cancel_requested: bool,
        row: R,
    ) -> Self {
        Self {
            row,
            tenant,
            label,
            attempt,
            max_attempts,
            cancel_requested,
        }
    }
}

/// What the reaper asks of [`TaskTable::reap`] for one expired job.
#[derive(Debug)]
pub(super) struct Reap<'a, R> {
    pub(super) job: &'a Expired<R>,
    pub(super) verdict: Verdict,
    /// When the retry may run (the backoff after this attempt).
    pub(super) run_after: i64,
    pub(super) now: i64,
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
    /// Advisory-lock key serializing capped claims of this queue on PostgreSQL: the whole queue
    /// (one key) under a global cap, one tenant (this key and the tenant id, the two-key form)
    /// under a per-tenant cap alone.
    const CLAIM_LOCK: i64;
    /// A tenant's RUNNING jobs with a live lease: `$1` tenant, `$2` now; the recount of a
    /// claim under its tenant's lock (`claim.rs`).
    const RUNNING_SQL: &'static str;
    /// The claim statement, PostgreSQL then SQLite: `$1` owner, `$2` lease end, `$3` now, `$4`
    /// per-tenant cap, `$5` global cap (NULL = none); it takes one runnable job (fairness and
    /// caps as in the `queue` docs) RUNNING with `attempt + 1` and returns what
    /// [`TaskTable::picked`] reads.
    const CLAIM_SQL: (&'static str, &'static str);
    /// PostgreSQL only, tried before [`TaskTable::CLAIM_SQL`] (same parameters and result): the
    /// same choice made among each waiting tenant's few oldest runnable jobs instead of the
    /// whole backlog. When it finds nothing (no job, every tenant capped, or every candidate
    /// locked by other claimers) the full statement decides, so a claim never comes back empty
    /// while an unlocked runnable job the full statement would take exists.
    const CLAIM_HEADS_SQL: Option<&'static str> = None;
    /// The lease extension: `$1` lease end, `$2` now, `$3` the row ([`TaskTable::row_id`]),
    /// `$4` attempt, `$5` owner; a compare-and-set on the lease returning `cancel_requested`.
    const HEARTBEAT_SQL: &'static str;
    /// The expired-lease scan, PostgreSQL then SQLite: `$1` now, `$2` limit; RUNNING jobs whose
    /// lease expired, in key order, locked (skipping locked ones) on PostgreSQL; what
    /// [`TaskTable::row`] reads.
    const EXPIRED_SQL: (&'static str, &'static str);
    /// What the claim statement returns.
    type Picked: FromRow;
    /// The lease row the reaper holds for an expired job.
    type Row: FromRow + Send + Sync;

    /// The claim's lease row; `Invalid` for another queue's claim.
    fn row_id(claim: &Claim) -> Result<RowId<'_>, DbError>;

    /// Turns the picked job into a claim: the task's PROCESSING / RUNNING change and its outbox
    /// row. Commits nothing: the caller commits `tx`.
    async fn start(
        tx: &mut Tx,
        picked: Self::Picked,
        p: &ClaimParams<'_>,
    ) -> Result<Claimed, DbError>;

    /// Ends the claim's attempt with `end`: the lease row leaves RUNNING (a compare-and-set on
    /// the lease: [`DbError::LeaseLost`], nothing written, when it no longer holds) and the task
    /// shows the change at `fence`.
    async fn end(tx: &mut Tx, claim: &Claim, end: End<'_>, fence: Fence) -> Result<Ended, DbError>;

    /// A scanned job as the reaper holds it (the scan locked it on PostgreSQL; SQLite writers
    /// run one at a time).
    fn expired(row: Self::Row) -> Expired<Self::Row>;

    /// Moves one expired job on (a compare-and-set on its expired lease) and shows the verdict
    /// on its task at `between_attempts`.
    async fn reap(tx: &mut Tx, r: Reap<'_, Self::Row>) -> Result<Reaped, DbError>;
}
