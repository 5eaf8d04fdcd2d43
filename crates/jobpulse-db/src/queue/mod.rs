//! Our own thin job queue, in the same database as the rows it moves.
//!
//! Two queues: transcode jobs (`video_jobs`, one per video generation) and AI jobs (`ai_jobs`,
//! whose contract status is also the queue state). Enqueueing happens in the transaction that
//! creates the row ([`Db::create_video`], [`Db::retry_video`], [`Db::submit_ai_job`]).
//!
//! # States
//!
//! ```text
//!                      ┌─ complete ──────────────────────────────▶ SUCCEEDED
//! QUEUED ──claim──▶ RUNNING ─ fail (retryable, attempts left) / reaper ─▶ RETRY_WAIT ─┐
//!                      │  ▲                                                            │
//!                      │  └──── claim once run_after passed (attempt + 1) ─────────────┘
//!                      ├─ fail (permanent or last attempt) / reaper ─▶ DEAD
//!                      ├─ cancelled ─────────────────────────────────▶ CANCELLED
//!                      └─ release (worker shutdown) ─▶ RETRY_WAIT, runnable at once, max_attempts + 1
//! ```
//!
//! A RUNNING job whose lease expired is *not* claimable: the reaper ([`Db::reap_expired`], run by
//! every worker) first moves it to RETRY_WAIT / RETRYING with the reason "the worker stopped
//! responding" and the same backoff as a failed attempt (or to DEAD after the last attempt), and
//! only then may a claim take it, with attempt + 1. So every lost attempt is visible to the
//! people watching, and a job that keeps crashing its workers backs off instead of being grabbed
//! again at once. AI jobs use their contract status as the queue state: PENDING and RETRYING
//! wait, RUNNING runs, a terminal status ends (FAILED for dead or cancelled).
//!
//! # Claiming
//!
//! [`Db::claim`] takes a runnable job — QUEUED/PENDING, or RETRY_WAIT/RETRYING whose
//! `run_after` has passed; which one is under Fairness below — sets it
//! RUNNING with `attempt + 1` and a lease, and commits the PROCESSING/RUNNING state change with its
//! outbox row, all in one transaction. PostgreSQL picks with `FOR NO KEY UPDATE SKIP LOCKED` (claimers
//! never wait for each other); SQLite runs the same single `UPDATE … WHERE id = (SELECT … LIMIT 1)
//! RETURNING …` inside `BEGIN IMMEDIATE`, which serializes writers.
//!
//! # Fairness
//!
//! Among runnable jobs, the claim takes one of the tenant with the fewest RUNNING jobs (live
//! lease) first, and the oldest within that: a tenant with work waiting gets the next free slot
//! before a tenant that already runs jobs, whatever their age. A tenant alone still gets every
//! slot (up to its cap); a second tenant's first job waits only for the next slot to free.
//!
//! The running counts come from one grouped read of the RUNNING jobs (their partial index), joined
//! to the runnable ones. Ranking every runnable job reads the whole backlog (10.5 ms per claim at
//! 10 000 waiting jobs), so on PostgreSQL an AI claim first ranks only each waiting tenant's 4
//! oldest runnable jobs (`table::ai`, index `ai_jobs_waiting`, migration 0006: O(waiting
//! tenants)) and falls back to the full ranking only when that finds nothing. Without caps,
//! concurrent PostgreSQL claimers may count the same running jobs, so the order is approximate
//! there; with caps it is exact (below).
//!
//! Concurrency caps ([`Caps`]; per tenant on by default, [`TenantCaps`]) count RUNNING jobs with a
//! live lease, globally and per tenant, in the same statement. On SQLite that is exact (one
//! writer at a time). On PostgreSQL two claimers could both see "one slot left", so:
//!
//! - with a global cap, a claim first takes a per-queue transaction-scoped advisory lock: claims
//!   of that queue run one at a time, which keeps both counts exact;
//! - with a per-tenant cap alone (the default), a claim takes the advisory lock of its job's
//!   tenant once it has picked the job, counts that tenant's running jobs again in a new
//!   statement (which sees every claim of the tenant that held the lock before, and its own
//!   row), and gives the job back (rollback, then a fresh pick) when that is over the cap. Claims
//!   of one tenant run one at a time; claims of different tenants do not wait for each other
//!   (before, one lock for the whole queue was held through each claim's transaction, commit
//!   included: docs/benchmarks.md, "Queue throughput");
//! - without caps nothing is serialized.
//!
//! # Locks
//!
//! Job, video and video-job rows are locked `FOR NO KEY UPDATE`, never `FOR UPDATE`: nothing
//! here changes their keys or deletes them, and the weaker lock does not conflict with the
//! `FOR KEY SHARE` lock a foreign key check takes. An import writes its ledger rows
//! (`import_rows.job_id` references the job) in transactions of its own; with `FOR UPDATE` a
//! worker cut off in the middle of one of them — its session idle in the transaction, its locks
//! held until the server notices — hid its job from every claim and reaper (`SKIP LOCKED`), so
//! nobody could take it over (the explanation that fits reliability scenario 4's failure in
//! CI on 2026-11-26; `queue::postgres_a_foreign_key_lock_does_not_hide_a_job` shows the lock
//! conflict itself). As a
//! backstop for other locks, PostgreSQL sessions end a transaction left idle for 5 s
//! (`DbOptions::idle_in_transaction_timeout`).
//!
//! # Leases and fencing
//!
//! Every worker-side change is a compare-and-set `… WHERE id = ? AND attempt = ? AND lease_owner
//! = ? AND state = 'RUNNING'`; when it matches nothing the caller gets [`DbError::LeaseLost`] and
//! nothing is written, so a zombie (a worker whose lease expired and whose job was re-claimed or
//! reaped) can never commit. Lease expiry compares application clocks; skew only changes when a
//! lease counts as expired, never whether two attempts can both commit.
//!
//! Read-model fences: a claim of attempt `n` writes `(g, n, 1)`; the worker's own progress
//! writes use `(g, n, 2..)`; its final success uses its next seq; RETRY_WAIT/RETRYING and a
//! FAILED after an attempt use `Fence::between_attempts(g, n)` = `(g, n + 1, 0)`, as does the
//! reaper, so every late write of a dead attempt is stale.
//!
//! # Code layout
//!
//! Each operation is written once — `claim`, `finish` (complete, fail, cancelled), `release`,
//! `reap` and the heartbeat below — over the `table` seam: a `TaskTable` (`table::VideoTable`,
//! `table::AiTable`) holds what differs between the two task tables (the claim statement, the
//! lease row, the task's visible change, the expired-lease scan). The tables use `videos.rs` /
//! `ai_jobs.rs` for the checked change of a row; those modules do not import the queue.

