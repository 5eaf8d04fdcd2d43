//! `jobpulse-bench --only pipeline`: wall time of our video pipeline against the same ffmpeg
//! work run alone (goal: at most 5 % more).
//!
//! One clip is generated with [`generate_clip`] (`--clip-secs`, 1280x720, 25 fps, AAC audio).
//! Each round runs, in this order, so machine noise hits both sides alike:
//!
//! 1. **Alone** (the baseline): the three tool runs the pipeline makes, back to back, timed
//!    one by one — `ffprobe` (through `Toolchain::probe`, one process), the HLS transcode (the
//!    exact arguments of [`hls_args`] for the job [`HlsJob::from_probe`] builds, spawned with
//!    `tokio::process` with no progress reader) and the thumbnail (through
//!    `Toolchain::thumbnail`, one ffmpeg process). No database, read model or file copies.
//! 2. **Pipeline**: the full job on embedded backends, as `jobpulse up` runs it — a SQLite file
//!    database, the in-process read model, local media storage, one [`VideoWorker`] with the
//!    default configuration (already running and idle, as in production). Timed from the start
//!    of the upload (raw file stored, video row + job created, UPLOADED published) until the
//!    read model shows READY; step times come from the read model's change feed (the instant
//!    each step index first appears).
//!
//! The overhead is `pipeline / alone − 1`, against the three tools and against the transcode
//! alone. Rounds alternate (`--rounds`); medians are printed with every round's figures. Each
//! round also prints the pipeline's time outside its tool steps (3 probing, 4 transcoding,
//! 6 thumbnail): its own work, which a busy machine (slowing ffmpeg run to run) does not blur.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::Db;
use jobpulse_domain::{Status, StepProgress, TaskKey, TenantId, VideoId, VideoStatus};
use jobpulse_media::testing::{ClipSpec, generate_clip};
use jobpulse_media::{
    HlsJob, MediaStorage, ProbeInfo, Toolchain, TranscodeOptions, hls_args, keys, thumbnail_time,
};
use jobpulse_store::{MemoryStore, SharedStore};
use jobpulse_sync::Relay;
use jobpulse_worker::video::pipeline::PipelineContext;
use jobpulse_worker::video::{VideoWorker, VideoWorkerConfig, WorkerHandle};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// The baseline's three tool runs.
#[derive(Debug, Clone, Copy)]
struct Alone {
    probe: Duration,
    transcode: Duration,
    thumbnail: Duration,
}

impl Alone {
    fn total(&self) -> Duration {
        self.probe + self.transcode + self.thumbnail
    }
}

/// One pipeline job: total, the upload part, when each step began (from the start), and every
/// state the read model announced for it (for the ETA scenario).
#[derive(Debug, Clone)]
pub(crate) struct Piped {
    pub(crate) total: Duration,
    upload: Duration,
    steps: Vec<(u8, String, Duration)>,
    /// `(since the start, step, remaining seconds)` of every announced state.
    pub(crate) timeline: Vec<(Duration, Option<StepProgress>, Option<u32>)>,
}

impl Piped {
    /// Time outside the steps that run the tools (3 probing, 4 transcoding, 6 thumbnail): the
    /// pipeline's own work, which does not vary with ffmpeg's speed on a busy machine.
    fn outside_tools(&self) -> Duration {
        let tools: Duration = self
            .step_durations()
            .iter()
            .filter(|(index, _, _)| matches!(index, 3 | 4 | 6))
            .map(|(_, _, d)| *d)
            .sum();
        self.total.saturating_sub(tools)
    }

    /// How long each step lasted (the last one until READY).
    fn step_durations(&self) -> Vec<(u8, String, Duration)> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, (index, name, start))| {
                let end = self.steps.get(i + 1).map_or(self.total, |s| s.2);
                (*index, name.clone(), end.saturating_sub(*start))
            })
            .collect()
    }
}

/// The embedded backends and a running worker.
pub(crate) struct Embedded {
    pub(crate) db: Db,
    pub(crate) store: SharedStore,
    pub(crate) relay: Relay,
    pub(crate) storage: MediaStorage,
    tenant: TenantId,
    worker: Option<WorkerHandle>,
    relay_stop: CancellationToken,
}

