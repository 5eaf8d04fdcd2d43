//! ffprobe JSON parsing tests: display size, rotation, frame rate, audio, failures.

use super::parse::ratio;
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
    let art = r#"{"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}}"#;
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
