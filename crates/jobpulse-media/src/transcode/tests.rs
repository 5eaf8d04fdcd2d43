//! The command line's tests (no ffmpeg run: the media tests run ffmpeg), the time budget and
//! the presets.

use std::ffi::OsString;
use std::time::Duration;

use super::*;
use crate::ladder::ladder;

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
