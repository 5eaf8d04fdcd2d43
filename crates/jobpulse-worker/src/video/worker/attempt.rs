//! One claimed attempt: the pipeline under the lease's keep-alive, then exactly one final state
//! change. The lease protocol itself (keep-alive, stop reasons, the final write and its retries)
//! is [`crate::lease`]'s, shared with the AI worker; this module maps the pipeline's results.
//!
//! How an attempt ends, by what stopped it (first reason wins) and what the pipeline returned:
//!
//! | stopped by | pipeline result | final write | outcome label |
//! |---|---|---|---|
//! | lease lost (heartbeat, or no heartbeat through for a whole lease) | any | none | `lost` |
//! | read model refused our writes as stale | any | none, unless the database asks for a cancel acknowledgement | `lost` / `cancelled` |
//! | cancel requested | any | [`Db::cancelled`] | `cancelled` |
//! | shutdown | cancelled | [`Db::release`] | `shutdown` |
//! | nothing, or shutdown | output | [`Db::complete_video`] | `ready` |
//! | nothing, or shutdown | bad input | [`Db::fail`], permanent | `failed` |
//! | nothing, or shutdown | transient | [`Db::fail`], retryable | `retry` (`failed` after the last attempt) |
//! | nothing, or shutdown | timed out (transcode budget) | [`Db::fail`], retryable on the first attempt only | `retry`, then `failed` |
//!
//! A final write refused with `LeaseLost` (a zombie) or `Cancelled` (video deleted meanwhile)
//! is logged and counted, nothing else. Transient database errors on the final write are
//! retried a few times before the attempt is given up (the lease then expires and the reaper
//! schedules a retry).

use std::sync::Arc;

use jobpulse_db::{Claim, ClaimedTask, Db, DbError, FailOutcome, Queue, ReleaseOutcome, Video};
use jobpulse_domain::{State, VideoStatus, steps};
use jobpulse_media::StorageKey;
use jobpulse_store::SharedStore;
use jobpulse_sync::Relay;
use tokio::time::Instant;

use super::VideoWorkerConfig;
use crate::claim_loop::{Attempt, TaskKind};
use crate::lease::{Lease, Settled, Stop};
use crate::progress::Reporter;
use crate::video::pipeline::{self, PipelineContext, PipelineError, VideoOutput, VideoTask};

/// What every attempt of one worker shares: the video [`TaskKind`].
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) db: Db,
    pub(super) store: SharedStore,
    pub(super) relay: Relay,
    pub(super) ctx: PipelineContext,
    pub(super) config: VideoWorkerConfig,
}

impl TaskKind for Shared {
    const QUEUE: Queue = Queue::Video;

    fn span(&self, claim: &Claim) -> tracing::Span {
        let (job_id, video_id) = match &claim.task {
            ClaimedTask::Video { job_id, video } => (Some(*job_id), Some(video.id.get())),
            ClaimedTask::Ai(_) => (None, None),
        };
        tracing::info_span!(
            "video_attempt",
            tenant.id = %claim.tenant,
            video.id = video_id,
            job.id = job_id,
            job.attempt = claim.attempt(),
            worker.id = %self.config.common.worker_id,
        )
    }

    async fn run_attempt(self: Arc<Self>, a: Attempt) -> &'static str {
        let Attempt {
            claim,
            claimed_at,
            stop,
        } = a;
        let ClaimedTask::Video { video, .. } = &claim.task else {
            // The video queue only hands out video jobs; never touch another queue's job.
            tracing::error!(job.key = %claim.key, "the video queue handed out a non-video job");
            return Outcome::Lost.as_str();
        };
        // Boxed: the pipeline's state machine is large (ffmpeg, storage, progress futures).
        Box::pin(attempt(&self, &claim, video, claimed_at, &stop))
            .await
            .as_str()
    }
}

