//! One ffmpeg run that turns a source into an HLS VOD ladder, with live progress and prompt
//! cancellation.
//!
//! # The command line ([`hls_args`])
//!
//! For a 1280x720 source with audio (ladder 720p + 480p) it is, line by line:
//!
//! ```text
//! ffmpeg -hide_banner -nostdin -y -loglevel warning -progress pipe:1 -nostats
//!   -format_whitelist <probe::INPUT_FORMATS> -protocol_whitelist file -i /abs/source.mp4
//!   -filter_complex [0:v:0]split=2[s0][s1];
//!                   [s0]scale=w=1280:h=720,setsar=1,format=yuv420p[v0];
//!                   [s1]scale=w=854:h=480,setsar=1,format=yuv420p[v1]
//!   -map [v0] -map 0:a:0 -map [v1] -map 0:a:0
//!   -c:v libx264 -preset veryfast -profile:v high -sc_threshold 0
//!   -force_key_frames expr:gte(t,n_forced*4)
//!   -b:v:0 2700k -maxrate:v:0 2970k -bufsize:v:0 5400k   (and :1 for the 480p stream)
//!   -c:a aac -b:a 128k -ac 2
//!   -map_metadata -1 -map_chapters -1 -max_muxing_queue_size 1024
//!   -f hls -hls_time 4 -hls_playlist_type vod -hls_flags independent_segments
//!   -hls_segment_type mpegts -hls_segment_filename /abs/out/%v/seg_%05d.ts
//!   -master_pl_name master.m3u8 -var_stream_map "v:0,a:0,name:720p v:1,a:1,name:480p"
//!   /abs/out/%v/index.m3u8
//! ```
//!
//! Why each part:
//! - one process decodes once and encodes every rendition (`split` + `scale`), instead of one
//!   decode per rendition; ffmpeg's autorotation runs before the filter graph, so the sizes are
//!   the display sizes the ladder computed from [`crate::ProbeInfo`];
//! - `setsar=1,format=yuv420p`: square pixels and 8-bit 4:2:0 so every browser can play it, even
//!   from 10-bit or 4:4:4 sources;
//! - keyframes forced every segment length on all renditions (and no extra scene-cut keyframes)
//!   so segments are ~4 s, start with a keyframe and line up across renditions for switching;
//! - `-b:v/-maxrate/-bufsize`: bounded bit rates, which also become each variant's `BANDWIDTH`
//!   in the master playlist, next to `CODECS` and `RESOLUTION`;
//! - audio is mapped and encoded (AAC stereo) only when the source has audio; without it ffmpeg
//!   would fail on `-map 0:a:0`, and with `0:a:0?` the `var_stream_map` would not match;
//! - `-map_metadata -1`: phone videos carry GPS tags; nothing of the source's metadata is copied;
//! - the whitelist and absolute paths: see [`crate::probe`] (untrusted input).
//!
//! Output layout in `out_dir`: `master.m3u8`, and per rendition `<name>/index.m3u8` plus
//! `<name>/seg_00000.ts`, … (`<name>` is the rendition name, e.g. `720p`).
//!
//! # Progress
//!
//! Delivered through a `tokio::sync::watch::Sender<TranscodeProgress>` the caller owns: the
//! transcode never waits for the consumer, and a consumer that samples slowly (e.g. publishing
//! to the read model once a second) always sees the latest value. Updates arrive about twice a
//! second; the fraction is monotonic (see [`crate::progress`]).
//!
//! # Cancellation and failure
//!
//! When the `CancellationToken` fires, ffmpeg's whole process group gets SIGKILL and is reaped
//! before [`Toolchain::transcode_hls`] returns [`MediaError::Cancelled`], so the output directory
//! can be removed right away. Dropping the future kills the group too. A non-zero exit becomes
//! [`MediaError::Failed`] with the last 20 lines of stderr, or [`MediaError::OutOfMemory`] when
//! ffmpeg ran under the toolchain's memory budget and reported a failed allocation.
//!
//! # Bounds
//!
//! - Time: the run gets [`TranscodeOptions::time_budget`] of wall-clock time (a multiple of the
//!   probed duration, with a floor and a hard cap); past it the process group is killed and the
//!   call returns [`MediaError::TimedOut`]. A source whose header under-states its length cannot
//!   keep a worker for longer than that.
//! - Memory: [`Toolchain::with_memory_limit`] (`RLIMIT_AS` on the child).
//! - Threads: [`TranscodeOptions::threads`] goes to the decoder, the filter graph and x264.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ladder::{Rendition, ladder};
use crate::probe::{INPUT_FORMATS, absolute_input};
use crate::process::{Running, collect_tail, command};
use crate::progress::{ProgressParser, ProgressTracker, TranscodeProgress};
use crate::toolchain::FFMPEG_ENV;
use crate::{MediaError, ProbeInfo, Toolchain};

