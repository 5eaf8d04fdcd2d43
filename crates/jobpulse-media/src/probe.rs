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

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::{command, run_limited};
use crate::toolchain::FFPROBE_ENV;
use crate::{MediaError, Toolchain};

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

#[derive(Debug, Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Debug, Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
    size: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: RawDisposition,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<RawSideData>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDisposition {
    #[serde(default)]
    attached_pic: i64,
}

#[derive(Debug, Deserialize)]
struct RawSideData {
    rotation: Option<serde_json::Number>,
}

/// Parses `ffprobe -print_format json -show_format -show_streams` output. Public so callers can
/// reuse a probe stored earlier; [`Toolchain::probe`] is the usual entry point.
pub fn parse_probe_json(json: &[u8]) -> Result<ProbeInfo, MediaError> {
    let raw: RawProbe = serde_json::from_slice(json).map_err(|e| MediaError::BadToolOutput {
        tool: "ffprobe",
        detail: e.to_string(),
    })?;
    let format = raw.format.ok_or_else(|| MediaError::NotMedia {
        detail: "no container format recognised".to_owned(),
    })?;
    // Cover art in an audio file is a "video" stream with attached_pic; it is not a video.
    let video = raw
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or(MediaError::NoVideoStream)?;
    let audio = raw
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"));

    let (cw, ch) = match (video.width, video.height) {
        (Some(w), Some(h)) => (dim(w), dim(h)),
        _ => (0, 0),
    };
    if cw == 0 || ch == 0 {
        return Err(MediaError::BadDimensions {
            width: cw,
            height: ch,
        });
    }
    let rotation = rotation_of(video);
    // Anamorphic storage (e.g. DV 720x480 shown at 16:9): stretch the width by the SAR.
    let shown_w = match video.sample_aspect_ratio.as_deref().and_then(ratio) {
        Some(sar) if sar > 0.0 && (sar - 1.0).abs() > 1e-6 => {
            let w = (f64::from(cw) * sar).round();
            if (1.0..=65536.0).contains(&w) {
                w as u32
            } else {
                cw
            }
        }
        _ => cw,
    };
    let (width, height) = if rotation % 180 == 90 {
        (ch, shown_w)
    } else {
        (shown_w, ch)
    };

    let duration_secs = [format.duration.as_deref(), video.duration.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|d| d.trim().parse::<f64>().ok())
        .find(|d| d.is_finite() && *d > 0.0)
        .ok_or(MediaError::ZeroDuration)?;

    let frame_rate = [
        video.avg_frame_rate.as_deref(),
        video.r_frame_rate.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(ratio)
    .find(|r| r.is_finite() && *r > 0.0);

    Ok(ProbeInfo {
        duration_secs,
        width,
        height,
        coded_width: cw,
        coded_height: ch,
        rotation,
        has_audio: audio.is_some(),
        video_codec: video.codec_name.clone().unwrap_or_default(),
        audio_codec: audio.and_then(|a| a.codec_name.clone()),
        frame_rate,
        format_name: format.format_name.unwrap_or_default(),
        bit_rate: format.bit_rate.and_then(|b| b.trim().parse().ok()),
        size_bytes: format.size.and_then(|b| b.trim().parse().ok()),
    })
}

fn dim(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The display-matrix rotation (newer ffmpeg) or the legacy `rotate` tag, as a quarter turn.
fn rotation_of(s: &RawStream) -> u16 {
    let from_matrix = s
        .side_data_list
        .iter()
        .find_map(|d| d.rotation.as_ref().and_then(serde_json::Number::as_f64));
    let from_tag = || {
        s.tags
            .get("rotate")
            .and_then(|r| r.trim().parse::<f64>().ok())
    };
    let Some(deg) = from_matrix.or_else(from_tag) else {
        return 0;
    };
    if !deg.is_finite() {
        return 0;
    }
    let quarter = (deg / 90.0).round().rem_euclid(4.0);
    (quarter as u16) * 90
}

/// Parses `"30000/1001"`, `"16:9"` or `"25"`; `None` for `0/0` and garbage.
fn ratio(s: &str) -> Option<f64> {
    let s = s.trim();
    let (n, d) = match s.split_once(['/', ':']) {
        Some((n, d)) => (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?),
        None => (s.parse::<f64>().ok()?, 1.0),
    };
    if d == 0.0 {
        return None;
    }
    let r = n / d;
    (r.is_finite() && r > 0.0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_json(video: &str, audio: bool, duration: &str) -> String {
        let audio = if audio {
            r#",{"codec_type":"audio","codec_name":"aac"}"#
        } else {
            ""
        };
        format!(
            r#"{{"streams":[{video}{audio}],"format":{{"format_name":"mov,mp4","duration":"{duration}","size":"100","bit_rate":"800"}}}}"#
        )
    }

    #[test]
    fn rotation_and_aspect_give_the_display_size() {
        let cases = [
            // (stream json, expected display w, h, rotation)
            (
                r#"{"codec_type":"video","codec_name":"h264","width":1920,"height":1080}"#,
                1920,
                1080,
                0,
            ),
            (
                r#"{"codec_type":"video","width":1920,"height":1080,"side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}"#,
                1080,
                1920,
                270,
            ),
            (
                r#"{"codec_type":"video","width":1920,"height":1080,"side_data_list":[{"rotation":90}]}"#,
                1080,
                1920,
                90,
            ),
            (
                r#"{"codec_type":"video","width":640,"height":360,"tags":{"rotate":"90"}}"#,
                360,
                640,
                90,
            ),
            (
                r#"{"codec_type":"video","width":640,"height":360,"side_data_list":[{"rotation":180}]}"#,
                640,
                360,
                180,
            ),
            (
                r#"{"codec_type":"video","width":720,"height":480,"sample_aspect_ratio":"32:27"}"#,
                853,
                480,
                0,
            ),
            (
                r#"{"codec_type":"video","width":720,"height":480,"sample_aspect_ratio":"0:1"}"#,
                720,
                480,
                0,
            ),
        ];
        for (stream, w, h, rot) in cases {
            let info = parse_probe_json(probe_json(stream, false, "3.0").as_bytes()).expect(stream);
            assert_eq!(
                (info.width, info.height, info.rotation),
                (w, h, rot),
                "{stream}"
            );
        }
    }

    #[test]
    fn cover_art_is_not_video_and_bad_durations_are_refused() {
        let art =
            r#"{"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}}"#;
        assert!(matches!(
            parse_probe_json(probe_json(art, true, "3.0").as_bytes()),
            Err(MediaError::NoVideoStream)
        ));
        let v = r#"{"codec_type":"video","width":64,"height":64}"#;
        for d in ["0.000000", "N/A", "-1", "nan"] {
            assert!(
                matches!(
                    parse_probe_json(probe_json(v, false, d).as_bytes()),
                    Err(MediaError::ZeroDuration)
                ),
                "{d}"
            );
        }
        let no_size = r#"{"codec_type":"video","width":0,"height":64}"#;
        assert!(matches!(
            parse_probe_json(probe_json(no_size, false, "1").as_bytes()),
            Err(MediaError::BadDimensions { .. })
        ));
        assert!(matches!(
            parse_probe_json(b"not json"),
            Err(MediaError::BadToolOutput { .. })
        ));
        let ok = parse_probe_json(probe_json(v, true, "2.5").as_bytes()).expect("valid");
        assert!(ok.has_audio);
        assert_eq!(ok.audio_codec.as_deref(), Some("aac"));
        assert_eq!(ok.duration_secs, 2.5);
        assert_eq!(ok.duration_whole_secs(), 3);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio("25/1"), Some(25.0));
        assert_eq!(ratio("0/0"), None);
        assert_eq!(ratio("16:9").map(|r| (r * 9.0).round()), Some(16.0));
        assert_eq!(ratio("x"), None);
    }

    #[test]
    fn failure_detail_hides_server_paths() {
        let abs = Path::new("/srv/data/tmp/source.mp4");
        assert_eq!(
            probe_failure_detail(
                "/srv/data/tmp/source.mp4: Invalid data found when processing input",
                abs
            ),
            "Invalid data found when processing input"
        );
        assert_eq!(
            probe_failure_detail(
                "[hls @ 0x1] Format not on whitelist 'mov'\nx: Invalid argument",
                abs
            ),
            "unsupported container format"
        );
    }
}
