//! [`AiTable`]: AI/tool jobs. One row, `ai_jobs`, holds both the lease and the contract status
//! (PENDING and RETRYING wait, RUNNING runs, a terminal status ends); every change goes through
//! `outbox::apply_change`, whose compare-and-set on status, attempt and lease owner (`Tracked`
//! for `AiJob`) is the lease fence.

use jobpulse_domain::{Fence, JobId, JobStatus};

use super::{ClaimParams, Claimed, End, Ended, Expired, Reap, Reaped, TaskTable, Verdict};
use crate::ai_jobs::lock_ai_job;
use crate::conn::{FromRow, RowExt, RowId, Tx, dual};
use crate::model::{AiJob, ai_job_cols, clean_message};
use crate::outbox::apply_change;
use crate::queue::{Claim, ClaimedTask, Queue};
use crate::{DbError, outbox};

/// AI jobs (see the module docs).
pub(in crate::queue) struct AiTable;

/// The claim statement (`claim_sql`): a PENDING job, or a RETRYING one whose backoff passed;
/// the fence moves to `(g, attempt + 1, 1)` with it. `$order`: the insertion-order tie-breaker
/// for jobs created in the same millisecond (PostgreSQL `queue_seq`, SQLite `rowid`; migration
/// 0002).
macro_rules! ai_claim_sql {
    ($lock:literal, $order:literal) => {
        crate::queue::table::claim_sql!(
            table: "ai_jobs",
            key: "job_id",
            state: "status",
            waiting: "PENDING",
            again: "RETRYING",
            also_set: "fence_attempt = attempt + 1, fence_seq = 1, ",
            order: concat!("j.created_at, ", $order),
            lock: $lock,
            returning: "job_id",
        )
    };
}

/// The PostgreSQL claim among the tenants' heads ([`TaskTable::CLAIM_HEADS_SQL`]): the same
/// order as [`ai_claim_sql`] — fewest RUNNING of its tenant, then oldest — over the 4 oldest
/// runnable jobs of each tenant that has waiting jobs, instead of the whole backlog (4: enough
/// for several uncapped claimers racing for one tenant, each skipping the heads the others
/// locked; capped claims run one at a time). `waiting` walks those tenants through
/// `ai_jobs_waiting` (one index probe per tenant, migration 0006), the `LATERAL` takes each
/// one's oldest runnable jobs from the same index, and the pick ranks those rows by primary key
/// (an array, so the planner cannot hash-join the whole table) and re-reads the one it takes
/// under its lock (`SKIP LOCKED`), so a job claimed meanwhile is passed over. Costs O(waiting tenants), not O(waiting jobs): 10 000 waiting jobs of 16 tenants took
/// 10.5 ms per claim with the full statement, ≈ 1 ms with this one (docs/benchmarks.md, Queue
/// throughput).
const AI_CLAIM_HEADS_SQL: &str = "UPDATE ai_jobs SET status = 'RUNNING', attempt = attempt + 1, \
     fence_attempt = attempt + 1, fence_seq = 1, \
     lease_owner = $1, lease_until = $2, heartbeat_at = $3, updated_at = $3 \
     WHERE job_id = (\
       WITH RECURSIVE waiting (tenant_id) AS (\
           (SELECT tenant_id FROM ai_jobs WHERE status IN ('PENDING', 'RETRYING') \
            ORDER BY tenant_id LIMIT 1) \
         UNION ALL \
           SELECT (SELECT a.tenant_id FROM ai_jobs a \
                   WHERE a.status IN ('PENDING', 'RETRYING') AND a.tenant_id > w.tenant_id \
                   ORDER BY a.tenant_id LIMIT 1) \
           FROM waiting w WHERE w.tenant_id IS NOT NULL), \
       r AS (SELECT tenant_id, COUNT(*) AS n FROM ai_jobs \
             WHERE status = 'RUNNING' AND lease_until > $3 GROUP BY tenant_id) \
       SELECT j.job_id FROM ai_jobs j LEFT JOIN r ON r.tenant_id = j.tenant_id \
       WHERE j.job_id = ANY (ARRAY(\
           SELECT h.job_id FROM waiting w CROSS JOIN LATERAL (\
             SELECT c.job_id FROM ai_jobs c \
             WHERE c.tenant_id = w.tenant_id AND c.status IN ('PENDING', 'RETRYING') \
               AND (c.status = 'PENDING' OR c.run_after <= $3) \
             ORDER BY c.created_at, c.queue_seq LIMIT 4) h)) \
         AND (j.status = 'PENDING' OR (j.status = 'RETRYING' AND j.run_after <= $3)) \
         AND ($4 IS NULL OR COALESCE(r.n, 0) < $4) \
         AND ($5 IS NULL OR (SELECT COUNT(*) FROM ai_jobs g WHERE g.status = 'RUNNING' \
                             AND g.lease_until > $3) < $5) \
       ORDER BY COALESCE(r.n, 0), j.created_at, j.queue_seq LIMIT 1 \
       FOR NO KEY UPDATE OF j SKIP LOCKED) \
     RETURNING job_id";

/// The claim's job; `Invalid` for a video claim.
fn job_of(claim: &Claim) -> Result<&AiJob, DbError> {
    match &claim.task {
        ClaimedTask::Ai(job) => Ok(job),
        ClaimedTask::Video { .. } => Err(DbError::Invalid("not an AI job claim".into())),
    }
}

/// The AI job of the claim, if the claim still holds its lease.
pub(in crate::queue) async fn leased_ai_job(tx: &mut Tx, claim: &Claim) -> Result<AiJob, DbError> {
    let job = job_of(claim)?;
    lock_ai_job(tx.conn(), &job.job_id)
        .await?
        .filter(|j| {
            j.status == JobStatus::Running
                && j.attempt == claim.attempt()
                && j.lease_owner.as_deref() == Some(claim.worker_id.as_str())
        })
        .ok_or(DbError::LeaseLost)
}