/// How an attempt ended (the `outcome` label of `jobpulse_worker_attempts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ready,
    Failed,
    Retry,
    Cancelled,
    Lost,
    Shutdown,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ready => "ready",
            Outcome::Failed => "failed",
            Outcome::Retry => "retry",
            Outcome::Cancelled => "cancelled",
            Outcome::Lost => "lost",
            Outcome::Shutdown => "shutdown",
        }
    }
}

async fn attempt(
    shared: &Shared,
    claim: &Claim,
    video: &Video,
    claimed_at: Instant,
    stop: &Stop,
) -> Outcome {
    let started = Instant::now();
    let lease = Lease::new(&shared.db, &shared.relay, claim);
    let mut base = State::video(VideoStatus::Processing);
    // As the claim's own write (and repair) shows it, so the field does not flicker.
    base.attempt = Some(claim.attempt());
    let reporter = Reporter::new(
        shared.store.clone(),
        claim.key.clone(),
        claim.fence,
        steps::VIDEO,
        base,
    )
    .with_min_interval(shared.config.common.progress_every);
    tracing::info!("transcode attempt started");
    let result = match StorageKey::parse(&video.file_key) {
        Ok(source) => {
            let task = VideoTask {
                tenant: claim.tenant,
                video: video.id,
                source,
            };
            let pipeline = pipeline::run(&shared.ctx, &task, &reporter, stop.token());
            let keep_alive = lease.keep_alive(
                shared.config.common.heartbeat_every,
                &reporter,
                stop,
                claimed_at,
            );
            tokio::select! {
                r = pipeline => r,
                never = keep_alive => match never {},
            }
        }
        Err(e) => Err(PipelineError::BadInput(format!(
            "the upload's storage key is invalid: {e}"
        ))),
    };
    let outcome = finish(&lease, &reporter, stop, result).await;
    tracing::info!(
        outcome = outcome.as_str(),
        seconds = started.elapsed().as_secs_f64(),
        "transcode attempt ended"
    );
    outcome
}

/// The attempt's one final state change (see the module docs for the table).
async fn finish(
    lease: &Lease<'_>,
    reporter: &Reporter,
    stop: &Stop,
    result: Result<VideoOutput, PipelineError>,
) -> Outcome {
    // A pipeline that stopped on its token produced nothing.
    let result = match result {
        Err(PipelineError::Cancelled) => None,
        r => Some(r),
    };
    let retry_or_dead = |r: FailOutcome| match r {
        FailOutcome::Dead => Outcome::Failed,
        FailOutcome::Retrying { .. } => Outcome::Retry,
    };
    match lease.settle(stop, result).await {
        Settled::Lost | Settled::Finished(Err(PipelineError::Cancelled)) => Outcome::Lost,
        Settled::Cancel => ended(lease.cancelled().await, |()| Outcome::Cancelled),
        Settled::Release => ended(lease.release("the worker shut down").await, |r| match r {
            ReleaseOutcome::Cancelled => Outcome::Cancelled,
            ReleaseOutcome::Released => Outcome::Shutdown,
        }),
        Settled::Finished(Ok(out)) => {
            let seq = reporter.next_seq();
            let r = lease
                .write("complete", || {
                    lease
                        .db
                        .complete_video(lease.claim, &out.hls_path, out.duration_secs, seq)
                })
                .await;
            ended(r, |_| Outcome::Ready)
        }
        Settled::Finished(Err(PipelineError::BadInput(reason))) => {
            ended(lease.fail(&reason, false).await, |_| Outcome::Failed)
        }
        Settled::Finished(Err(PipelineError::TimedOut(reason))) => {
            // Once: a second attempt at the same budget is as long as it is worth waiting.
            let retry = lease.claim.attempt() < 2;
            ended(lease.fail(&reason, retry).await, retry_or_dead)
        }
        Settled::Finished(Err(PipelineError::Transient(reason))) => {
            ended(lease.fail(&reason, true).await, retry_or_dead)
        }
    }
}

/// The outcome of a final write (its error is already logged).
fn ended<T>(r: Result<T, DbError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => ok(v),
        Err(DbError::Cancelled) => Outcome::Cancelled,
        Err(_) => Outcome::Lost,
    }
}
