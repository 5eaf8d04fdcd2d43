//! Test support (cargo feature `testing`): synthetic clips made by ffmpeg itself, so tests of
//! this crate, the worker and the API run on real media without checked-in binaries.
//!
//! [`generate_clip`] encodes ffmpeg's `testsrc2` pattern (moving, so encoders do real work), or
//! for [`ClipSpec::still`] a grey `color` picture with one keyframe (hours of video in seconds),
//! and, on request, a 440 Hz `sine` tone:
//!
//! ```text
//! ffmpeg -f lavfi -i testsrc2=size=WxH:rate=FPS:duration=S
//!        [-f lavfi -i sine=frequency=440:sample_rate=48000:duration=S]
//!        [-vf noise=alls=60:allf=t+u:enable='gte(t,FROM)']
//!        -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 2*FPS [-c:a aac -b:a 64k] out.mp4
//! ```
//!
//! [`s3`] gives tests a fresh bucket on the S3-compatible test server (`scripts/s3-test-server`).
//!
//! A rotated clip (a phone's portrait recording: landscape pixels plus a display rotation) is
//! remuxed with `-metadata:s:v:0 rotate=R`, which ffmpeg 5.x turns into a display matrix; newer
//! ffmpeg ignores that tag, so `-display_rotation` is tried next and the result is verified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{command, run_to_end};
use crate::toolchain::FFMPEG_ENV;
use crate::{MediaError, Toolchain};

pub mod s3;

const GENERATE_TIMEOUT: Duration = Duration::from_secs(300);

/// What clip to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSpec {
    /// Duration in seconds.
    pub seconds: f64,
    /// Stored picture width (even).
    pub width: u32,
    /// Stored picture height (even).
    pub height: u32,
    /// Add a stereo-less 440 Hz AAC track.
    pub audio: bool,
    /// Frames per second.
    pub fps: u32,
    /// Display rotation in degrees clockwise (90 = how phones store portrait video).
    pub rotate: Option<u16>,
    /// A still grey picture (`color` source) with one keyframe: encodes hours of video in
    /// seconds, like a recording of a static slide.
    pub still: bool,
    /// Heavy per-frame noise from this point on (seconds): high motion that x264 must work
    /// hard for (`noise` filter). `Some(0.0)`: the whole clip; `None`: none.
    pub noisy_from: Option<f64>,
}

impl Default for ClipSpec {
    fn default() -> Self {
        Self {
            seconds: 2.0,
            width: 320,
            height: 240,
            audio: false,
            fps: 25,
            rotate: None,
            still: false,
            noisy_from: None,
        }
    }
}

impl ClipSpec {
    /// A silent clip of this length and stored size at 25 fps.
    pub fn new(seconds: f64, width: u32, height: u32) -> Self {
        Self {
            seconds,
            width,
            height,
            ..Self::default()
        }
    }

    /// The same clip with an audio track.
    pub fn with_audio(mut self) -> Self {
        self.audio = true;
        self
    }

    /// The same clip with a display rotation (degrees clockwise).
    pub fn rotated(mut self, degrees: u16) -> Self {
        self.rotate = Some(degrees);
        self
    }

    /// The same clip as a still grey picture (see [`ClipSpec::still`]).
    pub fn still(mut self) -> Self {
        self.still = true;
        self
    }

    /// The same clip with heavy per-frame noise from `from_secs` on (see [`ClipSpec::noisy_from`]).
    pub fn noisy_from(mut self, from_secs: f64) -> Self {
        self.noisy_from = Some(from_secs.max(0.0));
        self
    }

    /// The same clip at another frame rate.
    pub fn at_fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }
}

/// Writes an MP4 clip described by `spec` to `path`.
pub async fn generate_clip(
    tools: &Toolchain,
    path: &Path,
    spec: &ClipSpec,
) -> Result<(), MediaError> {
    let encoded = match spec.rotate {
        None => path.to_path_buf(),
        Some(_) => with_suffix(path, ".unrotated.mp4"),
    };
    let secs = format!("{:.3}", spec.seconds);
    let source = if spec.still {
        "color=c=gray"
    } else {
        "testsrc2"
    };
    let sep = if spec.still { ':' } else { '=' };
    let video = format!(
        "{source}{sep}size={}x{}:rate={}:duration={secs}",
        spec.width, spec.height, spec.fps
    );
    let mut cmd = command(tools.ffmpeg().as_os_str());
    cmd.args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i", &video]);
    if spec.audio {
        let sine = format!("sine=frequency=440:sample_rate=48000:duration={secs}");
        cmd.args(["-f", "lavfi", "-i", &sine]);
    }
    if let Some(from) = spec.noisy_from {
        let filter = format!("noise=alls=60:allf=t+u:enable='gte(t,{from:.3})'");
        cmd.args(["-vf", &filter]);
    }
    cmd.args(["-map", "0:v"]);
    if spec.audio {
        cmd.args(["-map", "1:a", "-c:a", "aac", "-b:a", "64k"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ])
    .args([
        "-g",
        &if spec.still {
            100_000
        } else {
            (spec.fps * 2).max(1)
        }
        .to_string(),
    ])
    .arg(&encoded);
    run_to_end("ffmpeg", FFMPEG_ENV, &mut cmd, GENERATE_TIMEOUT)
        .await?
        .check("ffmpeg")?;

    let Some(rotate) = spec.rotate else {
        return Ok(());
    };
    let result = rotate_clip(tools, &encoded, path, rotate).await;
    let _ = tokio::fs::remove_file(&encoded).await;
    result
}

async fn rotate_clip(
    tools: &Toolchain,
    from: &Path,
    to: &Path,
    rotate: u16,
) -> Result<(), MediaError> {
    let tag = format!("rotate={rotate}");
    run_to_end(
        "ffmpeg",
        FFMPEG_ENV,
        command(tools.ffmpeg().as_os_str())
            .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i"])
            .arg(from)
            .args(["-map", "0", "-c", "copy", "-metadata:s:v:0", &tag])
            .arg(to),
        GENERATE_TIMEOUT,
    )
    .await?
    .check("ffmpeg")?;
    if rotate.is_multiple_of(360) || tools.probe(to).await?.rotation != 0 {
        return Ok(());
    }
    // ffmpeg ≥ 6: the tag is ignored; -display_rotation takes counter-clockwise degrees.
    let ccw = format!("{}", -f64::from(rotate));
    run_to_end(
        "ffmpeg",
        FFMPEG_ENV,
        command(tools.ffmpeg().as_os_str())
            .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
            .args(["-display_rotation:v:0", &ccw, "-i"])
            .arg(from)
            .args(["-map", "0", "-c", "copy"])
            .arg(to),
        GENERATE_TIMEOUT,
    )
    .await?
    .check("ffmpeg")?;
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes a file that starts like an MP4 (`ftyp` box) but is garbage after it: what a broken
/// or mislabelled upload looks like to ffprobe.
pub fn write_corrupt_file(path: &Path) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(64 * 1024);
    bytes.extend_from_slice(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2");
    // Deterministic noise (an LCG), so failures reproduce.
    let mut x: u32 = 0x1234_5678;
    while bytes.len() < 64 * 1024 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.push((x >> 24) as u8);
    }
    std::fs::write(path, bytes)
}
