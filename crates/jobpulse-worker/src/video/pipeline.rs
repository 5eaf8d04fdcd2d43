//! The seven steps of one video transcode attempt (docs/contract.md §4), with real progress.
//!
//! 1 presigning (work dir, keys) · 2 downloading (source from media storage) · 3 probing
//! (ffprobe) · 4 transcoding (one ffmpeg run to HLS; its `-progress` stream drives the step
//! percent and the measured-speed ETA) · 5 validating (playlists parse, every rendition has
//! segments) · 6 thumbnail · 7 uploading (every output file, then the thumbnail).
//!
//! Bounds (issue 15): after probing, the source is checked against [`PipelineContext::limits`]
//! (over a limit: FAILED, not retried, the limit's sentence as `error_reason`); the transcode
//! runs within [`TranscodeOptions::time_budget`] of the probed duration (past it ffmpeg is
//! killed and the attempt ends [`PipelineError::TimedOut`], which the worker retries once) and
//! under the toolchain's memory budget (hit: FAILED, not retried — the same file needs the same
//! memory next time).
//!
//! The work directory is a `TempDir`: it is removed when the attempt ends, however it ends
//! (success, failure, cancel, panic unwinding). Cancellation (delete, lease lost, shutdown)
//! reaches ffmpeg at once through the token: it is killed, not waited for. An attempt whose
//! progress the read model refuses as stale (someone newer owns the task) stops at the next
//! step boundary at the latest, so a superseded attempt does not go on to upload its output.

use std::path::PathBuf;

use jobpulse_domain::{TenantId, VideoId};
use jobpulse_media::limits::human_duration;
use jobpulse_media::{
    HlsJob, MediaError, MediaLimits, MediaStorage, StorageError, StorageKey, Toolchain,
    TranscodeOptions, TranscodeProgress, keys, thumbnail_time, validate_hls,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::progress::{Eta, Reporter};

/// What a pipeline run needs besides the task.
#[derive(Debug, Clone)]
pub struct PipelineContext {
    pub toolchain: Toolchain,
    pub storage: MediaStorage,
    /// Parent of the per-attempt work directories.
    pub work_root: PathBuf,
    pub options: TranscodeOptions,
    /// The largest source transcoded; checked after probing.
    pub limits: MediaLimits,
}

/// The input of one attempt.
#[derive(Debug, Clone)]
pub struct VideoTask {
    pub tenant: TenantId,
    pub video: VideoId,
    pub source: StorageKey,
}

/// What a successful attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOutput {
    /// Storage key of the master playlist (docs/contract.md `hls_path`).
    pub hls_path: String,
    pub duration_secs: u32,
    pub thumbnail: String,
    pub renditions: Vec<String>,
}

/// Why an attempt did not produce output.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input cannot be transcoded; retrying the same file will not help.
    #[error("{0}")]
    BadInput(String),
    /// Something that may work next time (I/O, storage, a crashed tool).
    #[error("{0}")]
    Transient(String),
    /// The transcode ran out of its wall-clock budget and ffmpeg was killed. Retried once (a
    /// machine loaded by something else may be at fault), FAILED after that.
    #[error("{0}")]
    TimedOut(String),
    #[error("cancelled")]
    Cancelled,
}

/// Why an output is too short for its source, if it is: the source's header promised
/// `probed` seconds and only `output` seconds could be decoded — a truncated or damaged upload
/// (e.g. an MP4 whose index comes first and whose data was cut off), which ffmpeg transcodes
/// "successfully" as far as the data goes. A tolerance of 2 s or 10 % absorbs streams of
/// slightly different lengths.
pub fn short_output(probed: f64, output: f64) -> Option<String> {
    let tolerance = (probed * 0.10).max(2.0);
    (probed.is_finite() && output + tolerance < probed).then(|| {
        format!(
            "the source is truncated or damaged: only {output:.1} s of its {probed:.1} s could be decoded"
        )
    })
}

impl From<MediaError> for PipelineError {
    fn from(e: MediaError) -> Self {
        if matches!(e, MediaError::Cancelled) {
            PipelineError::Cancelled
        } else if e.is_bad_input() {
            PipelineError::BadInput(e.to_string())
        } else {
            PipelineError::Transient(e.to_string())
        }
    }
}

impl From<StorageError> for PipelineError {
    fn from(e: StorageError) -> Self {
        PipelineError::Transient(format!("media storage: {e}"))
    }
}

/// A media error as the attempt's result, with a log line when the source is refused for good
/// (over a limit, out of its memory budget, not a video).
fn refused(task: &VideoTask, e: MediaError) -> PipelineError {
    let r = PipelineError::from(e);
    if let PipelineError::BadInput(reason) = &r {
        tracing::warn!(
            tenant.id = %task.tenant, video.id = %task.video, %reason,
            "source refused; failing the video without a retry"
        );
    }
    r
}

fn check(cancel: &CancellationToken) -> Result<(), PipelineError> {
    if cancel.is_cancelled() {
        Err(PipelineError::Cancelled)
    } else {
        Ok(())
    }
}

/// Enters step `index`; stops when cancelled or when the step's write showed that someone newer
/// owns the task.
async fn enter(
    reporter: &Reporter,
    cancel: &CancellationToken,
    index: u8,
) -> Result<(), PipelineError> {
    reporter.step(index).await;
    if reporter.superseded() {
        cancel.cancel();
    }
    check(cancel)
}

