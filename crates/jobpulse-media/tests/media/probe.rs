use jobpulse_media::MediaError;
use jobpulse_media::testing::{ClipSpec, write_corrupt_file};

use crate::helpers::{clip, tempdir, tools};

#[tokio::test]
async fn landscape_with_audio() {
    let dir = tempdir();
    let path = clip(
        dir.path(),
        "a.mp4",
        ClipSpec::new(2.0, 320, 180).with_audio(),
    )
    .await;
    let info = tools().probe(&path).await.expect("probe");
    assert_eq!((info.width, info.height), (320, 180));
    assert_eq!((info.coded_width, info.coded_height), (320, 180));
    assert_eq!(info.rotation, 0);
    assert!(!info.is_portrait());
    assert!(info.has_audio);
    assert_eq!(info.video_codec, "h264");
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    assert!(
        (info.duration_secs - 2.0).abs() < 0.1,
        "{}",
        info.duration_secs
    );
    assert_eq!(info.frame_rate, Some(25.0));
    assert!(info.size_bytes.is_some_and(|s| s > 0));
}

#[tokio::test]
async fn genuinely_portrait_without_audio() {
    let dir = tempdir();
    let path = clip(dir.path(), "p.mp4", ClipSpec::new(2.0, 180, 320)).await;
    let info = tools().probe(&path).await.expect("probe");
    assert_eq!((info.width, info.height), (180, 320));
    assert!(info.is_portrait());
    assert!(!info.has_audio);
    assert_eq!(info.audio_codec, None);
}

#[tokio::test]
async fn rotation_metadata_makes_a_phone_video_portrait() {
    let dir = tempdir();
    let path = clip(
        dir.path(),
        "r.mp4",
        ClipSpec::new(2.0, 320, 180).rotated(90),
    )
    .await;
    let info = tools().probe(&path).await.expect("probe");
    assert_eq!(
        (info.coded_width, info.coded_height),
        (320, 180),
        "stored landscape"
    );
    assert!(
        info.rotation == 90 || info.rotation == 270,
        "{}",
        info.rotation
    );
    assert_eq!((info.width, info.height), (180, 320), "displayed portrait");
    assert!(info.is_portrait());
}

#[tokio::test]
async fn broken_files_get_clear_errors() {
    let dir = tempdir();
    let t = tools();

    let corrupt = dir.path().join("corrupt.mp4");
    write_corrupt_file(&corrupt).expect("write");
    let err = t.probe(&corrupt).await.expect_err("corrupt");
    assert!(matches!(err, MediaError::NotMedia { .. }), "{err:?}");
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(
        msg.starts_with("the file is not a video ffmpeg can read ("),
        "{msg}"
    );
    assert!(
        !msg.contains(dir.path().to_str().expect("utf-8")),
        "no server paths: {msg}"
    );

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    assert!(matches!(
        t.probe(&empty).await,
        Err(MediaError::NotMedia { .. })
    ));

    let text = dir.path().join("notes.mov");
    std::fs::write(&text, "just some text, not a video\n".repeat(100)).expect("write");
    assert!(matches!(
        t.probe(&text).await,
        Err(MediaError::NotMedia { .. })
    ));

    let missing = dir.path().join("missing.mp4");
    assert!(matches!(
        t.probe(&missing).await,
        Err(MediaError::Io { .. })
    ));
}

#[tokio::test]
async fn audio_only_has_no_video_stream() {
    let dir = tempdir();
    let path = dir.path().join("tone.m4a");
    let status = std::process::Command::new(tools().ffmpeg())
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let err = tools().probe(&path).await.expect_err("audio only");
    assert!(matches!(err, MediaError::NoVideoStream), "{err:?}");
    assert_eq!(err.to_string(), "the file has no video stream");
}

/// A playlist posing as a video must not make ffmpeg read other local files (another tenant's
/// segments, /etc/passwd): the demuxer whitelist refuses it.
#[tokio::test]
async fn playlists_disguised_as_videos_are_refused() {
    let dir = tempdir();
    let real = clip(dir.path(), "victim.mp4", ClipSpec::new(1.0, 160, 90)).await;
    let evil = dir.path().join("upload.mp4");
    std::fs::write(
        &evil,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n",
            real.display()
        ),
    )
    .expect("write");
    let err = tools().probe(&evil).await.expect_err("refused");
    assert!(matches!(err, MediaError::NotMedia { .. }), "{err:?}");
    assert!(
        err.to_string().contains("unsupported container format"),
        "{err}"
    );
}