impl Embedded {
    pub(crate) async fn start(tools: &Toolchain, dir: &Path) -> anyhow::Result<Self> {
        let url = format!("sqlite://{}", dir.join("db").join("jobpulse.db").display());
        let db = Db::connect(&url).await.context("opening the SQLite file")?;
        db.migrate().await.context("applying migrations")?;
        let store: SharedStore = Arc::new(MemoryStore::default());
        let relay = Relay::new(db.clone(), store.clone());
        let relay_stop = CancellationToken::new();
        tokio::spawn(relay.clone().run(relay_stop.clone()));
        let storage = MediaStorage::local(dir.join("media")).context("media storage")?;
        let tenant = db.create_tenant("bench", "Bench academy").await?.tenant_id;
        let ctx = PipelineContext {
            toolchain: tools.clone(),
            storage: storage.clone(),
            work_root: dir.join("work"),
            options: TranscodeOptions::default(),
            limits: jobpulse_media::MediaLimits::default(),
        };
        let worker = VideoWorker::new(
            db.clone(),
            store.clone(),
            relay.clone(),
            ctx,
            VideoWorkerConfig::new(dir.join("work")),
        )
        .spawn();
        Ok(Self {
            db,
            store,
            relay,
            storage,
            tenant,
            worker: Some(worker),
            relay_stop,
        })
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.context("stopping the video worker")?;
        }
        self.relay_stop.cancel();
        Ok(())
    }

    /// Uploads `clip` as video `n` (the n-th of this fresh database) and waits for READY.
    pub(crate) async fn job(&self, clip: &Path, n: i64, budget: Duration) -> anyhow::Result<Piped> {
        let id = VideoId::new(n)?;
        let task = TaskKey::video(self.tenant, id);
        let mut feed = self.store.subscribe();
        let t0 = Instant::now();
        let raw = keys::raw_key(self.tenant, id, "clip.mp4");
        self.storage.put_file(&raw, clip).await.context("storing")?;
        let created = self
            .db
            .create_video(self.tenant, None, &format!("bench {n}"), raw.as_str())
            .await?;
        anyhow::ensure!(
            created.value.id == id,
            "video ids are sequential in a fresh db"
        );
        self.relay.publish_now(&created.outbox).await?;
        let upload = t0.elapsed();
        let mut steps: Vec<(u8, String, Duration)> = Vec::new();
        let mut timeline = Vec::new();
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let change = match tokio::time::timeout_at(deadline, feed.recv()).await {
                Err(_) => anyhow::bail!("video {n} not READY within {}s", budget.as_secs()),
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => anyhow::bail!("the read model's feed closed"),
                Ok(Ok(c)) => c,
            };
            let Some(snap) = change.snapshot.filter(|_| change.key == task) else {
                continue;
            };
            timeline.push((
                t0.elapsed(),
                snap.state.step.clone(),
                snap.state.remaining_seconds,
            ));
            match snap.state.status {
                Status::Video(VideoStatus::Ready) => {
                    return Ok(Piped {
                        total: t0.elapsed(),
                        upload,
                        steps,
                        timeline,
                    });
                }
                Status::Video(VideoStatus::Failed) => anyhow::bail!(
                    "the pipeline failed: {}",
                    snap.state.error.as_ref().map_or("?", |e| e.as_str())
                ),
                _ => {}
            }
            if let Some(step) = &snap.state.step
                && steps.last().is_none_or(|s| s.0 != step.index)
            {
                steps.push((step.index, step.name.clone(), t0.elapsed()));
            }
        }
    }
}

