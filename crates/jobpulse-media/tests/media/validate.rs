use std::path::Path;

use jobpulse_media::{MediaError, validate_hls};

use crate::helpers::tempdir;

fn write(dir: &Path, rel: &str, content: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n\
    #EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\
    #EXT-X-STREAM-INF:BANDWIDTH=1600000,RESOLUTION=854x480,CODECS=\"avc1.64001e,mp4a.40.2\"\n480p/index.m3u8\n";

const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n\
    #EXTINF:4.000000,\nseg_00000.ts\n#EXTINF:1.500000,\nseg_00001.ts\n#EXT-X-ENDLIST\n";

fn good(dir: &Path) {
    write(dir, "master.m3u8", MASTER.as_bytes());
    for v in ["720p", "480p"] {
        write(dir, &format!("{v}/index.m3u8"), MEDIA.as_bytes());
        write(dir, &format!("{v}/seg_00000.ts"), &[0x47; 188 * 10]);
        write(dir, &format!("{v}/seg_00001.ts"), &[0x47; 188 * 3]);
    }
}

async fn invalid(dir: &Path) -> String {
    match validate_hls(dir).await {
        Err(MediaError::InvalidHls(m)) => m,
        other => panic!("expected InvalidHls, got {other:?}"),
    }
}

#[tokio::test]
async fn a_complete_output_is_summarised() {
    let d = tempdir();
    good(d.path());
    let s = validate_hls(d.path()).await.expect("valid");
    assert_eq!(s.variants.len(), 2);
    assert_eq!(s.variants[1].resolution, Some((854, 480)));
    assert_eq!(s.variants[0].bandwidth, 3_000_000);
    assert_eq!(s.variants[0].segments, 2);
    assert_eq!(s.total_duration_secs, 5.5);
    assert_eq!(
        s.files,
        [
            "master.m3u8",
            "720p/index.m3u8",
            "720p/seg_00000.ts",
            "720p/seg_00001.ts",
            "480p/index.m3u8",
            "480p/seg_00000.ts",
            "480p/seg_00001.ts"
        ]
    );
    let on_disk: u64 = s
        .files
        .iter()
        .map(|f| std::fs::metadata(d.path().join(f)).expect("file").len())
        .sum();
    assert_eq!(s.total_bytes, on_disk);
}

#[tokio::test]
async fn every_defect_is_named() {
    type Case = (&'static str, fn(&Path), &'static str);
    let cases: &[Case] = &[
        (
            "no master",
            |d| std::fs::remove_file(d.join("master.m3u8")).expect("rm"),
            "master.m3u8 is missing",
        ),
        (
            "missing variant",
            |d| std::fs::remove_file(d.join("480p/index.m3u8")).expect("rm"),
            "480p/index.m3u8 is missing",
        ),
        (
            "missing segment",
            |d| std::fs::remove_file(d.join("720p/seg_00001.ts")).expect("rm"),
            "720p/seg_00001.ts is missing",
        ),
        (
            "empty segment",
            |d| std::fs::write(d.join("480p/seg_00000.ts"), b"").expect("w"),
            "480p/seg_00000.ts is empty",
        ),
        (
            "incomplete playlist",
            |d| {
                write(
                    d,
                    "720p/index.m3u8",
                    MEDIA.replace("#EXT-X-ENDLIST\n", "").as_bytes(),
                )
            },
            "ENDLIST",
        ),
        (
            "no variants",
            |d| write(d, "master.m3u8", b"#EXTM3U\n#EXT-X-VERSION:6\n"),
            "no variant",
        ),
        (
            "escaping segment",
            |d| {
                write(
                    d,
                    "720p/index.m3u8",
                    MEDIA.replace("seg_00001.ts", "../../secret.ts").as_bytes(),
                )
            },
            "not a plain relative path",
        ),
        (
            "absolute variant",
            |d| {
                write(
                    d,
                    "master.m3u8",
                    MASTER.replace("480p/index.m3u8", "/etc/passwd").as_bytes(),
                )
            },
            "not a plain relative path",
        ),
    ];
    for (name, break_it, expected) in cases {
        let d = tempdir();
        good(d.path());
        break_it(d.path());
        let msg = invalid(d.path()).await;
        assert!(msg.contains(expected), "{name}: {msg}");
    }
}