/// File name of the master playlist inside the output directory.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// File name of each rendition's media playlist inside `<out_dir>/<rendition name>/`.
pub const VARIANT_PLAYLIST: &str = "index.m3u8";

/// libx264 speed/quality preset, fastest (largest files) to slowest (smallest files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Preset {
    Ultrafast,
    Superfast,
    #[default]
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
    Slower,
    Veryslow,
}

impl Preset {
    /// The name x264 knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Ultrafast => "ultrafast",
            Preset::Superfast => "superfast",
            Preset::Veryfast => "veryfast",
            Preset::Faster => "faster",
            Preset::Fast => "fast",
            Preset::Medium => "medium",
            Preset::Slow => "slow",
            Preset::Slower => "slower",
            Preset::Veryslow => "veryslow",
        }
    }

    const ALL: [Preset; 9] = [
        Preset::Ultrafast,
        Preset::Superfast,
        Preset::Veryfast,
        Preset::Faster,
        Preset::Fast,
        Preset::Medium,
        Preset::Slow,
        Preset::Slower,
        Preset::Veryslow,
    ];
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown preset name (configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown x264 preset {0:?} (expected ultrafast … veryslow)")]
pub struct BadPreset(String);

impl FromStr for Preset {
    type Err = BadPreset;
    fn from_str(s: &str) -> Result<Self, BadPreset> {
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| BadPreset(s.to_owned()))
    }
}

/// Encoder settings that come from configuration rather than from the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeOptions {
    /// x264 preset; default `veryfast`.
    pub preset: Preset,
    /// Target segment length in seconds (`-hls_time`, keyframe spacing); default 4.
    pub segment_secs: u32,
    /// AAC bit rate per rendition, kb/s; default 128.
    pub audio_kbps: u32,
    /// Frame rates above this are reduced to it (240 fps slow-motion clips); default 60.
    pub max_fps: u32,
    /// ffmpeg `-threads` (decoder and encoder) and `-filter_complex_threads`; `None` lets ffmpeg
    /// decide (about 1.5 threads per core for x264).
    pub threads: Option<u32>,
    /// The wall-clock budget of one transcode is this many times the probed duration (at least
    /// [`MIN_TIME_BUDGET`], at most [`TranscodeOptions::timeout_max`]); default 2 (ffmpeg at
    /// half real time).
    pub timeout_factor: f64,
    /// Hard cap on one transcode's wall-clock time, whatever the duration; default 12 h.
    pub timeout_max: Duration,
}

/// The shortest transcode budget [`TranscodeOptions::time_budget`] gives (unless
/// [`TranscodeOptions::timeout_max`] is shorter): start-up and a slow first segment.
pub const MIN_TIME_BUDGET: Duration = Duration::from_secs(120);

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            preset: Preset::Veryfast,
            segment_secs: 4,
            audio_kbps: 128,
            max_fps: 60,
            threads: None,
            timeout_factor: 2.0,
            timeout_max: Duration::from_secs(12 * 3600),
        }
    }
}

impl TranscodeOptions {
    /// How long a transcode of `duration_secs` of video may run before ffmpeg is killed:
    /// `timeout_factor × duration`, at least [`MIN_TIME_BUDGET`], at most `timeout_max`.
    pub fn time_budget(&self, duration_secs: f64) -> Duration {
        let factor = if self.timeout_factor.is_finite() && self.timeout_factor > 0.0 {
            self.timeout_factor
        } else {
            1.0
        };
        let secs = if duration_secs.is_finite() && duration_secs > 0.0 {
            duration_secs * factor
        } else {
            0.0
        };
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.timeout_max)
            .max(MIN_TIME_BUDGET)
            .min(self.timeout_max)
    }
}