/// Runs the seven steps. Progress goes through `reporter`; `cancel` stops everything.
pub async fn run(
    ctx: &PipelineContext,
    task: &VideoTask,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<VideoOutput, PipelineError> {
    // 1. presigning: a private work directory and the output keys.
    enter(reporter, cancel, 1).await?;
    tokio::fs::create_dir_all(&ctx.work_root)
        .await
        .map_err(|e| PipelineError::Transient(format!("creating the work root: {e}")))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("t{}-v{}-", task.tenant, task.video))
        .tempdir_in(&ctx.work_root)
        .map_err(|e| PipelineError::Transient(format!("creating a work directory: {e}")))?;
    let source = work.path().join(format!(
        "source.{}",
        task.source.extension().unwrap_or_else(|| "bin".into())
    ));
    let out_dir = work.path().join("hls");
    let hls_prefix = keys::hls_prefix(task.tenant, task.video);
    let master_key = keys::hls_master_key(task.tenant, task.video);
    let thumb_key = keys::thumbnail_key(task.tenant, task.video);
    check(cancel)?;

    // 2. downloading
    enter(reporter, cancel, 2).await?;
    tokio::select! {
        r = ctx.storage.download_to(&task.source, &source) => {
            r.map_err(|e| match e {
                StorageError::NotFound { .. } => PipelineError::BadInput(
                    "the uploaded file is missing from media storage".into()),
                other => other.into(),
            })?;
        }
        _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
    }

    // 3. probing
    enter(reporter, cancel, 3).await?;
    let probe = tokio::select! {
        r = ctx.toolchain.probe(&source) => r.map_err(|e| refused(task, e))?,
        _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
    };
    if let Err(over) = ctx.limits.check(&probe) {
        return Err(refused(task, over.into()));
    }

    // 4. transcoding, with the measured speed feeding the ETA.
    enter(reporter, cancel, 4).await?;
    let job = HlsJob::from_probe(&source, &out_dir, &probe, ctx.options.clone());
    let (tx, mut rx) = watch::channel(TranscodeProgress::default());
    let transcode = ctx.toolchain.transcode_hls(&job, &tx, cancel);
    tokio::pin!(transcode);
    let mut eta = Eta::new();
    let outcome = loop {
        tokio::select! {
            r = &mut transcode => break r,
            changed = rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let p = *rx.borrow_and_update();
                let remaining = eta.observe(p.fraction);
                reporter.progress(p.fraction, remaining).await;
                if reporter.superseded() {
                    cancel.cancel();
                }
            }
        }
    };
    match outcome {
        Ok(_) => {}
        Err(MediaError::TimedOut { .. }) => {
            let budget = ctx.options.time_budget(probe.duration_secs);
            let reason = format!(
                "the transcode did not finish within its time budget ({} for {} of video); \
                 ffmpeg was stopped",
                human_duration(budget.as_secs_f64()),
                human_duration(probe.duration_secs)
            );
            tracing::warn!(
                tenant.id = %task.tenant, video.id = %task.video,
                budget_secs = budget.as_secs(), %reason, "transcode timed out"
            );
            return Err(PipelineError::TimedOut(reason));
        }
        Err(e) => return Err(refused(task, e)),
    }
    reporter.clear_remaining();

    // 5. validating
    enter(reporter, cancel, 5).await?;
    let summary = validate_hls(&out_dir)
        .await
        .map_err(|e| PipelineError::Transient(format!("the transcoded output is invalid: {e}")))?;
    if let Some(reason) = short_output(probe.duration_secs, summary.total_duration_secs) {
        return Err(PipelineError::BadInput(reason));
    }
    check(cancel)?;

    // 6. thumbnail
    enter(reporter, cancel, 6).await?;
    let thumb = work.path().join("thumbnail.jpg");
    tokio::select! {
        r = ctx.toolchain.thumbnail(&source, &thumb, thumbnail_time(probe.duration_secs)) => { r?; }
        _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
    }

    // 7. uploading: playlists and segments, then the thumbnail.
    enter(reporter, cancel, 7).await?;
    let total = summary.files.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let upload = ctx
        .storage
        .put_files(&hls_prefix, &out_dir, &summary.files, |n, _| {
            done.store(n, std::sync::atomic::Ordering::Relaxed);
        });
    tokio::pin!(upload);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            r = &mut upload => { r?; break; }
            _ = tick.tick() => {
                let n = done.load(std::sync::atomic::Ordering::Relaxed);
                // The thumbnail is the last few percent.
                reporter.progress(0.95 * n as f64 / total.max(1) as f64, None).await;
            }
            _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
        }
    }
    ctx.storage.put_file(&thumb_key, &thumb).await?;
    tracing::info!(
        tenant.id = %task.tenant, video.id = %task.video, files = total,
        bytes = summary.total_bytes, "video transcoded"
    );
    let duration = summary.total_duration_secs.max(probe.duration_secs);
    Ok(VideoOutput {
        hls_path: master_key.as_str().to_owned(),
        duration_secs: duration.round().clamp(0.0, f64::from(u32::MAX)) as u32,
        thumbnail: thumb_key.as_str().to_owned(),
        renditions: summary
            .variants
            .iter()
            .filter_map(|v| v.resolution.map(|(w, h)| format!("{w}x{h}")))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::short_output;

    #[test]
    fn an_output_short_of_its_source_is_refused_with_a_reason() {
        assert!(short_output(6.0, 3.04).is_some_and(|r| r.contains("3.0 s of its 6.0 s")));
        assert_eq!(short_output(6.0, 5.0), None, "within 2 s");
        assert_eq!(short_output(600.0, 550.0), None, "within 10 %");
        assert!(short_output(600.0, 500.0).is_some());
        assert_eq!(short_output(6.0, 6.4), None, "longer is fine");
        assert_eq!(short_output(0.0, 0.0), None);
    }
}
