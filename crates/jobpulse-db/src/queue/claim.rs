//! Claiming a runnable job: the fewest running of its tenant first, then the oldest (see the
//! `queue` module docs). The statements themselves are the tables' ([`TaskTable::claim`]).

use std::time::Duration;

use super::table::{self, AiTable, ClaimParams, Claimed, TaskTable, VideoTable};
use super::{Caps, Claim, Queue, check_worker_id};
use crate::conn::{Dialect, dual, now_ms};
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
        for _ in 0..3 {
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

    /// One claim statement of `T` in its own transaction; with caps on PostgreSQL, claims of the
    /// queue first take its advisory lock (module docs, Fairness).
    async fn claim_in<T: TaskTable>(&self, p: &ClaimParams<'_>) -> Result<Claimed, DbError> {
        let mut tx = self.begin().await?;
        if tx.dialect() == Dialect::Postgres && !p.caps.is_unlimited() {
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
        let wrote = matches!(claimed, Claimed::Claim(_));
        self.commit(tx, wrote).await?;
        Ok(claimed)
    }
}
