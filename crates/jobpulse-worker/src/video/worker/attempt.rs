//! One claimed attempt: the pipeline under a heartbeat, then exactly one final state change.
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

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jobpulse_db::{
    Claim, ClaimedTask, Committed, Db, DbError, FailOutcome, Heartbeat, OutboxEntry, Queue, Relay,
    ReleaseOutcome, Video,
};
use jobpulse_domain::{State, VideoStatus, steps};
use jobpulse_media::StorageKey;
use jobpulse_store::SharedStore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::VideoWorkerConfig;
use crate::progress::Reporter;
use crate::video::pipeline::{self, PipelineContext, PipelineError, VideoOutput, VideoTask};

/// What every attempt of one worker shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) db: Db,
    pub(super) store: SharedStore,
    pub(super) relay: Relay,
    pub(super) ctx: PipelineContext,
    pub(super) config: VideoWorkerConfig,
}

impl Shared {
    /// One reaper round (passes until nothing is left to reap, at most a few).
    pub(super) async fn reap(&self) {
        for _ in 0..10 {
            match self.db.reap_expired(Queue::Video).await {
                Ok(r) if r.retrying + r.dead + r.cancelled > 0 => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reaping expired video leases failed");
                    return;
                }
            }
        }
    }

    /// Publishes committed outbox rows now; on failure the background relay delivers them.
    async fn publish(&self, entries: &[OutboxEntry], what: &'static str) {
        if let Err(e) = self.relay.publish_now(entries).await {
            tracing::warn!(error = %e, what, "publishing now failed; the relay will deliver it");
        }
    }
}

/// Why an attempt was stopped from outside the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    CancelRequested,
    LeaseLost,
    /// The read model refused our writes as stale: someone newer owns the task.
    Superseded,
    Shutdown,
}

