//! Claiming a runnable job: the fewest running of its tenant first, then the oldest (see the
//! `queue` module docs).

use std::time::Duration;

use jobpulse_domain::{Fence, JobId, TaskKey, VideoStatus};

use super::{Caps, Claim, ClaimedTask, Queue, check_worker_id};
use crate::ai_jobs::lock_ai_job;
use crate::conn::{Conn, Dialect, RowExt, Tx, dual, ms, now_ms};
use crate::model::{Video, VideoJob, VideoJobState, video_job_cols};
use crate::videos::{apply_video_change, end_video_job, lock_video};
use crate::{Db, DbError, outbox};

/// Advisory-lock keys serializing capped claims per queue on PostgreSQL ("jpvq", "jpaq").
const VIDEO_CLAIM_LOCK: i64 = 0x6a70_7671;
const AI_CLAIM_LOCK: i64 = 0x6a70_6171;

/// The claim statement: `$1` owner, `$2` lease end, `$3` now, `$4` per-tenant cap, `$5` global
/// cap (NULL = none). `$lock` is `FOR NO KEY UPDATE OF j SKIP LOCKED` on PostgreSQL (see the
/// `queue` module docs on locks). `r` holds each tenant's RUNNING jobs (live lease); the tenant
/// with the fewest goes first, then the oldest job (module docs, Fairness).
macro_rules! video_claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE video_jobs SET state = 'RUNNING', attempt = attempt + 1, lease_owner = $1, \
             lease_until = $2, heartbeat_at = $3, updated_at = $3 \
             WHERE id = (SELECT j.id FROM video_jobs j \
             LEFT JOIN (SELECT tenant_id, COUNT(*) AS n FROM video_jobs \
                  WHERE state = 'RUNNING' AND lease_until > $3 GROUP BY tenant_id) r \
                  ON r.tenant_id = j.tenant_id \
             WHERE (j.state = 'QUEUED' OR (j.state = 'RETRY_WAIT' AND j.run_after <= $3)) \
             AND ($4 IS NULL OR COALESCE(r.n, 0) < $4) \
             AND ($5 IS NULL OR (SELECT COUNT(*) FROM video_jobs g WHERE g.state = 'RUNNING' \
                  AND g.lease_until > $3) < $5) \
             ORDER BY COALESCE(r.n, 0), j.id LIMIT 1 ",
            $lock,
            ") RETURNING ",
            video_job_cols!()
        )
    };
}

/// `$order`: the insertion-order tie-breaker for jobs created in the same millisecond
/// (PostgreSQL `queue_seq`, SQLite `rowid`; migration 0002). Fairness as for videos.
macro_rules! ai_claim_sql {
    ($lock:literal, $order:literal) => {
        concat!(
            "UPDATE ai_jobs SET status = 'RUNNING', attempt = attempt + 1, \
             fence_attempt = attempt + 1, fence_seq = 1, lease_owner = $1, lease_until = $2, \
             heartbeat_at = $3, updated_at = $3 \
             WHERE job_id = (SELECT j.job_id FROM ai_jobs j \
             LEFT JOIN (SELECT tenant_id, COUNT(*) AS n FROM ai_jobs \
                  WHERE status = 'RUNNING' AND lease_until > $3 GROUP BY tenant_id) r \
                  ON r.tenant_id = j.tenant_id \
             WHERE (j.status = 'PENDING' OR (j.status = 'RETRYING' AND j.run_after <= $3)) \
             AND ($4 IS NULL OR COALESCE(r.n, 0) < $4) \
             AND ($5 IS NULL OR (SELECT COUNT(*) FROM ai_jobs g WHERE g.status = 'RUNNING' \
                  AND g.lease_until > $3) < $5) \
             ORDER BY COALESCE(r.n, 0), j.created_at, ",
            $order,
            " LIMIT 1 ",
            $lock,
            ") RETURNING job_id"
        )
    };
}

enum Attempt {
    Claimed(Box<Claim>),
    Empty,
    /// The picked job was inconsistent with its video and was closed; try again.
    Skipped,
}

