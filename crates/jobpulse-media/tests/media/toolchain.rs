use std::ffi::OsString;

use jobpulse_media::{MediaError, Toolchain};

use crate::helpers::{tempdir, tools};

#[tokio::test]
async fn detects_the_installed_ffmpeg_and_verifies_its_encoders() {
    let t = tools();
    let version = t.version().await.expect("version");
    assert!(
        version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == 'n' || c == 'N'),
        "version looks like a version: {version}"
    );
    assert_eq!(t.verify().await.expect("libx264 and aac present"), version);
}

#[test]
fn a_missing_ffmpeg_is_reported_with_an_install_hint() {
    let empty = tempdir();
    let err = Toolchain::detect_from(None, None, Some(empty.path().as_os_str().to_owned()))
        .expect_err("nothing on this PATH");
    assert!(matches!(
        err,
        MediaError::ToolMissing { tool: "ffmpeg", .. }
    ));
    assert!(
        err.to_string()
            .starts_with("ffmpeg is not installed; install it (e.g. apt-get install ffmpeg)"),
        "{err}"
    );

    let err = Toolchain::detect_from(Some(OsString::from("/nonexistent/ffmpeg")), None, None)
        .expect_err("explicit path that does not exist");
    assert!(
        err.to_string()
            .contains("JOBPULSE_FFMPEG=/nonexistent/ffmpeg"),
        "{err}"
    );

    // Env overrides PATH; empty values count as unset.
    let real = tools();
    let t = Toolchain::detect_from(
        Some(real.ffmpeg().as_os_str().to_owned()),
        Some(OsString::new()),
        std::env::var_os("PATH"),
    )
    .expect("detected");
    assert_eq!(t.ffmpeg(), real.ffmpeg());
}

#[tokio::test]
async fn running_a_missing_tool_says_it_is_not_installed() {
    let dir = tempdir();
    let file = dir.path().join("x.mp4");
    std::fs::write(&file, b"x").expect("write");
    let t = Toolchain::new("/nonexistent/ffmpeg", "/nonexistent/ffprobe");
    let err = t.probe(&file).await.expect_err("no ffprobe");
    assert!(
        err.to_string().starts_with("ffprobe is not installed"),
        "{err}"
    );
    let err = t.version().await.expect_err("no ffmpeg");
    assert!(
        err.to_string().starts_with("ffmpeg is not installed"),
        "{err}"
    );
}
