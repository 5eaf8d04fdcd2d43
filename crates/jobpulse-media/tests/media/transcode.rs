use std::path::Path;
use std::time::{Duration, Instant};

use jobpulse_media::testing::{ClipSpec, write_corrupt_file};
use jobpulse_media::{
    HlsJob, MediaError, Preset, Toolchain, TranscodeOptions, TranscodeProgress, validate_hls,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::{clip, pids_running_with, streams_of, tempdir, tools, wait_until};

/// Runs a transcode, collecting every progress value the watch channel showed.
async fn transcode_collecting(
    t: &Toolchain,
    job: &HlsJob,
) -> (
    Result<jobpulse_media::TranscodeOutcome, MediaError>,
    Vec<TranscodeProgress>,
) {
    let (tx, mut rx) = watch::channel(TranscodeProgress::default());
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while rx.changed().await.is_ok() {
            seen.push(*rx.borrow_and_update());
        }
        seen
    });
    let result = t.transcode_hls(job, &tx, &CancellationToken::new()).await;
    drop(tx);
    (result, collector.await.expect("collector"))
}

fn fast() -> TranscodeOptions {
    TranscodeOptions {
        preset: Preset::Ultrafast,
        ..TranscodeOptions::default()
    }
}

#[tokio::test]
async fn two_renditions_with_audio_make_valid_hls() {
    let dir = tempdir();
    let t = tools();
    let src = clip(
        dir.path(),
        "src.mp4",
        ClipSpec::new(5.0, 1280, 720).with_audio(),
    )
    .await;
    let info = t.probe(&src).await.expect("probe");
    let out = dir.path().join("hls");
    let job = HlsJob::from_probe(&src, &out, &info, fast());
    assert_eq!(job.renditions.len(), 2);

    let (result, seen) = transcode_collecting(&t, &job).await;
    let outcome = result.expect("transcode");
    assert_eq!(outcome.master_playlist, out.join("master.m3u8"));

    let summary = validate_hls(&out).await.expect("valid HLS");
    let res: Vec<_> = summary.variants.iter().map(|v| v.resolution).collect();
    assert_eq!(res, [Some((1280, 720)), Some((854, 480))]);
    for v in &summary.variants {
        let codecs = v.codecs.as_deref().expect("CODECS");
        assert!(
            codecs.contains("avc1") && codecs.contains("mp4a"),
            "{codecs}"
        );
        assert!(v.bandwidth > 0);
        assert_eq!(v.target_duration, Some(4), "4 s segments");
        assert_eq!(v.segments, 2, "5 s in 4 s segments");
        assert!((v.duration_secs - 5.0).abs() < 0.3, "{}", v.duration_secs);
    }
    assert_eq!(summary.variants[0].uri, "720p/index.m3u8");
    assert!(summary.variants[0].bandwidth > summary.variants[1].bandwidth);
    let master = std::fs::read_to_string(&outcome.master_playlist).expect("master");
    assert!(
        master.contains("BANDWIDTH=") && master.contains("CODECS="),
        "{master}"
    );
    assert_eq!(summary.files[0], "master.m3u8");
    assert_eq!(summary.files.len(), 1 + 2 * (1 + 2));

    let (types, size) = streams_of(&out.join("480p/seg_00000.ts"));
    assert!(types.contains(&"audio".to_owned()), "{types:?}");
    assert_eq!(size, Some((854, 480)));

    // Progress: monotonic, ends complete.
    assert!(seen.len() >= 2, "{seen:?}");
    for w in seen.windows(2) {
        assert!(w[1].fraction >= w[0].fraction, "{seen:?}");
        assert!(w[1].out_time_secs >= w[0].out_time_secs);
    }
    let last = seen.last().expect("progress");
    assert!(last.fraction >= 0.99, "{last:?}");
    assert!(last.finished);
    assert_eq!(outcome.progress, *last);
}

#[tokio::test]
async fn a_silent_source_gets_no_audio_stream() {
    let dir = tempdir();
    let t = tools();
    let src = clip(dir.path(), "src.mp4", ClipSpec::new(3.0, 640, 360)).await;
    let info = t.probe(&src).await.expect("probe");
    let out = dir.path().join("hls");
    let job = HlsJob::from_probe(&src, &out, &info, fast());
    let (result, _) = transcode_collecting(&t, &job).await;
    result.expect("transcode");

    let summary = validate_hls(&out).await.expect("valid HLS");
    assert_eq!(summary.variants.len(), 1, "a 360p source is one rendition");
    let v = &summary.variants[0];
    assert_eq!(v.resolution, Some((640, 360)));
    let codecs = v.codecs.as_deref().expect("CODECS");
    assert!(
        codecs.contains("avc1") && !codecs.contains("mp4a"),
        "{codecs}"
    );
    let (types, _) = streams_of(&out.join("360p/seg_00000.ts"));
    assert_eq!(types, ["video"]);
}

#[tokio::test]
async fn a_rotated_phone_video_becomes_portrait_hls() {
    let dir = tempdir();
    let t = tools();
    let src = clip(
        dir.path(),
        "src.mp4",
        ClipSpec::new(2.0, 640, 360).rotated(90),
    )
    .await;
    let info = t.probe(&src).await.expect("probe");
    let out = dir.path().join("hls");
    let job = HlsJob::from_probe(&src, &out, &info, fast());
    let (result, _) = transcode_collecting(&t, &job).await;
    result.expect("transcode");
    let summary = validate_hls(&out).await.expect("valid HLS");
    let res: Vec<_> = summary.variants.iter().map(|v| v.resolution).collect();
    assert_eq!(res, [Some((360, 640))]);
    let (_, size) = streams_of(&out.join("360p/seg_00000.ts"));
    assert_eq!(size, Some((360, 640)), "pixels really are portrait");
}

