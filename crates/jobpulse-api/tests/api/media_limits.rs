//! Issue 15 finding 1 (unbounded transcodes), at the API: an upload over the video limits —
//! too long, too wide, too many pixels — is refused at upload with a 422 whose message names
//! the limit, and nothing is stored or queued. The files are real ffmpeg output, made small:
//! a still picture encodes ten hours in about a second, a huge frame needs only two of them.

use std::time::Instant;

use jobpulse_media::testing::{ClipSpec, generate_clip};
use jobpulse_testkit::{Backend, both};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::*;

async fn upload(
    app: &DbApp,
    token: &str,
    session: i64,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, Value)> {
    let form = Form::new()
        .text("session_id", session.to_string())
        .part("file", Part::bytes(bytes).file_name("lecture.mp4"));
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/media/videos/", app.app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// Files no storage object, no spool file and no video row may be left of.
fn files_under(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { files_under(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn videos_over_the_limits_are_refused_at_upload(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    let tc = jobpulse_media::Toolchain::detect()?;
    let cases = [
        // The third file: 10 h of 16x16 at 1 fps (it made 9 002 segments).
        (
            "10h",
            ClipSpec::new(36_000.0, 16, 16).at_fps(1).still(),
            "the video is 10 h long; the limit is 4 h",
        ),
        // Wider than 4096 (the 15872x15872 two-frame file, made cheap).
        (
            "wide",
            ClipSpec::new(0.08, 4112, 64).still(),
            "the video is 4112x64 pixels; the limit is 4096 pixels on either side",
        ),
        // Within 4096 a side, but 9.6 megapixels a frame.
        (
            "pixels",
            ClipSpec::new(0.08, 3000, 3200).still(),
            "the video is 3000x3200 pixels (9.6 megapixels per frame); the limit is 9.4 megapixels",
        ),
    ];
    for (name, spec, want) in cases {
        let clip = app.dir.path().join(format!("{name}.mp4"));
        generate_clip(&tc, &clip, &spec).await?;
        let bytes = std::fs::read(&clip)?;
        let size = bytes.len();
        let started = Instant::now();
        let (status, body) = upload(&app, &staff, session, bytes).await?;
        let took = started.elapsed();
        assert_eq!(status, 422, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{name}: {message}");
        assert_eq!(body["error"]["code"], "unprocessable", "{name}: {body}");
        eprintln!(
            "{name} ({size} bytes) refused in {} ms: {message}",
            took.as_millis()
        );
    }
    // Nothing stored, nothing queued.
    let res = app
        .app
        .client
        .get(format!("{}/api/v1/media/videos/", app.app.base))
        .bearer_auth(&staff)
        .send()
        .await?;
    let page: Value = res.json().await?;
    assert_eq!(page["results"].as_array().map(Vec::len), Some(0), "{page}");
    assert_eq!(
        files_under(&app.dir.path().join("media")),
        0,
        "no object stored"
    );
    assert_eq!(
        files_under(&app.dir.path().join("spool")),
        0,
        "no spool file left"
    );
    // An honest file of the same kind still goes through.
    let ok = app.dir.path().join("ok.mp4");
    generate_clip(&tc, &ok, &ClipSpec::new(60.0, 16, 16).at_fps(1).still()).await?;
    let (status, body) = upload(&app, &staff, session, std::fs::read(&ok)?).await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}
both!(videos_over_the_limits_are_refused_at_upload);
