//! The transcode pipeline end to end with real ffmpeg, real media storage and the in-process
//! read model: what a poller sees while it runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobpulse_domain::{
    Fence, Percent, State, Status, TaskKey, TenantId, VideoId, VideoStatus, steps,
};
use jobpulse_media::testing::{ClipSpec, generate_clip, write_corrupt_file};
use jobpulse_media::{MediaStorage, Toolchain, TranscodeOptions, keys};
use jobpulse_store::{MemoryStore, SharedStore};
use jobpulse_worker::progress::Reporter;
use jobpulse_worker::video::pipeline::{self, PipelineContext, PipelineError, VideoTask};
use tokio_util::sync::CancellationToken;

struct Setup {
    _dir: tempfile::TempDir,
    ctx: PipelineContext,
    store: SharedStore,
    clips: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let toolchain = Toolchain::detect().expect("ffmpeg installed (scripts/test installs it)");
    let storage = MediaStorage::local(dir.path().join("media")).expect("storage");
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).expect("mkdir");
    Setup {
        ctx: PipelineContext {
            toolchain,
            storage,
            work_root: dir.path().join("work"),
            options: TranscodeOptions::default(),
            limits: jobpulse_media::MediaLimits::default(),
        },
        store: Arc::new(MemoryStore::default()),
        clips,
        _dir: dir,
    }
}

fn reporter(store: &SharedStore, key: &TaskKey) -> Reporter {
    let mut base = State::video(VideoStatus::Processing);
    base.percent = Percent::new(10).expect("valid");
    Reporter::new(
        store.clone(),
        key.clone(),
        Fence::claim(1, 1).expect("valid"),
        steps::VIDEO,
        base,
    )
    .with_min_interval(Duration::from_millis(100))
}

async fn upload(s: &Setup, spec: &ClipSpec, tenant: TenantId, video: VideoId) -> VideoTask {
    let path = s.clips.join(format!("{video}.mp4"));
    generate_clip(&s.ctx.toolchain, &path, spec)
        .await
        .expect("clip generated");
    let key = keys::raw_key(tenant, video, "clip.mp4");
    s.ctx.storage.put_file(&key, &path).await.expect("stored");
    VideoTask {
        tenant,
        video,
        source: key,
    }
}

#[tokio::test]
async fn a_clip_goes_through_seven_steps_with_monotonic_progress() {
    let s = setup();
    let tenant = TenantId::new(3).expect("valid");
    let video = VideoId::new(21).expect("valid");
    let task = upload(
        &s,
        &ClipSpec::new(6.0, 640, 360).with_audio(),
        tenant,
        video,
    )
    .await;
    let key = TaskKey::video(tenant, video);
    let mut feed = s.store.subscribe();
    let rep = reporter(&s.store, &key);
    let out = pipeline::run(&s.ctx, &task, &rep, &CancellationToken::new())
        .await
        .expect("pipeline succeeds");
    assert_eq!(out.hls_path, "tenants/3/video/hls/21/master.m3u8");
    assert!(
        (5..=7).contains(&out.duration_secs),
        "{}",
        out.duration_secs
    );
    assert!(!out.renditions.is_empty());

    // What a poller would have seen.
    let mut seen = Vec::new();
    while let Ok(c) = feed.try_recv() {
        if let Some(snap) = c.snapshot {
            seen.push(snap.state);
        }
    }
    let mut last = 0;
    let mut steps_seen = Vec::new();
    for st in &seen {
        assert_eq!(st.status, Status::Video(VideoStatus::Processing));
        assert!(
            st.percent.get() >= last,
            "percent went back: {last} -> {}",
            st.percent.get()
        );
        assert!((10..=99).contains(&st.percent.get()));
        last = st.percent.get();
        let step = st.step.as_ref().expect("step detail").index;
        if steps_seen.last() != Some(&step) {
            steps_seen.push(step);
        }
    }
    assert_eq!(steps_seen, [1, 2, 3, 4, 5, 6, 7]);
    // The output really is in storage and valid.
    let check = tempfile::tempdir().expect("temp");
    for v in ["master.m3u8"] {
        let k = keys::hls_prefix(tenant, video).join(v).expect("key");
        s.ctx
            .storage
            .download_to(&k, &check.path().join(v))
            .await
            .expect("uploaded");
    }
    assert!(
        s.ctx
            .storage
            .exists(&keys::thumbnail_key(tenant, video))
            .await
            .expect("reachable")
    );
    // The work directory is gone.
    let left: Vec<_> = std::fs::read_dir(&s.ctx.work_root)
        .expect("work root")
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[tokio::test]
async fn the_eta_counts_down_while_encoding() {
    let s = setup();
    let tenant = TenantId::new(3).expect("valid");
    let video = VideoId::new(22).expect("valid");
    // Long enough at this size for several progress reports on a loaded 2-core machine.
    let task = upload(&s, &ClipSpec::new(20.0, 1280, 720), tenant, video).await;
    let key = TaskKey::video(tenant, video);
    let mut feed = s.store.subscribe();
    let rep = reporter(&s.store, &key);
    pipeline::run(&s.ctx, &task, &rep, &CancellationToken::new())
        .await
        .expect("pipeline succeeds");
    let mut etas = Vec::new();
    while let Ok(c) = feed.try_recv() {
        if let Some(r) = c.snapshot.and_then(|s| s.state.remaining_seconds) {
            etas.push(r);
        }
    }
    assert!(etas.len() >= 3, "too few ETA reports: {etas:?}");
    assert!(
        etas.last() < etas.first(),
        "the ETA did not decrease: {etas:?}"
    );
}

#[tokio::test]
async fn cancel_stops_ffmpeg_promptly_and_cleans_up() {
    let s = setup();
    let tenant = TenantId::new(3).expect("valid");
    let video = VideoId::new(23).expect("valid");
    let task = upload(
        &s,
        &ClipSpec::new(60.0, 1280, 720).with_audio(),
        tenant,
        video,
    )
    .await;
    let key = TaskKey::video(tenant, video);
    let rep = reporter(&s.store, &key);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let store = s.store.clone();
    let k2 = key.clone();
    let cancelled_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let at = cancelled_at.clone();
    // Cancel once encoding has started.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let snap = store.get(&k2).await.expect("reads");
            if snap
                .and_then(|s| s.state.step)
                .is_some_and(|st| st.index == 4)
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                *at.lock().expect("lock") = Some(Instant::now());
                c2.cancel();
                return;
            }
        }
    });
    let r = pipeline::run(&s.ctx, &task, &rep, &cancel).await;
    let stopped = Instant::now();
    assert!(matches!(r, Err(PipelineError::Cancelled)), "{r:?}");
    let at = cancelled_at
        .lock()
        .expect("lock")
        .expect("cancelled during encoding");
    // About 100 ms on a quiet machine; the margin is for a loaded 2-core one. A cancel that
    // is not acted on runs the 60 s clip's transcode to its end.
    eprintln!(
        "cancel → pipeline returned in {} ms",
        stopped.duration_since(at).as_millis()
    );
    assert!(
        stopped.duration_since(at) < Duration::from_secs(5),
        "cancel took {:?}",
        stopped.duration_since(at)
    );
    let left: Vec<_> = std::fs::read_dir(&s.ctx.work_root)
        .expect("work root")
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    // No ffmpeg of ours is still running.
    let ours = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.contains("ffmpeg") && c.contains("t3-v23-"))
        .count();
    assert_eq!(ours, 0, "ffmpeg still running after cancel");
}