/// Everything one HLS transcode needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HlsJob {
    /// The source file (local).
    pub input: PathBuf,
    /// Directory receiving `master.m3u8` and the rendition directories; created if missing.
    pub out_dir: PathBuf,
    /// Renditions, best first (see [`crate::ladder`](mod@crate::ladder)).
    pub renditions: Vec<Rendition>,
    /// Whether to map and encode the source's first audio stream.
    pub has_audio: bool,
    /// Source duration, the denominator of the progress fraction.
    pub duration_secs: f64,
    /// The source's frame rate, if known (to apply [`TranscodeOptions::max_fps`]).
    pub source_fps: Option<f64>,
    /// Encoder settings.
    pub options: TranscodeOptions,
}

impl HlsJob {
    /// The job for a probed source: ladder from its display size, audio when it has some.
    pub fn from_probe(
        input: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
        probe: &ProbeInfo,
        options: TranscodeOptions,
    ) -> Self {
        Self {
            input: input.into(),
            out_dir: out_dir.into(),
            renditions: ladder(probe.width, probe.height),
            has_audio: probe.has_audio,
            duration_secs: probe.duration_secs,
            source_fps: probe.frame_rate,
            options,
        }
    }

    /// Where the master playlist will be.
    pub fn master_playlist(&self) -> PathBuf {
        self.out_dir.join(MASTER_PLAYLIST)
    }
}

/// What a successful transcode reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeOutcome {
    /// Path of the written master playlist.
    pub master_playlist: PathBuf,
    /// Wall time of the ffmpeg run.
    pub elapsed: Duration,
    /// The last progress value (also the final value sent on the watch channel).
    pub progress: TranscodeProgress,
}

