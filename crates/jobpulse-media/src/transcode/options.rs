//! What one transcode is asked to do ([`HlsJob`], with the configured [`TranscodeOptions`] and
//! x264 [`Preset`]) and what a successful one reports ([`TranscodeOutcome`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MASTER_PLAYLIST;
use crate::ProbeInfo;
use crate::ladder::{Rendition, ladder};
use crate::progress::TranscodeProgress;

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

    pub(super) const ALL: [Preset; 9] = [
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