/// The three tool runs alone, in `out` (removed afterwards).
async fn alone(tools: &Toolchain, clip: &Path, out: &Path) -> anyhow::Result<Alone> {
    tokio::fs::create_dir_all(out).await?;
    let t = Instant::now();
    let probe = tools.probe(clip).await.context("ffprobe")?;
    let probe_time = t.elapsed();

    let job = HlsJob::from_probe(clip, out.join("hls"), &probe, TranscodeOptions::default());
    tokio::fs::create_dir_all(&job.out_dir).await?;
    let args = hls_args(&job)?;
    let t = Instant::now();
    let ran = tokio::process::Command::new(tools.ffmpeg())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .context("spawning ffmpeg")?;
    let transcode = t.elapsed();
    anyhow::ensure!(
        ran.status.success(),
        "ffmpeg alone failed ({}): {}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );

    let t = Instant::now();
    tools
        .thumbnail(
            clip,
            &out.join("thumbnail.jpg"),
            thumbnail_time(probe.duration_secs),
        )
        .await
        .context("thumbnail")?;
    let thumbnail = t.elapsed();
    tokio::fs::remove_dir_all(out).await?;
    Ok(Alone {
        probe: probe_time,
        transcode,
        thumbnail,
    })
}

async fn make_clip(tools: &Toolchain, dir: &Path, secs: u32) -> anyhow::Result<PathBuf> {
    let clip = dir.join("clip.mp4");
    let spec = ClipSpec::new(f64::from(secs), 1280, 720).with_audio();
    generate_clip(tools, &clip, &spec)
        .await
        .context("generating the test clip")?;
    Ok(clip)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn pct(over: f64, base: f64) -> f64 {
    (over / base - 1.0) * 100.0
}

fn describe(tools: &Toolchain, version: &str, probe: &ProbeInfo, clip_secs: u32) -> String {
    let job = HlsJob::from_probe("in", "out", probe, TranscodeOptions::default());
    let ladder: Vec<String> = job
        .renditions
        .iter()
        .map(|r| format!("{}x{}", r.width, r.height))
        .collect();
    format!(
        "clip: {clip_secs} s 1280x720 25 fps + AAC (testsrc2); renditions {}; preset {}; \
         ffmpeg {version} ({}); pipeline: one VideoWorker (default config) on SQLite + the \
         in-process store + local media storage, as `jobpulse up` runs it",
        ladder.join(", "),
        TranscodeOptions::default().preset.as_str(),
        tools.ffmpeg().display()
    )
}

/// Runs the scenario and prints its tables.
#[allow(clippy::print_stdout)] // The report is this command's output.
pub async fn run(clip_secs: u32, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(clip_secs >= 1, "--clip-secs must be at least 1");
    let tools = Toolchain::detect().context("this scenario needs ffmpeg and ffprobe")?;
    let version = tools.verify().await.context("checking ffmpeg")?;
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let t = Instant::now();
    let clip = make_clip(&tools, dir.path(), clip_secs).await?;
    let generated = t.elapsed();
    let probe = tools.probe(&clip).await.context("probing the clip")?;
    println!("\n## video pipeline vs ffmpeg alone\n");
    println!(
        "{} (generated in {:.1} s)",
        describe(&tools, &version, &probe, clip_secs),
        generated.as_secs_f64()
    );
    let env = Embedded::start(&tools, dir.path()).await?;
    let budget = Duration::from_secs(u64::from(clip_secs) * 30 + 120);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let a = alone(&tools, &clip, &dir.path().join(format!("alone-{round}"))).await?;
        let p = env.job(&clip, round as i64, budget).await?;
        results.push((a, p));
    }
    env.stop().await?;
    print_results(&results);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_results(results: &[(Alone, Piped)]) {
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "\n| round | ffprobe s | transcode alone s | thumbnail s | alone total s | pipeline \
         s (upload→READY) | vs alone total | vs transcode alone |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, (a, p)) in results.iter().enumerate() {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.1} % | {:+.1} % |",
            i + 1,
            s(a.probe),
            s(a.transcode),
            s(a.thumbnail),
            s(a.total()),
            s(p.total),
            pct(s(p.total), s(a.total())),
            pct(s(p.total), s(a.transcode))
        );
    }
    let alone_total = median(results.iter().map(|(a, _)| s(a.total())).collect());
    let transcode = median(results.iter().map(|(a, _)| s(a.transcode)).collect());
    let piped = median(results.iter().map(|(_, p)| s(p.total)).collect());
    println!(
        "| median | | {transcode:.2} | | {alone_total:.2} | {piped:.2} | {:+.1} % | {:+.1} % |",
        pct(piped, alone_total),
        pct(piped, transcode)
    );
    println!("\npipeline steps (seconds each; from the read model's change feed):\n");
    for (i, (a, p)) in results.iter().enumerate() {
        let steps: Vec<String> = p
            .step_durations()
            .iter()
            .map(|(index, name, d)| format!("{index} {name} {:.2}", s(*d)))
            .collect();
        println!(
            "- round {}: upload (store + row + publish) {:.3} · {} · step 4 vs transcode alone \
             {:+.1} % · outside the tool steps 3/4/6: {:.2} s = {:.1} % of alone total",
            i + 1,
            s(p.upload),
            steps.join(" · "),
            p.step_durations()
                .iter()
                .find(|(index, _, _)| *index == 4)
                .map_or(f64::NAN, |(_, _, d)| pct(s(*d), s(a.transcode))),
            s(p.outside_tools()),
            100.0 * s(p.outside_tools()) / s(a.total())
        );
    }
    println!(
        "\nalone = ffprobe + the HLS ffmpeg command + the thumbnail ffmpeg command, run back to \
         back on the local clip; the pipeline also copies the upload into storage and back into \
         its work dir, validates the playlists, copies the output into storage and writes \
         progress to the read model. goal: pipeline ≤ alone total + 5 %. The time outside the \
         tool steps is the pipeline's own work and does not depend on how fast ffmpeg ran; the \
         ratios do, so a busy machine shows in them."
    );
}