/// The ffmpeg arguments for `job`, exactly as [`Toolchain::transcode_hls`] passes them (it first
/// makes `input` and `out_dir` absolute). Fails on requests ffmpeg would misread: no renditions,
/// odd sizes, names that are not `[a-z0-9]+`, or an output path containing `%` (ffmpeg's template
/// character) or that is not UTF-8.
pub fn hls_args(job: &HlsJob) -> Result<Vec<OsString>, MediaError> {
    let bad = |m: String| Err(MediaError::InvalidRequest(m));
    let n = job.renditions.len();
    if n == 0 || n > 8 {
        return bad(format!("{n} renditions requested (1 to 8 allowed)"));
    }
    for (i, r) in job.renditions.iter().enumerate() {
        if job.renditions[..i].iter().any(|o| o.name == r.name) {
            return bad(format!("rendition name {:?} used twice", r.name));
        }
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 16
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !name_ok || r.width < 2 || r.height < 2 || r.width % 2 == 1 || r.height % 2 == 1 {
            return bad(format!("invalid rendition {r:?}"));
        }
    }
    let opts = &job.options;
    if !(1..=60).contains(&opts.segment_secs) {
        return bad(format!("segment length {} s", opts.segment_secs));
    }
    let Some(out) = job.out_dir.to_str() else {
        return bad("output directory is not UTF-8".to_owned());
    };
    if out.contains('%') {
        return bad("output directory must not contain '%'".to_owned());
    }
    let out = out.trim_end_matches('/');

    let mut a: Vec<OsString> = Vec::with_capacity(64);
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&["-hide_banner", "-nostdin", "-y", "-loglevel", "warning"]);
    push(&["-progress", "pipe:1", "-nostats"]);
    push(&[
        "-format_whitelist",
        INPUT_FORMATS,
        "-protocol_whitelist",
        "file",
    ]);
    let input = job
        .input
        .to_str()
        .ok_or_else(|| MediaError::InvalidRequest("input path is not UTF-8".to_owned()))?;
    let threads = opts.threads.map(|t| t.clamp(1, 64).to_string());
    if let Some(t) = &threads {
        // Before -i: the decoder's threads (each frame thread holds frames of its own).
        push(&["-threads", t, "-filter_complex_threads", t]);
    }
    push(&["-i", input]);
    push(&["-filter_complex", &filter_graph(job)]);
    for i in 0..n {
        push(&["-map", &format!("[v{i}]")]);
        if job.has_audio {
            push(&["-map", "0:a:0"]);
        }
    }
    let gop = format!("expr:gte(t,n_forced*{})", opts.segment_secs);
    push(&["-c:v", "libx264", "-preset", opts.preset.as_str()]);
    push(&["-profile:v", "high", "-sc_threshold", "0"]);
    push(&["-force_key_frames", &gop]);
    for (i, r) in job.renditions.iter().enumerate() {
        push(&[&format!("-b:v:{i}"), &format!("{}k", r.video_kbps)]);
        push(&[&format!("-maxrate:v:{i}"), &format!("{}k", r.maxrate_kbps)]);
        push(&[&format!("-bufsize:v:{i}"), &format!("{}k", r.bufsize_kbps)]);
    }
    if job.has_audio {
        let kbps = format!("{}k", opts.audio_kbps.clamp(32, 512));
        push(&["-c:a", "aac", "-b:a", &kbps, "-ac", "2"]);
    }
    push(&["-map_metadata", "-1", "-map_chapters", "-1"]);
    push(&["-max_muxing_queue_size", "1024"]);
    if let Some(t) = &threads {
        // After the inputs: x264's threads.
        push(&["-threads", t]);
    }
    let map: Vec<String> = job
        .renditions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if job.has_audio {
                format!("v:{i},a:{i},name:{}", r.name)
            } else {
                format!("v:{i},name:{}", r.name)
            }
        })
        .collect();
    push(&["-f", "hls", "-hls_time", &opts.segment_secs.to_string()]);
    push(&[
        "-hls_playlist_type",
        "vod",
        "-hls_flags",
        "independent_segments",
    ]);
    push(&["-hls_segment_type", "mpegts"]);
    push(&["-hls_segment_filename", &format!("{out}/%v/seg_%05d.ts")]);
    push(&["-master_pl_name", MASTER_PLAYLIST]);
    push(&["-var_stream_map", &map.join(" ")]);
    push(&[&format!("{out}/%v/{VARIANT_PLAYLIST}")]);
    Ok(a)
}

fn filter_graph(job: &HlsJob) -> String {
    let n = job.renditions.len();
    let fps = match job.source_fps {
        Some(f) if f > f64::from(job.options.max_fps) && job.options.max_fps > 0 => {
            format!("fps={},", job.options.max_fps)
        }
        _ => String::new(),
    };
    let scale =
        |r: &Rendition| format!("scale=w={}:h={},setsar=1,format=yuv420p", r.width, r.height);
    if n == 1 {
        return format!("[0:v:0]{fps}{}[v0]", scale(&job.renditions[0]));
    }
    let splits: String = (0..n).map(|i| format!("[s{i}]")).collect();
    let mut g = format!("[0:v:0]{fps}split={n}{splits}");
    for (i, r) in job.renditions.iter().enumerate() {
        g.push_str(&format!(";[s{i}]{}[v{i}]", scale(r)));
    }
    g
}