struct Params<'a> {
    worker: &'a str,
    lease: Duration,
    now: i64,
    caps: Caps,
}

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
            let p = Params {
                worker: worker_id,
                lease,
                now: now_ms(),
                caps,
            };
            let attempt = match queue {
                Queue::Video => self.claim_video(&p).await?,
                Queue::Ai => self.claim_ai(&p).await?,
            };
            match attempt {
                Attempt::Claimed(claim) => {
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
                Attempt::Empty => return Ok(None),
                Attempt::Skipped => {}
            }
        }
        Ok(None)
    }

    async fn begin_claim(&self, queue: Queue, caps: Caps) -> Result<Tx, DbError> {
        let mut tx = self.begin().await?;
        if tx.dialect() == Dialect::Postgres && !caps.is_unlimited() {
            let key = match queue {
                Queue::Video => VIDEO_CLAIM_LOCK,
                Queue::Ai => AI_CLAIM_LOCK,
            };
            dual!(tx.conn(), |c, d| {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(key)
                    .execute(&mut *c)
                    .await?;
            });
        }
        Ok(tx)
    }

    async fn claim_video(&self, p: &Params<'_>) -> Result<Attempt, DbError> {
        let mut tx = self.begin_claim(Queue::Video, p.caps).await?;
        let Some(job) = claim_video_row(tx.conn(), p).await? else {
            tx.commit().await?;
            return Ok(Attempt::Empty);
        };
        let video = lock_video(tx.conn(), job.video_id).await?;
        let consistent = video.as_ref().filter(|v| {
            v.deleted_at_ms.is_none()
                && v.fence.generation == job.generation
                && v.status.can_transition(VideoStatus::Processing)
        });
        let Some(cur) = consistent else {
            // Should not happen (deletes and retries close jobs in the same transaction), but a
            // job that cannot run must not block the queue head forever.
            tracing::error!(
                video.id = %job.video_id,
                job.id = job.id,
                "claimed a job inconsistent with its video; closing it"
            );
            end_video_job(
                tx.conn(),
                &job,
                VideoJobState::Cancelled,
                "inconsistent",
                Some("job does not match its video"),
            )
            .await?;
            tx.commit().await?;
            return Ok(Attempt::Skipped);
        };
        let fence = Fence::claim(job.generation, job.attempt)?;
        let next = Video {
            status: VideoStatus::Processing,
            fence,
            attempt: job.attempt,
            ..cur.clone()
        };
        let (video, entry) = apply_video_change(tx.conn(), cur, &next).await?;
        self.commit(tx, true).await?;
        Ok(Attempt::Claimed(Box::new(Claim {
            tenant: video.tenant,
            key: TaskKey::video(video.tenant, video.id),
            fence,
            max_attempts: job.max_attempts,
            worker_id: p.worker.to_owned(),
            lease: p.lease,
            outbox: entry,
            task: ClaimedTask::Video {
                job_id: job.id,
                video,
            },
        })))
    }

    async fn claim_ai(&self, p: &Params<'_>) -> Result<Attempt, DbError> {
        let mut tx = self.begin_claim(Queue::Ai, p.caps).await?;
        let Some(id) = claim_ai_row(tx.conn(), p).await? else {
            tx.commit().await?;
            return Ok(Attempt::Empty);
        };
        let job = lock_ai_job(tx.conn(), &id)
            .await?
            .ok_or(DbError::NotFound("job"))?;
        let entry = outbox::insert(tx.conn(), &job.write()?).await?;
        self.commit(tx, true).await?;
        Ok(Attempt::Claimed(Box::new(Claim {
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
}

fn cap(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

async fn claim_video_row(c: Conn<'_>, p: &Params<'_>) -> Result<Option<VideoJob>, DbError> {
    dual!(c, |c, d| {
        let sql = d.pick(
            video_claim_sql!("FOR NO KEY UPDATE OF j SKIP LOCKED"),
            video_claim_sql!(""),
        );
        sqlx::query(sql)
            .bind(p.worker)
            .bind(p.now.saturating_add(ms(p.lease)))
            .bind(p.now)
            .bind(cap(p.caps.per_tenant))
            .bind(cap(p.caps.global))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| VideoJob::from_row(&r))
            .transpose()
    })
}

async fn claim_ai_row(c: Conn<'_>, p: &Params<'_>) -> Result<Option<JobId>, DbError> {
    dual!(c, |c, d| {
        let sql = d.pick(
            ai_claim_sql!("FOR NO KEY UPDATE OF j SKIP LOCKED", "j.queue_seq"),
            ai_claim_sql!("", "j.rowid"),
        );
        sqlx::query(sql)
            .bind(p.worker)
            .bind(p.now.saturating_add(ms(p.lease)))
            .bind(p.now)
            .bind(cap(p.caps.per_tenant))
            .bind(cap(p.caps.global))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| JobId::parse(&r.text("job_id")?).map_err(DbError::corrupt))
            .transpose()
    })
}

#[cfg(test)]
mod tests {
    use jobpulse_domain::JobStatus;

    use super::*;

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
        let video_sql = video_claim_sql!("");
        let taken_from = &video_sql[video_sql.find("WHERE (").expect("a WHERE")..];
        assert!(
            !taken_from[..taken_from.find("AND (").expect("caps")].contains("'RUNNING'"),
            "an expired lease is never re-claimed without the reaper: {taken_from}"
        );
    }
}
