//! Issue 15 finding 1 (unbounded transcodes), in the worker: a source over the video limits is
//! FAILED with the limit's sentence and not retried (a direct upload is only probed here); a
//! transcode past its time budget has its ffmpeg killed, is retried once, then FAILED; an
//! ffmpeg past its memory budget fails the video cleanly instead of growing.

use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::{Video, VideoJobState};
use jobpulse_domain::{VideoId, VideoStatus};
use jobpulse_media::testing::ClipSpec;
use jobpulse_media::{MediaLimits, Toolchain, TranscodeOptions, keys};
use jobpulse_worker::video::{PipelineContext, VideoWorker, WorkerHandle};

use crate::common::{Backend, Env, both, clip, fast, long_clip, pids_with, short_clip, slow};

fn worker(
    env: &Env,
    tools: Toolchain,
    options: TranscodeOptions,
    limits: MediaLimits,
) -> WorkerHandle {
    let ctx = PipelineContext {
        toolchain: tools,
        storage: env.storage.clone(),
        work_root: env.work_root(),
        options,
        limits,
    };
    VideoWorker::new(
        env.db.clone(),
        env.store.clone(),
        env.relay.clone(),
        ctx,
        env.config("w1"),
    )
    .spawn()
}

/// Waits for FAILED and checks it is final: the job dead after `attempts`, nothing published.
async fn failed_for_good(
    env: &Env,
    id: VideoId,
    attempts: u32,
    within: Duration,
) -> anyhow::Result<Video> {
    let row = env
        .until_video(id, within, "FAILED", |v| v.status == VideoStatus::Failed)
        .await?;
    let jobs = env.jobs(id).await?;
    assert_eq!(
        (jobs.len(), jobs[0].state, jobs[0].attempt),
        (1, VideoJobState::Dead, attempts),
        "{jobs:?}"
    );
    let master = keys::hls_master_key(env.tenant, id);
    assert!(
        !env.storage.exists(&master).await?,
        "no HLS output published"
    );
    Ok(row)
}

async fn a_video_over_the_limits_fails_in_the_worker_without_a_retry(
    b: Backend,
) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    // The third file: 10 h of 16x16 at 1 fps (it made 9 002 segments), 470 KB.
    let long = clip(&ClipSpec::new(36_000.0, 16, 16).at_fps(1).still()).await?;
    let video = env.upload(&long).await?;
    let started = Instant::now();
    let w = worker(&env, env.tools.clone(), fast(), MediaLimits::default());
    let row = failed_for_good(&env, video.id, 1, Duration::from_secs(30)).await?;
    eprintln!(
        "10 h file FAILED by the worker in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        row.error_reason.as_deref(),
        Some("the video is 10 h long; the limit is 4 h")
    );
    w.shutdown().await?;
    Ok(())
}
both!(a_video_over_the_limits_fails_in_the_worker_without_a_retry);

async fn a_transcode_past_its_time_budget_is_killed_retried_once_and_failed(
    b: Backend,
) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    // Many seconds of veryslow encoding against a 1 s cap.
    let source = clip(&long_clip()).await?;
    let video = env.upload(&source).await?;
    let options = TranscodeOptions {
        timeout_max: Duration::from_secs(1),
        ..slow()
    };
    let started = Instant::now();
    let w = worker(&env, env.tools.clone(), options, MediaLimits::default());
    let row = failed_for_good(&env, video.id, 2, Duration::from_secs(60)).await?;
    let took = started.elapsed();
    let reason = row.error_reason.clone().context("error_reason")?;
    assert_eq!(
        reason,
        "the transcode did not finish within its time budget (1 s for 10 s of video); ffmpeg \
         was stopped"
    );
    // Two attempts of about a second each plus the 1 s backoff; a transcode to the end would
    // take much longer at veryslow.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let work = env.work_root();
    let left = pids_with(&work.to_string_lossy());
    assert!(left.is_empty(), "ffmpeg still running: {left:?}");
    eprintln!("timed out twice and FAILED in {} ms", took.as_millis());
    w.shutdown().await?;
    Ok(())
}
both!(a_transcode_past_its_time_budget_is_killed_retried_once_and_failed);

async fn ffmpeg_past_its_memory_budget_fails_the_video_cleanly(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    // 8192x8192, two frames: with two threads ffmpeg maps ~710 MiB to transcode it, a 640x360
    // clip ~410 MiB. The pixel limits are lifted so that only the memory budget is in the way.
    let budget = 600 * 1024 * 1024;
    let tools = env.tools.clone().with_memory_limit(Some(budget));
    let limits = MediaLimits {
        max_dimension: 16_384,
        max_pixels: 16_384 * 16_384,
        ..MediaLimits::default()
    };
    let options = TranscodeOptions {
        threads: Some(2),
        ..fast()
    };
    let huge = env
        .upload(&clip(&ClipSpec::new(0.08, 8192, 8192).still()).await?)
        .await?;
    let small = env.upload(&clip(&short_clip()).await?).await?;
    let w = worker(&env, tools, options, limits);
    let row = failed_for_good(&env, huge.id, 1, Duration::from_secs(60)).await?;
    let reason = row.error_reason.clone().context("error_reason")?;
    assert!(
        reason.starts_with("ffmpeg ran out of its memory budget (600 MiB)"),
        "{reason}"
    );
    // The same budget is enough for an ordinary clip.
    env.until_video(small.id, Duration::from_secs(60), "READY", |v| {
        v.status == VideoStatus::Ready
    })
    .await?;
    w.shutdown().await?;
    Ok(())
}
both!(ffmpeg_past_its_memory_budget_fails_the_video_cleanly);