impl Toolchain {
    /// Runs the HLS transcode described by `job` (see the module docs), publishing progress on
    /// `progress` and stopping promptly when `cancel` fires.
    ///
    /// On success the master playlist exists; validate the output with
    /// [`crate::validate_hls`] before publishing it. On any error the output directory may hold
    /// partial files: the caller owns that directory and removes it.
    pub async fn transcode_hls(
        &self,
        job: &HlsJob,
        progress: &watch::Sender<TranscodeProgress>,
        cancel: &CancellationToken,
    ) -> Result<TranscodeOutcome, MediaError> {
        if cancel.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        let input = absolute_input(&job.input).await?;
        tokio::fs::create_dir_all(&job.out_dir)
            .await
            .map_err(|e| MediaError::io(format!("creating {}", job.out_dir.display()), e))?;
        let out_dir = std::path::absolute(&job.out_dir)
            .map_err(|e| MediaError::io(format!("resolving {}", job.out_dir.display()), e))?;
        let resolved = HlsJob {
            input,
            out_dir,
            ..job.clone()
        };
        let args = hls_args(&resolved)?;

        let started = Instant::now();
        let budget = job.options.time_budget(job.duration_secs);
        let deadline = tokio::time::sleep(budget);
        tokio::pin!(deadline);
        let mut cmd = command(self.ffmpeg().as_os_str());
        cmd.args(&args);
        let mut running =
            Running::spawn_limited("ffmpeg", FFMPEG_ENV, &mut cmd, self.memory_limit())?;
        tracing::debug!(
            ffmpeg.pid = running.child.id(),
            renditions = job.renditions.len(),
            budget_secs = budget.as_secs(),
            memory_limit = self.memory_limit(),
            "transcode started"
        );
        let timed_out = || MediaError::TimedOut {
            tool: "ffmpeg",
            secs: budget.as_secs(),
        };
        let stderr = running.child.stderr.take().map(collect_tail);
        let mut stdout = running.child.stdout.take();

        let mut parser = ProgressParser::new();
        let mut tracker = ProgressTracker::new(job.duration_secs);
        progress.send_replace(tracker.current());
        let mut buf = [0u8; 4096];
        if let Some(pipe) = stdout.as_mut() {
            loop {
                let read = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        running.kill().await;
                        return Err(MediaError::Cancelled);
                    }
                    () = &mut deadline => {
                        running.kill().await;
                        return Err(timed_out());
                    }
                    r = pipe.read(&mut buf) => r,
                };
                match read {
                    Ok(0) => break,
                    Ok(n) => {
                        for block in parser.push(&buf[..n]) {
                            progress.send_replace(tracker.update(&block));
                        }
                    }
                    Err(e) => {
                        running.kill().await;
                        return Err(MediaError::io("reading ffmpeg progress", e));
                    }
                }
            }
        }
        if let Some(block) = parser.finish() {
            progress.send_replace(tracker.update(&block));
        }
        let status = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                running.kill().await;
                return Err(MediaError::Cancelled);
            }
            () = &mut deadline => {
                running.kill().await;
                return Err(timed_out());
            }
            s = running.wait() => s?,
        };
        let stderr_tail = match stderr {
            Some(h) => h.await.unwrap_or_default(),
            None => Default::default(),
        };
        if !status.success() {
            return Err(running.failure(status.code(), stderr_tail));
        }
        let master = job.master_playlist();
        if !is_file(&master).await {
            return Err(MediaError::BadToolOutput {
                tool: "ffmpeg",
                detail: format!("exited successfully but wrote no {MASTER_PLAYLIST}"),
            });
        }
        Ok(TranscodeOutcome {
            master_playlist: master,
            elapsed: started.elapsed(),
            progress: tracker.current(),
        })
    }
}

