//! Playback (the video page): the `stats` route, absolute self-authorizing media links, byte
//! ranges, CORS, and on S3 the playlists that send the player to presigned segment URLs.

use std::time::Duration;

use jobpulse_db::{Caps, Queue};
use jobpulse_domain::{TenantId, VideoId};
use jobpulse_media::{MediaStorage, keys};
use jobpulse_testkit::{Backend, both};
use serde_json::Value;

use crate::helpers::*;

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n\
    #EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n";
const VARIANT: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n\
    #EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4.000,\nseg_00000.ts\n#EXTINF:4.000,\nseg_00001.ts\n\
    #EXT-X-ENDLIST\n";

/// A segment's bytes: distinct at every offset, so a wrong range shows.
fn segment(n: u8) -> Vec<u8> {
    (0..3000u32)
        .map(|i| (i % 251) as u8 ^ n.wrapping_mul(17))
        .collect()
}

async fn put(storage: &MediaStorage, key: &jobpulse_media::StorageKey, bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("f");
    std::fs::write(&f, bytes).expect("write");
    storage.put_file(key, &f).await.expect("stored");
}

/// A video made READY the way the worker does it (claim, output in storage, complete).
async fn ready_video(app: &DbApp, tenant: i64, session: i64) -> anyhow::Result<VideoId> {
    let t = TenantId::new(tenant)?;
    let db = &app.tdb.db;
    let created = db
        .create_video(
            t,
            Some(session),
            "Lesson",
            &format!("tenants/{tenant}/video/raw/x/source.mp4"),
        )
        .await?;
    let id = created.value.id;
    let claim = db
        .claim(
            Queue::Video,
            "test-worker",
            Duration::from_secs(60),
            Caps::default(),
        )
        .await?
        .expect("the video's job");
    let prefix = keys::hls_prefix(t, id);
    let storage = &app.state.storage;
    put(storage, &keys::hls_master_key(t, id), MASTER.as_bytes()).await;
    put(
        storage,
        &prefix.join("360p/index.m3u8")?,
        VARIANT.as_bytes(),
    )
    .await;
    put(storage, &prefix.join("360p/seg_00000.ts")?, &segment(0)).await;
    put(storage, &prefix.join("360p/seg_00001.ts")?, &segment(1)).await;
    put(
        storage,
        &keys::thumbnail_key(t, id),
        b"\xff\xd8\xff fake jpeg",
    )
    .await;
    let done = db
        .complete_video(&claim, keys::hls_master_key(t, id).as_str(), 8, 100)
        .await?;
    app.state.relay.publish_now(&done.outbox).await?;
    Ok(id)
}

async fn get_json(app: &DbApp, path: &str, token: &str) -> (u16, Value) {
    let res = app.app.get(path, Some(token)).await;
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

async fn plain(app: &DbApp, url: &str) -> reqwest::Response {
    app.app.client.get(url).send().await.expect("request sent")
}

async fn stats_give_the_video_page_absolute_playable_links(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, session) = app.tenant("acme").await?;
    let (other, _, _) = app.tenant("other").await?;
    let staff = app.app.token(t, "teacher");
    let id = ready_video(&app, t, session).await?;
    let path = format!("/api/v1/media/videos/{id}/stats/");

    let (s, body) = get_json(&app, &path, &staff).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["students"], serde_json::json!([]));
    let v = &body["video"];
    assert_eq!(v["id"], id.get());
    assert_eq!(v["title"], "Lesson");
    assert_eq!(v["status"], "READY");
    assert_eq!(v["duration"], 8);
    assert_eq!(v["encoding_progress"], 100);
    assert_eq!(v["source_type"], "upload");
    assert!(v["error_reason"].is_null());
    let hls = v["hls_url"].as_str().expect("hls_url");
    let thumb = v["thumbnail_url"].as_str().expect("thumbnail_url");
    for url in [hls, thumb] {
        assert!(
            url.starts_with(&format!("{}/media/s/", app.app.base)),
            "absolute, on the public URL: {url}"
        );
    }
    // The list and the detail hand out the same kind of link.
    let (_, detail) = get_json(&app, &format!("/api/v1/media/videos/{id}/"), &staff).await;
    let (_, list) = get_json(&app, "/api/v1/media/videos/", &staff).await;
    for url in [&detail["hls_url"], &list["results"][0]["hls_url"]] {
        let url = url.as_str().expect("hls_url");
        assert!(
            url.starts_with(&app.app.base) && url.ends_with("/master.m3u8"),
            "{url}"
        );
    }

    // Staff only; another tenant's id is an unknown id.
    let (s, _) = get_json(&app, &path, &app.app.token(t, "student")).await;
    assert_eq!(s, 403);
    let (s, foreign) = get_json(&app, &path, &app.app.token(other, "owner")).await;
    let (s2, unknown) = get_json(&app, "/api/v1/media/videos/999999/stats/", &staff).await;
    assert_eq!((s, s2), (404, 404));
    assert_eq!(foreign, unknown);
    let (s, _) = get_json(&app, "/api/v1/media/videos/abc/stats/", &staff).await;
    assert_eq!(s, 400);
    assert_eq!(app.app.get(&path, None).await.status(), 401);

    // A video still uploading: no links, progress from the read model (UPLOADED = 0).
    let queued = app
        .tdb
        .db
        .create_video(
            TenantId::new(t)?,
            None,
            "Later",
            &format!("tenants/{t}/video/raw/y/source.mp4"),
        )
        .await?;
    app.state.relay.publish_now(&queued.outbox).await?;
    let (_, later) = get_json(
        &app,
        &format!("/api/v1/media/videos/{}/stats/", queued.value.id),
        &staff,
    )
    .await;
    assert_eq!(later["video"]["status"], "UPLOADED", "{later}");
    assert!(later["video"]["hls_url"].is_null() && later["video"]["thumbnail_url"].is_null());
    assert_eq!(later["video"]["encoding_progress"], 0);

    // The links need no token; the thumbnail too.
    let res = plain(&app, thumb).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let master = plain(&app, hls).await;
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["accept-ranges"], "bytes");
    assert_eq!(master.text().await?, MASTER);
    let variant = plain(&app, &hls.replace("master.m3u8", "360p/index.m3u8")).await;
    assert_eq!(
        variant.text().await?,
        VARIANT,
        "file storage serves playlists as they are"
    );
    Ok(())
}
both!(stats_give_the_video_page_absolute_playable_links);

