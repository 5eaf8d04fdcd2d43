//! What is in a media file: [`Toolchain::probe`] runs
//!
//! ```text
//! ffprobe -v error -format_whitelist <INPUT_FORMATS> -protocol_whitelist file
//!         -print_format json -show_format -show_streams <absolute path>
//! ```
//!
//! and turns the JSON into a [`ProbeInfo`] whose `width`/`height` are the size a viewer sees:
//! the stream's storage size, stretched by its sample aspect ratio and turned by its display
//! rotation (a phone's portrait video is stored 1920x1080 with a 90° display matrix, and must come
//! out 1080x1920 so the ladder and the player treat it as portrait).
//!
//! Uploaded files are untrusted. The demuxer whitelist ([`INPUT_FORMATS`]) refuses playlist-like
//! formats (HLS, concat, …): a "video" that is really a playlist could otherwise make ffmpeg read
//! other local files — other tenants' videos — into this tenant's output. The same whitelist is
//! passed to every ffmpeg run on an uploaded file. The path is made absolute so a name such as
//! `x:y.mp4` can never be read as a protocol.
//!
//! The submodules: `parse` (ffprobe's JSON to a [`ProbeInfo`]: display size, rotation, frame
//! rate).

mod parse;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::{command, run_limited};
use crate::toolchain::FFPROBE_ENV;
use crate::{MediaError, Toolchain};

pub use self::parse::parse_probe_json;

/// Demuxers allowed to open an uploaded file (ffmpeg `-format_whitelist`). Real video containers
/// plus a few audio-only ones (so an audio upload is told "no video stream", not "not media").
pub const INPUT_FORMATS: &str =
    "mov,matroska,avi,mpegts,mpeg,mpegvideo,flv,asf,ogg,h264,hevc,m4v,dv,mxf,wav,mp3,aac";

/// Budget for one ffprobe run; it reads headers, not the whole file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The facts about a media file the pipeline needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// Playable duration in seconds, always finite and positive.
    pub duration_secs: f64,
    /// Display width: after sample aspect ratio and rotation.
    pub width: u32,
    /// Display height: after sample aspect ratio and rotation.
    pub height: u32,
    /// Width of the stored picture, before aspect ratio and rotation.
    pub coded_width: u32,
    /// Height of the stored picture, before aspect ratio and rotation.
    pub coded_height: u32,
    /// Display rotation as the file declares it, normalised to 0, 90, 180 or 270 degrees. Only
    /// whether it is a quarter turn (90/270, width and height swap) matters to jobpulse.
    pub rotation: u16,
    /// Whether there is at least one audio stream.
    pub has_audio: bool,
    /// The video codec's ffmpeg name, e.g. `"h264"`.
    pub video_codec: String,
    /// The first audio stream's codec, e.g. `"aac"`.
    pub audio_codec: Option<String>,
    /// Average frame rate, when the file states one.
    pub frame_rate: Option<f64>,
    /// ffmpeg's container name, e.g. `"mov,mp4,m4a,3gp,3g2,mj2"`.
    pub format_name: String,
    /// Overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// File size in bytes, when known.
    pub size_bytes: Option<u64>,
}

impl ProbeInfo {
    /// True when the displayed picture is taller than wide.
    pub fn is_portrait(&self) -> bool {
        self.height > self.width
    }

    /// Whole seconds, as docs/contract.md's `duration` field carries them.
    pub fn duration_whole_secs(&self) -> u64 {
        self.duration_secs.round() as u64
    }
}

impl Toolchain {
    /// Probes `path` (a local file). See the module docs for the command line.
    ///
    /// Errors a user can act on: [`MediaError::NotMedia`] (not a readable media file),
    /// [`MediaError::NoVideoStream`], [`MediaError::ZeroDuration`],
    /// [`MediaError::OutOfMemory`] (ffprobe hit the toolchain's memory budget), and
    /// [`MediaError::ToolMissing`] when ffprobe is not installed.
    pub async fn probe(&self, path: &Path) -> Result<ProbeInfo, MediaError> {
        let abs = absolute_input(path).await?;
        let out = run_limited(
            "ffprobe",
            FFPROBE_ENV,
            command(self.ffprobe().as_os_str())
                .args(["-v", "error", "-format_whitelist", INPUT_FORMATS])
                .args(["-protocol_whitelist", "file"])
                .args(["-print_format", "json", "-show_format", "-show_streams"])
                .arg(&abs),
            PROBE_TIMEOUT,
            self.memory_limit(),
        )
        .await?;
        if let Some(oom) = out.out_of_memory {
            return Err(oom);
        }
        if !out.status.success() {
            return Err(MediaError::NotMedia {
                detail: probe_failure_detail(&out.stderr_tail, &abs),
            });
        }
        parse_probe_json(&out.stdout)
    }
}

/// Checks that an input file exists and returns its absolute path.
pub(crate) async fn absolute_input(path: &Path) -> Result<PathBuf, MediaError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| MediaError::io(format!("opening {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(MediaError::InvalidRequest(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    std::path::absolute(path)
        .map_err(|e| MediaError::io(format!("resolving {}", path.display()), e))
}

/// ffprobe's explanation without our server paths in it.
fn probe_failure_detail(stderr_tail: &str, abs: &Path) -> String {
    if stderr_tail.contains("not on whitelist") {
        return "unsupported container format".to_owned();
    }
    let prefix = format!("{}: ", abs.display());
    let line = stderr_tail
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("ffprobe could not read it");
    line.strip_prefix(&prefix).unwrap_or(line).to_owned()
}