use std::time::Duration;

use jobpulse_domain::{Fence, State, TaskKey, TenantId, Write};

use crate::conn::{Conn, ms, now_ms};
pub use crate::model::CancelOutcome;
use crate::model::{AiJob, Video};
use crate::outbox::OutboxEntry;
use crate::{Db, DbError};

mod claim;
mod config;
mod finish;
mod reap;
mod release;
mod table;

pub use config::{Backoff, Caps, QueueConfig, TenantCaps};
pub use finish::AiOutcome;
pub use release::ReleaseOutcome;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Video,
    Ai,
}

impl Queue {
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Video => "video",
            Queue::Ai => "ai",
        }
    }
}

/// What a claim handed to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimedTask {
    /// A transcode job (`job_id` is its `video_jobs` row) and its video, now PROCESSING.
    Video { job_id: i64, video: Video },
    /// An AI job, now RUNNING.
    Ai(AiJob),
}

/// A live lease on one job. Pass it back to [`Db::heartbeat`] and to exactly one of
/// [`Db::complete_video`] / [`Db::complete_ai_job`] / [`Db::fail`] / [`Db::cancelled`] /
/// [`Db::release`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub task: ClaimedTask,
    pub tenant: TenantId,
    /// The read-model key of the task.
    pub key: TaskKey,
    /// The fence of the claim's PROCESSING/RUNNING write, `(g, attempt, 1)`: the generation and
    /// this attempt (1-based). Every later write of the attempt steps from it
    /// ([`Fence::next_seq`], [`Fence::next_attempt`]).
    pub fence: Fence,
    pub max_attempts: u32,
    pub worker_id: String,
    /// The lease length; every heartbeat extends the lease by this much from now.
    pub lease: Duration,
    /// The claim's PROCESSING/RUNNING write (fence `(g, attempt, 1)`).
    pub outbox: OutboxEntry,
}

impl Claim {
    /// The first seq for the worker's own progress writes (the claim wrote seq 1).
    pub const FIRST_PROGRESS_SEQ: u64 = 2;

    pub fn queue(&self) -> Queue {
        match self.task {
            ClaimedTask::Video { .. } => Queue::Video,
            ClaimedTask::Ai(_) => Queue::Ai,
        }
    }

