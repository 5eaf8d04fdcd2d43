//! Claiming a runnable job: the fewest running of its tenant first, then the oldest (see the
//! `queue` module docs). The statements themselves are the tables' ([`TaskTable::claim`]).

use std::time::Duration;

use super::table::{self, AiTable, ClaimParams, Claimed, TaskTable, VideoTable};
use super::{Caps, Claim, Queue, check_worker_id};
use crate::conn::{Dialect, Tx, dual, now_ms};
use crate::{Db, DbError};

impl Db {
    /// Claims a runnable job of `queue` — of the tenant with the fewest running, then the oldest
    /// — for `worker_id` with a lease of `lease`, respecting `caps`; `None` when nothing is
    /// runnable. See the module docs.
    pub async fn claim(
        &self,
        queue: Queue,
        worker_id: &str,
        lease: Duration,
        caps: Caps,
    ) -> Result<Option<Claim>, DbError> {
        check_worker_id(worker_id)?;
        // Retries: a job inconsistent with its task was closed, or (per-tenant cap on
        // PostgreSQL) the picked tenant reached its cap meanwhile.
        for _ in 0..8 {
            let p = ClaimParams {
                worker: worker_id,
                lease,
                now: now_ms(),
                caps,
            };
            let attempt = match queue {
                Queue::Video => self.claim_in::<VideoTable>(&p).await?,
                Queue::Ai => self.claim_in::<AiTable>(&p).await?,
            };
            match attempt {
                Claimed::Claim(claim) => {
                    metrics::counter!("jobpulse_queue_claims_total", "queue" => queue.as_str())
                        .increment(1);
                    tracing::info!(
                        tenant.id = %claim.tenant,
                        job.id = %claim.job_ref(),
                        attempt = claim.attempt(),
                        worker = worker_id,
                        queue = queue.as_str(),
                        "job claimed"
                    );
                    // Pass the baton: if more work is waiting, another idle worker should look.
                    self.signals().queue(queue).notify_one();
                    return Ok(Some(*claim));
                }
                Claimed::Empty => return Ok(None),
                Claimed::Skipped => {}
            }
        }
        Ok(None)
    }

    /// One claim statement of `T` in its own transaction. With caps on PostgreSQL the counts
    /// must not race (module docs, Fairness): under a global cap every claim of the queue first
    /// takes the queue's advisory lock; under a per-tenant cap alone, the claim takes its
    /// tenant's lock once it knows the tenant and counts that tenant's running jobs again (a new
    /// statement, so it sees every claim that held the lock before; its own row counts too),
    /// and gives the job back (rollback, [`Claimed::Skipped`]) when that is over the cap.
    async fn claim_in<T: TaskTable>(&self, p: &ClaimParams<'_>) -> Result<Claimed, DbError> {
        let mut tx = self.begin().await?;
        let postgres = tx.dialect() == Dialect::Postgres;
        let queue_lock = postgres && p.caps.global.is_some();
        let tenant_lock = postgres && !queue_lock && p.caps.per_tenant.is_some();
        if queue_lock {
            dual!(tx.conn(), |c, d| {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(T::CLAIM_LOCK)
                    .execute(&mut *c)
                    .await?;
            });
        }
        let claimed = match table::pick::<T>(&mut tx, p).await? {
            Some(picked) => T::start(&mut tx, picked, p).await?,
            None => Claimed::Empty,
        };
        if let (Claimed::Claim(claim), true, Some(cap)) = (&claimed, tenant_lock, p.caps.per_tenant)
        {
            let running = tenant_running::<T>(&mut tx, claim, p.now).await?;
            if running > i64::from(cap) {
                // Another claim of the tenant committed after our statement's snapshot: not
                // ours to take. Rolled back on drop; the next statement sees that claim.
                drop(tx);
                return Ok(Claimed::Skipped);
            }
        }
        let wrote = matches!(claimed, Claimed::Claim(_));
        self.commit(tx, wrote).await?;
        Ok(claimed)
    }
}

/// Takes the claim's tenant's claim lock of `T` (waiting for any other claim of the tenant to
/// end), then counts the tenant's RUNNING jobs with a live lease, this claim included.
async fn tenant_running<T: TaskTable>(
    tx: &mut Tx,
    claim: &Claim,
    now: i64,
) -> Result<i64, DbError> {
    let tenant = i64::from(claim.tenant);
    // The two-key form: (queue, tenant). Tenant ids past 2^31 share a key with another tenant,
    // which only makes those two wait for each other.
    let queue_key = i32::try_from(T::CLAIM_LOCK).unwrap_or(i32::MAX);
    let tenant_key = (tenant & 0x7fff_ffff) as i32;
    dual!(tx.conn(), |c, d| {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(queue_key)
            .bind(tenant_key)
            .execute(&mut *c)
            .await?;
        let n: i64 = sqlx::query_scalar(T::RUNNING_SQL)
            .bind(tenant)
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
        Ok(n)
    })
}