/// The attempt's cancellation token and the first reason it was cancelled for.
#[derive(Debug)]
pub(super) struct Stop {
    token: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Stop {
    pub(super) fn new() -> Self {
        Self {
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        }
    }

    /// Stops the attempt; returns false when it was already stopped (the first reason stays).
    pub(super) fn stop(&self, reason: StopReason) -> bool {
        let first = self.reason.set(reason).is_ok();
        self.token.cancel();
        first
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }

    fn is_lost(&self) -> bool {
        matches!(
            self.reason(),
            Some(StopReason::LeaseLost | StopReason::Superseded)
        )
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

/// Keeps `jobpulse_worker_busy` right however the attempt ends (including a panic).
struct Busy;

impl Busy {
    fn new() -> Self {
        metrics::gauge!("jobpulse_worker_busy", "queue" => "video").increment(1.0);
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        metrics::gauge!("jobpulse_worker_busy", "queue" => "video").decrement(1.0);
    }
}

/// Runs one claimed attempt to its end. `claimed_at` is an instant no later than the claim.
pub(super) async fn run(shared: Arc<Shared>, claim: Claim, claimed_at: Instant, stop: Arc<Stop>) {
    let ClaimedTask::Video { job_id, video } = &claim.task else {
        // The video queue only hands out video jobs; never touch another queue's job.
        tracing::error!(job.key = %claim.key, "the video queue handed out a non-video job");
        return;
    };
    let (job_id, video_id) = (*job_id, video.id.get());
    let span = tracing::info_span!(
        "video_attempt",
        tenant.id = %claim.tenant,
        video.id = video_id,
        job.id = job_id,
        job.attempt = claim.attempt(),
        worker.id = %shared.config.worker_id,
    );
    // Boxed: the pipeline's state machine is large (ffmpeg, storage, progress futures).
    Box::pin(attempt(&shared, &claim, video, claimed_at, &stop).instrument(span)).await;
}

async fn attempt(shared: &Shared, claim: &Claim, video: &Video, claimed_at: Instant, stop: &Stop) {
    let _busy = Busy::new();
    let started = Instant::now();
    shared
        .publish(std::slice::from_ref(&claim.outbox), "claim")
        .await;
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
    .with_min_interval(shared.config.progress_every);
    tracing::info!("transcode attempt started");
    let result = match StorageKey::parse(&video.file_key) {
        Ok(source) => {
            let task = VideoTask {
                tenant: claim.tenant,
                video: video.id,
                source,
            };
            let pipeline = pipeline::run(&shared.ctx, &task, &reporter, &stop.token);
            let keep_alive = keep_alive(shared, claim, &reporter, stop, claimed_at);
            tokio::select! {
                r = pipeline => r,
                never = keep_alive => match never {},
            }
        }
        Err(e) => Err(PipelineError::BadInput(format!(
            "the upload's storage key is invalid: {e}"
        ))),
    };
    let outcome = finish(shared, claim, &reporter, stop, result).await;
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!(
        "jobpulse_worker_attempts_total",
        "queue" => "video",
        "outcome" => outcome.as_str()
    )
    .increment(1);
    metrics::histogram!("jobpulse_worker_attempt_seconds", "queue" => "video").record(secs);
    tracing::info!(
        outcome = outcome.as_str(),
        seconds = secs,
        "transcode attempt ended"
    );
}

/// Extends the lease every `heartbeat_every` and slides the read-model TTL until the attempt
/// ends (the caller drops this future); stops the attempt when the answer says so. Never returns.
async fn keep_alive(
    shared: &Shared,
    claim: &Claim,
    reporter: &Reporter,
    stop: &Stop,
    claimed_at: Instant,
) -> Infallible {
    let lease = claim.lease;
    // When the lease last got extended, as an instant no later than the database's clock read.
    let mut extended_at = claimed_at;
    let mut failing = false;
    loop {
        tokio::time::sleep(shared.config.heartbeat_every).await;
        if stop.is_lost() {
            break;
        }
        let sent = Instant::now();
        // Asked even when our clock says the lease ran out (after a long pause, say): the
        // database's compare-and-set knows whether the job is still ours.
        let every = shared.config.heartbeat_every;
        match tokio::time::timeout(every, shared.db.heartbeat(claim)).await {
            Ok(Ok(beat)) => {
                extended_at = sent;
                if failing {
                    tracing::info!("heartbeats get through again");
                    failing = false;
                }
                match beat {
                    Heartbeat::Continue => {}
                    Heartbeat::CancelRequested => {
                        if stop.stop(StopReason::CancelRequested) {
                            tracing::info!("cancel requested; stopping the attempt");
                        }
                    }
                    Heartbeat::LeaseLost => {
                        stop.stop(StopReason::LeaseLost);
                        tracing::warn!("lease lost; stopping the attempt, writing nothing more");
                        break;
                    }
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "heartbeat failed; retrying on the next tick");
                    failing = true;
                }
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("heartbeat timed out; retrying on the next tick");
                    failing = true;
                }
            }
        }
        if extended_at.elapsed() >= lease {
            stop.stop(StopReason::LeaseLost);
            tracing::warn!(
                "no heartbeat got through for a whole lease; presuming the lease lost and \
                 stopping the attempt"
            );
            break;
        }
        reporter.heartbeat().await;
        // After a cancel request the lease is still needed for the acknowledgement: the loop
        // only ends once the attempt counts as lost.
        if reporter.superseded() && stop.stop(StopReason::Superseded) {
            tracing::warn!("the read model holds a newer state; stopping the attempt");
        }
    }
    std::future::pending().await
}

/// The attempt's one final state change (see the module docs for the table).
async fn finish(
    shared: &Shared,
    claim: &Claim,
    reporter: &Reporter,
    stop: &Stop,
    result: Result<VideoOutput, PipelineError>,
) -> Outcome {
    let superseded = reporter.superseded();
    match (stop.reason(), result) {
        (Some(StopReason::LeaseLost), _) => Outcome::Lost,
        (Some(StopReason::Superseded), _) | (None, Err(PipelineError::Cancelled)) => {
            if !superseded && stop.reason().is_none() {
                tracing::error!("the pipeline stopped itself without a reason; giving the job up");
            }
            // Someone newer owns the record: a delete (which also asks us to stop) or a reaper
            // that took the job from us. Only the database knows which; its compare-and-set
            // makes asking safe even for a zombie.
            match shared.db.heartbeat(claim).await {
                Ok(Heartbeat::CancelRequested) => cancelled(shared, claim).await,
                Ok(Heartbeat::Continue) => {
                    tracing::warn!(
                        "the read model is ahead of the database; giving the attempt up (the \
                         lease will expire and the job be retried)"
                    );
                    Outcome::Lost
                }
                _ => Outcome::Lost,
            }
        }
        (Some(StopReason::CancelRequested), _) => cancelled(shared, claim).await,
        (Some(StopReason::Shutdown), Err(PipelineError::Cancelled)) => release(shared, claim).await,
        (_, Ok(out)) => {
            let seq = reporter.next_seq();
            let r = final_write("complete", || {
                shared
                    .db
                    .complete_video(claim, &out.hls_path, out.duration_secs, seq)
            })
            .await;
            published(shared, r, Outcome::Ready).await
        }
        (_, Err(PipelineError::BadInput(reason))) => {
            let r = final_write("fail", || shared.db.fail(claim, &reason, false)).await;
            published(shared, r, Outcome::Failed).await
        }
        (_, Err(PipelineError::TimedOut(reason))) => {
            // Once: a second attempt at the same budget is as long as it is worth waiting.
            let retry = claim.attempt() < 2;
            let r = final_write("fail", || shared.db.fail(claim, &reason, retry)).await;
            match &r {
                Ok(c) if c.value == FailOutcome::Dead => {
                    published(shared, r, Outcome::Failed).await
                }
                _ => published(shared, r, Outcome::Retry).await,
            }
        }
        (_, Err(PipelineError::Transient(reason))) => {
            let r = final_write("fail", || shared.db.fail(claim, &reason, true)).await;
            match &r {
                Ok(c) if c.value == FailOutcome::Dead => {
                    published(shared, r, Outcome::Failed).await
                }
                _ => published(shared, r, Outcome::Retry).await,
            }
        }
    }
}

async fn cancelled(shared: &Shared, claim: &Claim) -> Outcome {
    let r = final_write("cancelled", || shared.db.cancelled(claim)).await;
    published(shared, r, Outcome::Cancelled).await
}

async fn release(shared: &Shared, claim: &Claim) -> Outcome {
    let r = final_write("release", || {
        shared.db.release(claim, "the worker shut down")
    })
    .await;
    let outcome = match &r {
        Ok(c) if c.value == ReleaseOutcome::Cancelled => Outcome::Cancelled,
        _ => Outcome::Shutdown,
    };
    published(shared, r, outcome).await
}

/// Publishes a final write's outbox rows, or logs why there is nothing to publish.
async fn published<T>(shared: &Shared, r: Result<Committed<T>, DbError>, ok: Outcome) -> Outcome {
    match r {
        Ok(c) => {
            shared.publish(&c.outbox, ok.as_str()).await;
            ok
        }
        Err(DbError::LeaseLost) => {
            tracing::warn!("the final write was refused: the lease was lost (nothing written)");
            Outcome::Lost
        }
        Err(DbError::Cancelled) => {
            tracing::info!("the video was deleted while the attempt ran; its result is discarded");
            Outcome::Cancelled
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                "the final write failed; the lease will expire and the job be retried"
            );
            Outcome::Lost
        }
    }
}

/// Runs a final write, retrying transient database errors a few times (every variant is a
/// compare-and-set on the lease, so a retry can never apply twice).
async fn final_write<T, F, Fut>(what: &'static str, mut write: F) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    for delay_ms in [200, 1000, 3000] {
        match write().await {
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, what, "final write failed; retrying");
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            r => return r,
        }
    }
    write().await
}