    /// This attempt (1-based).
    pub fn attempt(&self) -> u32 {
        self.fence.attempt
    }

    pub fn generation(&self) -> u32 {
        self.fence.generation
    }

    /// The fence for this attempt's write number `seq` (progress writes start at
    /// [`Claim::FIRST_PROGRESS_SEQ`]).
    pub fn fence_at(&self, seq: u64) -> Result<Fence, DbError> {
        Ok(self.fence.with_seq(seq)?)
    }

    /// The fence of a final write with `seq`: never below [`Claim::FIRST_PROGRESS_SEQ`], so it
    /// outranks the claim's own write.
    pub(crate) fn final_fence(&self, seq: u64) -> Result<Fence, DbError> {
        self.fence_at(seq.max(Self::FIRST_PROGRESS_SEQ))
    }

    /// The fence of writes made after this attempt, before the next one (RETRY_WAIT/RETRYING,
    /// a FAILED after an attempt, a release): `(g, attempt + 1, 0)`.
    pub fn between_fence(&self) -> Fence {
        self.fence.next_attempt()
    }

    /// A direct progress write of this attempt (seq from [`Claim::FIRST_PROGRESS_SEQ`] up, one
    /// per write, in order). Progress goes straight to the read model, never through the
    /// database; state changes must go through the database.
    pub fn progress_write(&self, seq: u64, state: State) -> Result<Write, DbError> {
        Ok(Write::set(self.key.clone(), self.fence_at(seq)?, state)?)
    }

    pub fn is_last_attempt(&self) -> bool {
        self.attempt() >= self.max_attempts
    }

    fn job_ref(&self) -> String {
        match &self.task {
            ClaimedTask::Video { job_id, .. } => job_id.to_string(),
            ClaimedTask::Ai(j) => j.job_id.to_string(),
        }
    }
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease was extended.
    Continue,
    /// The lease was extended, and the task was cancelled: stop and call [`Db::cancelled`].
    CancelRequested,
    /// The lease is gone (expired and re-claimed, reaped, or ended): stop, write nothing.
    LeaseLost,
}

/// What [`Db::fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Another attempt will run after `run_after_ms` (unix ms).
    Retrying { run_after_ms: i64 },
    /// No attempts left (or a permanent error): the task is FAILED.
    Dead,
}

/// What one [`Db::reap_expired`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    pub retrying: u32,
    pub dead: u32,
    pub cancelled: u32,
}

fn check_worker_id(worker_id: &str) -> Result<(), DbError> {
    if worker_id.is_empty() || worker_id.len() > 200 || worker_id.chars().any(char::is_control) {
        return Err(DbError::Invalid(
            "worker id must be 1 to 200 bytes without control characters".into(),
        ));
    }
    Ok(())
}

impl Db {
    /// Extends the claim's lease by `claim.lease` and reports whether to go on.
    pub async fn heartbeat(&self, claim: &Claim) -> Result<Heartbeat, DbError> {
        let now = now_ms();
        let until = now.saturating_add(ms(claim.lease));
        let mut conn = self.read().await?;
        let row = heartbeat_sql(conn.conn(), claim, now, until).await?;
        Ok(match row {
            None => {
                tracing::warn!(
                    tenant.id = %claim.tenant,
                    job.id = %claim.job_ref(),
                    attempt = claim.attempt(),
                    "lease lost"
                );
                Heartbeat::LeaseLost
            }
            Some(true) => Heartbeat::CancelRequested,
            Some(false) => Heartbeat::Continue,
        })
    }

    /// Waits until work may be available in `queue` (a job was enqueued, here or — on
    /// PostgreSQL — in any process) or `max_wait` passed. Returns `true` when woken early.
    /// A job whose backoff ends later wakes a waiter of the process that scheduled the retry
    /// when the backoff ends; workers of other processes find it on their next poll, so
    /// `max_wait` bounds how late a retry may start there.
    pub async fn wait_for_work(&self, queue: Queue, max_wait: Duration) -> bool {
        self.ensure_listener();
        tokio::time::timeout(max_wait, self.signals().queue(queue).notified())
            .await
            .is_ok()
    }
}

async fn heartbeat_sql(
    c: Conn<'_>,
    claim: &Claim,
    now: i64,
    until: i64,
) -> Result<Option<bool>, DbError> {
    match claim.queue() {
        Queue::Video => table::heartbeat::<table::VideoTable>(c, claim, now, until).await,
        Queue::Ai => table::heartbeat::<table::AiTable>(c, claim, now, until).await,
    }
}
