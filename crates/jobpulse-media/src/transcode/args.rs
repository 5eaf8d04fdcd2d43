//! The ffmpeg command line of one HLS transcode (see the [module docs](super)).

use std::ffi::OsString;

use super::{HlsJob, MASTER_PLAYLIST, VARIANT_PLAYLIST};
use crate::MediaError;
#[cfg(doc)]
use crate::Toolchain;
use crate::ladder::Rendition;
use crate::probe::INPUT_FORMATS;

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