async fn media_links_serve_ranges_cors_and_refuse_bad_signatures(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let id = ready_video(&app, t, session).await?;
    let (_, body) = get_json(&app, &format!("/api/v1/media/videos/{id}/stats/"), &staff).await;
    let hls = body["video"]["hls_url"]
        .as_str()
        .expect("hls_url")
        .to_owned();
    let seg_url = hls.replace("master.m3u8", "360p/seg_00001.ts");
    let seg = segment(1);
    let size = seg.len();

    // Whole file, then ranges as native players send them.
    let whole = plain(&app, &seg_url).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "video/mp2t");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await?.as_ref(), seg.as_slice());
    for (range, from, to) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=2990-999999", 2990, size - 1),
    ] {
        let res = app
            .app
            .client
            .get(&seg_url)
            .header("range", range)
            .send()
            .await?;
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {from}-{to}/{size}").as_str(),
            "{range}"
        );
        assert_eq!(
            res.headers()["content-length"],
            (to - from + 1).to_string().as_str()
        );
        assert_eq!(res.bytes().await?.as_ref(), &seg[from..=to], "{range}");
    }
    for bad in [
        format!("bytes={size}-"),
        "bytes=9-3".to_owned(),
        "bytes=x-1".to_owned(),
    ] {
        let res = app
            .app
            .client
            .get(&seg_url)
            .header("range", &bad)
            .send()
            .await?;
        assert_eq!(res.status(), 416, "{bad}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
    }
    // HEAD: the headers, no body.
    let head = app.app.client.head(&seg_url).send().await?;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert!(head.bytes().await?.is_empty());

    // CORS for a player on another origin (any origin by default), ranges included.
    let res = app
        .app
        .client
        .get(&seg_url)
        .header("origin", "http://app.example")
        .header("range", "bytes=0-1")
        .send()
        .await?;
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()?
        .to_ascii_lowercase();
    assert!(exposed.contains("content-range"), "{exposed}");
    let preflight = app
        .app
        .client
        .request(reqwest::Method::OPTIONS, &seg_url)
        .header("origin", "http://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await?;
    assert!(preflight.status().is_success());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()?
        .to_ascii_lowercase();
    assert!(allowed.contains("range"), "{allowed}");

    // Forged, altered, expired, another video, another tenant: 403. A missing file under a
    // valid link: 404.
    let parts: Vec<&str> = hls.splitn(8, '/').collect();
    // http: "" host media s {expires} {n} {sig/key…}
    let (expires, sig_and_key) = (parts[5], parts[7]);
    let sig = sig_and_key.split('/').next().expect("sig");
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 10;
    let scope = keys::hls_prefix(TenantId::new(t)?, id);
    let expired = app
        .state
        .signer
        .url(
            scope.as_str().trim_end_matches('/'),
            keys::hls_master_key(TenantId::new(t)?, id).as_str(),
            past,
        )
        .expect("in scope");
    for bad in [
        hls.replacen(sig, &flipped, 1),
        hls.replacen(
            &format!("/{expires}/"),
            &format!("/{}/", expires.parse::<u64>()? + 1),
            1,
        ),
        format!("{}{expired}", app.app.base),
        hls.replace(&format!("/hls/{id}/"), &format!("/hls/{}/", id.get() + 1)),
        hls.replace(&format!("tenants/{t}/"), &format!("tenants/{}/", t + 1)),
        hls.replace("master.m3u8", "../../raw/x/source.mp4"),
    ] {
        let res = plain(&app, &bad).await;
        assert_eq!(res.status(), 403, "{bad}");
        let body: Value = res.json().await?;
        assert_eq!(body["error"]["code"], "forbidden", "{bad}");
    }
    assert_eq!(
        plain(&app, &hls.replace("master.m3u8", "nope.ts"))
            .await
            .status(),
        404
    );
    Ok(())
}
both!(media_links_serve_ranges_cors_and_refuse_bad_signatures);

/// On S3 the playlists come through jobpulse with every segment an absolute presigned URL of
/// the bucket; the bucket serves them (ranges too) and refuses an altered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_playlists_send_the_player_to_presigned_segments() -> anyhow::Result<()> {
    let storage = jobpulse_media::testing::s3::fresh_storage("media").await;
    let app = DbApp::spawn_on(
        Backend::Sqlite,
        jobpulse_api::state::Limits::default(),
        Some(storage),
    )
    .await?;
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let id = ready_video(&app, t, session).await?;
    let (_, body) = get_json(&app, &format!("/api/v1/media/videos/{id}/stats/"), &staff).await;
    let hls = body["video"]["hls_url"]
        .as_str()
        .expect("hls_url")
        .to_owned();
    assert!(
        hls.starts_with(&app.app.base),
        "playlists come through jobpulse: {hls}"
    );

    // The master playlist keeps its relative variant URI (served through jobpulse too).
    let master = plain(&app, &hls).await;
    assert_eq!(master.status(), 200);
    assert_eq!(master.text().await?, MASTER);
    let variant_url = hls.replace("master.m3u8", "360p/index.m3u8");
    let res = plain(&app, &variant_url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let variant = res.text().await?;
    let endpoint = std::env::var(jobpulse_media::testing::s3::ENDPOINT_ENV)?;
    let segs: Vec<&str> = variant.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(segs.len(), 2, "{variant}");
    for (n, url) in segs.iter().enumerate() {
        assert!(url.starts_with(&endpoint), "a presigned bucket URL: {url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains(&format!("seg_0000{n}.ts")), "{url}");
        let res = plain(&app, url).await;
        assert_eq!(res.status(), 200, "{url}");
        // Stored with its type: native players refuse binary/octet-stream segments.
        assert_eq!(res.headers()["content-type"], "video/mp2t", "{url}");
        assert_eq!(res.bytes().await?.as_ref(), segment(n as u8).as_slice());
    }
    // Tags and durations are untouched.
    assert_eq!(
        variant
            .lines()
            .filter(|l| l.starts_with('#'))
            .collect::<Vec<_>>(),
        VARIANT
            .lines()
            .filter(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
    );
    // A <video> without `crossorigin` playing natively (no-cors media request) gets the
    // playlist as stored: Chromium's native HLS refuses cross-origin segments in that mode, so
    // its segments come through jobpulse. With `crossorigin` (CORS mode) it gets presigned ones.
    let native = |mode: &'static str| {
        app.app
            .client
            .get(&variant_url)
            .header("sec-fetch-dest", "video")
            .header("sec-fetch-mode", mode)
            .header("range", "bytes=0-")
    };
    let res = native("no-cors").send().await?;
    assert_eq!(res.status(), 206);
    let vary = res.headers()["vary"].to_str()?.to_ascii_lowercase();
    assert!(
        vary.contains("sec-fetch-dest") && vary.contains("sec-fetch-mode"),
        "{vary}"
    );
    assert_eq!(res.text().await?, VARIANT);
    let res = native("cors").send().await?;
    assert_eq!(res.status(), 206);
    assert!(res.text().await?.contains("X-Amz-Signature="));

    // The bucket honours ranges on a presigned URL; an altered signature is refused.
    let res = app
        .app
        .client
        .get(segs[0])
        .header("range", "bytes=10-19")
        .send()
        .await?;
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await?.as_ref(), &segment(0)[10..20]);
    let forged = segs[0].replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(plain(&app, &forged).await.status(), 403);
    // A segment asked of jobpulse itself is still served (proxied), with ranges.
    let through = app
        .app
        .client
        .get(hls.replace("master.m3u8", "360p/seg_00001.ts"))
        .header("range", "bytes=5-9")
        .send()
        .await?;
    assert_eq!(through.status(), 206);
    assert_eq!(through.bytes().await?.as_ref(), &segment(1)[5..10]);
    // The thumbnail too.
    let thumb = body["video"]["thumbnail_url"].as_str().expect("thumbnail");
    assert_eq!(plain(&app, thumb).await.status(), 200);
    Ok(())
}