/// What the AI claim statements return: the job's id.
impl FromRow for JobId {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError> {
        JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt)
    }
}

impl TaskTable for AiTable {
    lease_sql! {
        queue: Queue::Ai, lock: 0x6a70_6171 /* "jpaq" */, table: "ai_jobs", key: "job_id",
        state: "status", cols: ai_job_cols!(),
        from: "ai_jobs j LEFT JOIN ai_results r ON r.job_id = j.job_id",
    }
    const CLAIM_HEADS_SQL: Option<&'static str> = Some(AI_CLAIM_HEADS_SQL);
    const CLAIM_SQL: (&'static str, &'static str) = (
        ai_claim_sql!("FOR NO KEY UPDATE OF j SKIP LOCKED", "j.queue_seq"),
        ai_claim_sql!("", "j.rowid"),
    );
    type Picked = JobId;
    type Row = AiJob;

    fn expired(j: AiJob) -> Expired<AiJob> {
        let label = format!("job {}", j.job_id);
        let attempts = (j.attempt, j.max_attempts);
        Expired::new(j.tenant, label, attempts, j.cancel_requested, j)
    }

    fn row_id(claim: &Claim) -> Result<RowId<'_>, DbError> {
        Ok(RowId::Text(job_of(claim)?.job_id.as_str()))
    }

    async fn start(tx: &mut Tx, id: JobId, p: &ClaimParams<'_>) -> Result<Claimed, DbError> {
        let job = lock_ai_job(tx.conn(), &id)
            .await?
            .ok_or(DbError::NotFound("job"))?;
        let entry = outbox::insert(tx.conn(), &job.write()?).await?;
        Ok(Claimed::Claim(Box::new(Claim {
            tenant: job.tenant,
            key: job.key(),
            // The claim statement set the job's fence to `(g, attempt, 1)`.
            fence: job.fence,
            max_attempts: job.max_attempts,
            worker_id: p.worker.to_owned(),
            lease: p.lease,
            outbox: entry,
            task: ClaimedTask::Ai(job),
        })))
    }

    async fn end(tx: &mut Tx, claim: &Claim, end: End<'_>, fence: Fence) -> Result<Ended, DbError> {
        let cur = leased_ai_job(tx, claim).await?;
        let released = matches!(end, End::Release { .. }) && !cur.cancel_requested;
        let (status, error, run_after) = match end {
            End::Retry { run_after, message } => (JobStatus::Retrying, message, run_after),
            End::Release { message, now } if released => (JobStatus::Retrying, message, now),
            End::Dead { message, .. } => (JobStatus::Failed, message, cur.run_after_ms),
            End::Cancelled => (JobStatus::Failed, "cancelled", cur.run_after_ms),
            End::Release { now, .. } => (JobStatus::Failed, "cancelled", now),
        };
        let next = AiJob {
            status,
            fence,
            run_after_ms: run_after,
            lease_until_ms: None,
            error_message: Some(error.to_owned()),
            ..cur.clone()
        };
        let (_, entry) = apply_change(tx.conn(), &cur, &next).await?;
        if released {
            // The attempts left stay what they were before the claim (see `release`).
            dual!(tx.conn(), |c, d| {
                sqlx::query("UPDATE ai_jobs SET max_attempts = max_attempts + 1 WHERE job_id = $1")
                    .bind(cur.job_id.as_str())
                    .execute(&mut *c)
                    .await?;
            });
        }
        let cancelled = match end {
            End::Cancelled => true,
            End::Release { .. } => !released,
            End::Retry { .. } | End::Dead { .. } => false,
        };
        Ok(Ended::Written { entry, cancelled })
    }

    async fn reap(tx: &mut Tx, r: Reap<'_, AiJob>) -> Result<Reaped, DbError> {
        let cur = &r.job.row;
        let status = match r.verdict {
            Verdict::Retry => JobStatus::Retrying,
            Verdict::Dead | Verdict::Cancelled => JobStatus::Failed,
        };
        let next = AiJob {
            status,
            fence: Fence::between_attempts(cur.fence.generation, cur.attempt),
            run_after_ms: r.run_after,
            lease_until_ms: None,
            error_message: Some(clean_message(r.verdict.message())),
            ..cur.clone()
        };
        apply_change(tx.conn(), cur, &next).await?;
        Ok(Reaped::Moved)
    }
}

#[cfg(test)]
mod tests {
    use jobpulse_domain::JobStatus;

    /// The statuses the claim statement takes a job from: those that may start running, except
    /// RUNNING itself — a RUNNING job whose lease expired waits for the reaper (module docs).
    const AI_CLAIMABLE: [JobStatus; 2] = [JobStatus::Pending, JobStatus::Retrying];

    #[test]
    fn claimable_statuses_are_exactly_those_that_may_start_running() {
        let may_start: Vec<JobStatus> = JobStatus::ALL
            .into_iter()
            .filter(|s| *s != JobStatus::Running && s.can_transition(JobStatus::Running))
            .collect();
        assert_eq!(may_start, AI_CLAIMABLE);
        let sql = ai_claim_sql!("", "j.rowid");
        let taken_from = &sql[sql.find("WHERE (").expect("a WHERE")..];
        let taken_from = &taken_from[..taken_from.find(')').expect("closed")];
        for s in JobStatus::ALL {
            assert_eq!(
                taken_from.contains(&format!("'{}'", s.as_str())),
                AI_CLAIMABLE.contains(&s),
                "{s:?} in {taken_from}"
            );
        }
    }
}