#[tokio::test]
async fn a_corrupt_upload_is_bad_input() {
    let s = setup();
    let tenant = TenantId::new(3).expect("valid");
    let video = VideoId::new(24).expect("valid");
    let path = s.clips.join("corrupt.mp4");
    write_corrupt_file(&path).expect("written");
    let key = keys::raw_key(tenant, video, "corrupt.mp4");
    s.ctx.storage.put_file(&key, &path).await.expect("stored");
    let task = VideoTask {
        tenant,
        video,
        source: key,
    };
    let rep = reporter(&s.store, &TaskKey::video(tenant, video));
    let r = pipeline::run(&s.ctx, &task, &rep, &CancellationToken::new()).await;
    match r {
        Err(PipelineError::BadInput(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// Issue 15 finding 4: an MP4 whose index (moov) comes first and whose second half is missing
/// probes at its full duration and ffmpeg transcodes the half that is there; the pipeline must
/// not call that READY.
#[tokio::test]
async fn a_truncated_upload_is_bad_input_not_a_short_ready() {
    let s = setup();
    let tenant = TenantId::new(3).expect("valid");
    let video = VideoId::new(25).expect("valid");
    let full = s.clips.join("full.mp4");
    generate_clip(
        &s.ctx.toolchain,
        &full,
        &ClipSpec::new(6.0, 320, 240).with_audio(),
    )
    .await
    .expect("clip generated");
    // The index first (faststart), then cut the file in half.
    let cut = s.clips.join("cut.mp4");
    let st = tokio::process::Command::new(s.ctx.toolchain.ffmpeg())
        .args(["-v", "error", "-y", "-i"])
        .arg(&full)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&cut)
        .status()
        .await
        .expect("ffmpeg runs");
    assert!(st.success());
    let len = std::fs::metadata(&cut).expect("written").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncated");
    let probe = s.ctx.toolchain.probe(&cut).await.expect("still probes");
    assert!(
        probe.duration_secs > 5.5,
        "the header still says 6 s: {}",
        probe.duration_secs
    );
    let key = keys::raw_key(tenant, video, "cut.mp4");
    s.ctx.storage.put_file(&key, &cut).await.expect("stored");
    let task = VideoTask {
        tenant,
        video,
        source: key,
    };
    let rep = reporter(&s.store, &TaskKey::video(tenant, video));
    let r = pipeline::run(&s.ctx, &task, &rep, &CancellationToken::new()).await;
    match r {
        Err(PipelineError::BadInput(reason)) => {
            assert!(
                reason.contains("truncated or damaged") || reason.contains("nvalid"),
                "{reason}"
            );
            eprintln!("truncated upload refused: {reason}");
        }
        other => panic!("expected BadInput for a truncated source, got {other:?}"),
    }
    // Nothing was published for the video: no master playlist, no thumbnail.
    let master = keys::hls_prefix(tenant, video)
        .join("master.m3u8")
        .expect("a key");
    assert!(
        !s.ctx
            .storage
            .exists(&master)
            .await
            .expect("storage reachable")
    );
    assert!(
        !s.ctx
            .storage
            .exists(&keys::thumbnail_key(tenant, video))
            .await
            .expect("storage reachable")
    );
}