async fn is_file(p: &Path) -> bool {
    tokio::fs::metadata(p).await.is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(w: u32, h: u32, audio: bool) -> HlsJob {
        HlsJob {
            input: "/in/source.mp4".into(),
            out_dir: "/out/hls/".into(),
            renditions: ladder(w, h),
            has_audio: audio,
            duration_secs: 10.0,
            source_fps: Some(25.0),
            options: TranscodeOptions::default(),
        }
    }

    fn text(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
        let i = args.iter().position(|a| a == flag).expect(flag);
        &args[i + 1]
    }

    #[test]
    fn two_renditions_with_audio() {
        let a = text(&hls_args(&job(1280, 720, true)).expect("valid"));
        assert_eq!(
            value_of(&a, "-filter_complex"),
            "[0:v:0]split=2[s0][s1];[s0]scale=w=1280:h=720,setsar=1,format=yuv420p[v0];\
             [s1]scale=w=854:h=480,setsar=1,format=yuv420p[v1]"
        );
        assert_eq!(
            value_of(&a, "-var_stream_map"),
            "v:0,a:0,name:720p v:1,a:1,name:480p"
        );
        assert_eq!(a.iter().filter(|x| *x == "0:a:0").count(), 2);
        assert_eq!(value_of(&a, "-b:v:1"), "1500k");
        assert_eq!(value_of(&a, "-preset"), "veryfast");
        assert_eq!(value_of(&a, "-force_key_frames"), "expr:gte(t,n_forced*4)");
        assert_eq!(
            value_of(&a, "-hls_segment_filename"),
            "/out/hls/%v/seg_%05d.ts"
        );
        assert_eq!(a.last().map(String::as_str), Some("/out/hls/%v/index.m3u8"));
        assert!(a.iter().any(|x| x == "aac"));
        let i = a.iter().position(|x| x == "-i").expect("-i");
        assert_eq!(a[i + 1], "/in/source.mp4");
        assert!(
            a.iter()
                .position(|x| x == "-format_whitelist")
                .expect("whitelist")
                < i,
            "whitelist applies to the input"
        );
    }

    #[test]
    fn single_rendition_without_audio_and_fps_cap() {
        let mut j = job(640, 360, false);
        j.source_fps = Some(240.0);
        j.options.preset = Preset::Slow;
        j.options.threads = Some(2);
        let a = text(&hls_args(&j).expect("valid"));
        assert_eq!(
            value_of(&a, "-filter_complex"),
            "[0:v:0]fps=60,scale=w=640:h=360,setsar=1,format=yuv420p[v0]"
        );
        assert_eq!(value_of(&a, "-var_stream_map"), "v:0,name:360p");
        assert!(!a.iter().any(|x| x == "0:a:0" || x == "aac"));
        assert_eq!(value_of(&a, "-preset"), "slow");
        assert_eq!(value_of(&a, "-threads"), "2");
        assert_eq!(value_of(&a, "-filter_complex_threads"), "2");
        let i = a.iter().position(|x| x == "-i").expect("-i");
        assert_eq!(
            a.iter().filter(|x| *x == "-threads").count(),
            2,
            "decoder and encoder"
        );
        assert!(a.iter().position(|x| x == "-threads").expect("threads") < i);
    }

    #[test]
    fn refuses_requests_ffmpeg_would_misread() {
        let mut j = job(1280, 720, true);
        j.out_dir = "/tmp/100%/x".into();
        assert!(hls_args(&j).is_err());
        let mut j = job(1280, 720, true);
        j.renditions.clear();
        assert!(hls_args(&j).is_err());
        let mut j = job(1280, 720, true);
        j.renditions[0].width = 1279;
        assert!(hls_args(&j).is_err());
        let mut j = job(1280, 720, true);
        j.renditions[0].name = "a,b:c".into();
        assert!(hls_args(&j).is_err());
        let mut j = job(1280, 720, true);
        j.renditions[1].name = j.renditions[0].name.clone();
        assert!(hls_args(&j).is_err());
        let mut j = job(1280, 720, true);
        j.options.segment_secs = 0;
        assert!(hls_args(&j).is_err());
    }

    #[test]
    fn the_time_budget_follows_the_duration_within_bounds() {
        let o = TranscodeOptions::default();
        assert_eq!(o.time_budget(10.0), MIN_TIME_BUDGET);
        assert_eq!(o.time_budget(3600.0), Duration::from_secs(7200));
        assert_eq!(o.time_budget(4.0 * 3600.0), Duration::from_secs(8 * 3600));
        assert_eq!(o.time_budget(10.0 * 3600.0), Duration::from_secs(12 * 3600));
        assert_eq!(o.time_budget(f64::NAN), MIN_TIME_BUDGET);
        let tight = TranscodeOptions {
            timeout_max: Duration::from_secs(2),
            ..TranscodeOptions::default()
        };
        assert_eq!(
            tight.time_budget(600.0),
            Duration::from_secs(2),
            "the cap wins"
        );
    }

    #[test]
    fn presets_parse() {
        assert_eq!("VeryFast".parse::<Preset>(), Ok(Preset::Veryfast));
        assert_eq!(" slow ".parse::<Preset>(), Ok(Preset::Slow));
        assert!("placebo -x".parse::<Preset>().is_err());
        for p in Preset::ALL {
            assert_eq!(p.as_str().parse::<Preset>(), Ok(p));
        }
    }
}
