use jobpulse_media::testing::ClipSpec;
use jobpulse_media::thumbnail_time;

use crate::helpers::{clip, streams_of, tempdir, tools};

#[tokio::test]
async fn thumbnails_are_capped_at_640_wide_and_keep_orientation() {
    let dir = tempdir();
    let t = tools();
    let wide = clip(dir.path(), "wide.mp4", ClipSpec::new(2.0, 1280, 720)).await;
    let jpg = dir.path().join("wide.jpg");
    let info = t.probe(&wide).await.expect("probe");
    let size = t
        .thumbnail(&wide, &jpg, thumbnail_time(info.duration_secs))
        .await
        .expect("thumbnail");
    assert!(size > 0);
    assert_eq!(std::fs::metadata(&jpg).expect("jpg").len(), size);
    assert_eq!(streams_of(&jpg).1, Some((640, 360)));
    assert_eq!(
        &std::fs::read(&jpg).expect("jpg")[..2],
        [0xFF, 0xD8],
        "a JPEG"
    );

    let phone = clip(
        dir.path(),
        "phone.mp4",
        ClipSpec::new(2.0, 640, 360).rotated(90),
    )
    .await;
    let jpg = dir.path().join("phone.jpg");
    t.thumbnail(&phone, &jpg, 0.2).await.expect("thumbnail");
    assert_eq!(
        streams_of(&jpg).1,
        Some((360, 640)),
        "portrait, not upscaled"
    );
}

#[tokio::test]
async fn a_time_past_the_end_falls_back_to_the_first_frame() {
    let dir = tempdir();
    let t = tools();
    let src = clip(dir.path(), "s.mp4", ClipSpec::new(1.0, 320, 180)).await;
    let jpg = dir.path().join("s.jpg");
    std::fs::write(&jpg, b"stale").expect("write");
    let size = t.thumbnail(&src, &jpg, 30.0).await.expect("thumbnail");
    assert!(size > 5, "a real JPEG replaced the stale file");
    assert_eq!(streams_of(&jpg).1, Some((320, 180)));
}