#[tokio::test]
async fn a_failing_ffmpeg_reports_its_stderr() {
    let dir = tempdir();
    let src = dir.path().join("corrupt.mp4");
    write_corrupt_file(&src).expect("write");
    let job = HlsJob {
        input: src,
        out_dir: dir.path().join("hls"),
        renditions: jobpulse_media::ladder(640, 360),
        has_audio: false,
        duration_secs: 3.0,
        source_fps: None,
        options: fast(),
    };
    let (result, _) = transcode_collecting(&tools(), &job).await;
    match result {
        Err(MediaError::Failed {
            tool,
            code,
            stderr_tail,
        }) => {
            assert_eq!(tool, "ffmpeg");
            assert!(code.is_some_and(|c| c != 0));
            assert!(!stderr_tail.is_empty());
            assert!(stderr_tail.lines().count() <= 20);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A clip that takes many seconds to encode at `veryslow`, so it is surely still running when
/// cancelled.
async fn slow_job(dir: &Path) -> HlsJob {
    let src = clip(dir, "long.mp4", ClipSpec::new(40.0, 640, 360).at_fps(15)).await;
    let info = tools().probe(&src).await.expect("probe");
    let options = TranscodeOptions {
        preset: Preset::Veryslow,
        threads: Some(1),
        ..TranscodeOptions::default()
    };
    HlsJob::from_probe(&src, dir.join("hls-out"), &info, options)
}

/// Starts the transcode in a task and waits for the first progress report with output time, so
/// ffmpeg is demonstrably working. Returns the task and the cancel token.
async fn start(
    t: Toolchain,
    job: HlsJob,
) -> (
    tokio::task::JoinHandle<Result<jobpulse_media::TranscodeOutcome, MediaError>>,
    CancellationToken,
) {
    let cancel = CancellationToken::new();
    let (tx, mut rx) = watch::channel(TranscodeProgress::default());
    let c = cancel.clone();
    let task = tokio::spawn(async move { t.transcode_hls(&job, &tx, &c).await });
    tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|p| p.out_time_secs > 0.0),
    )
    .await
    .expect("progress within 30 s")
    .expect("progress channel open");
    (task, cancel)
}

/// Kills ffmpeg promptly: about 100 ms on a quiet machine, 5 s allowed for a loaded 2-core
/// one. Uncancelled, the slow transcode runs far longer.
#[tokio::test]
async fn cancel_kills_ffmpeg_promptly() {
    let dir = tempdir();
    let job = slow_job(dir.path()).await;
    let out = job.out_dir.clone();
    let needle = out.to_str().expect("utf-8").to_owned();
    let (task, cancel) = start(tools(), job).await;
    let pids = pids_running_with(&needle);
    assert_eq!(pids.len(), 1, "one ffmpeg running: {pids:?}");

    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("transcode returns within 5 s of cancel")
        .expect("task");
    eprintln!(
        "cancel → transcode returned in {} ms",
        cancelled_at.elapsed().as_millis()
    );
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    assert!(
        pids_running_with(&needle).is_empty(),
        "ffmpeg gone {:?} after cancel",
        cancelled_at.elapsed()
    );
    assert!(
        !Path::new(&format!("/proc/{}", pids[0])).exists(),
        "ffmpeg (pid {}) killed and reaped",
        pids[0]
    );
    std::fs::remove_dir_all(&out).expect("partial output removable");
    assert!(!out.exists());
}

/// `JOBPULSE_FFMPEG` may be a wrapper that runs ffmpeg as its child; cancelling must kill the
/// grandchild too (process-group kill), and so must dropping the transcode future.
#[tokio::test]
async fn cancel_and_drop_kill_ffmpeg_behind_a_wrapper_script() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let real = tools();
    let wrapper = dir.path().join("ffmpeg-wrapper.sh");
    // No `exec`: the shell stays as the parent of ffmpeg.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\"{}\" \"$@\"\nexit $?\n",
            real.ffmpeg().display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let wrapped = Toolchain::new(&wrapper, real.ffprobe());

    let job = slow_job(dir.path()).await;
    let needle = job.out_dir.to_str().expect("utf-8").to_owned();

    // 1. Cancel.
    let (task, cancel) = start(wrapped.clone(), job.clone()).await;
    let pids = pids_running_with(&needle);
    assert_eq!(pids.len(), 2, "the shell and its ffmpeg child: {pids:?}");
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("returns within 2 s")
        .expect("task");
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    let gone = wait_until(Duration::from_secs(2), || {
        pids_running_with(&needle).is_empty()
    })
    .await;
    assert!(
        gone.is_some(),
        "wrapper and ffmpeg gone: {:?}",
        pids_running_with(&needle)
    );

    // 2. Drop the future mid-run (what a `select!` or an aborted task does).
    let (task, _cancel) = start(wrapped, job).await;
    assert_eq!(pids_running_with(&needle).len(), 2);
    task.abort();
    let gone = wait_until(Duration::from_secs(2), || {
        pids_running_with(&needle).is_empty()
    })
    .await;
    assert!(
        gone.is_some(),
        "dropping the future kills the group: {:?}",
        pids_running_with(&needle)
    );
}
