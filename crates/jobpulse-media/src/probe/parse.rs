//! ffprobe's JSON turned into a [`ProbeInfo`]: the first video stream's display size (sample
//! aspect ratio and display rotation applied), duration, frame rate and audio.

use serde::Deserialize;

use super::ProbeInfo;
use crate::MediaError;
#[cfg(doc)]
use crate::Toolchain;

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
pub(super) fn ratio(s: &str) -> Option<f64> {
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
