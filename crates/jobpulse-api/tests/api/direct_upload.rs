//! The front end's start calls (docs/contract.md §7) against real storage: file storage (the API's own
//! signed upload URLs) and the S3 test server (presigned URLs, S3 multipart), on both database
//! backends. Every scenario runs four times: {file, s3} × {postgres, sqlite}.

use std::time::Duration;

use jobpulse_api::routes::direct_upload::sweep_abandoned;
use jobpulse_api::state::Limits;
use jobpulse_domain::{TenantId, VideoId};
use jobpulse_media::StorageKey;
use jobpulse_testkit::{Backend, both};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::helpers::*;

const MIB: usize = 1024 * 1024;

fn limits() -> Limits {
    Limits {
        video_bytes: 64 * MIB as u64,
        ..Limits::default()
    }
}

async fn file_app(b: Backend, limits: Limits) -> anyhow::Result<DbApp> {
    DbApp::spawn_on(b, limits, None).await
}

async fn s3_app(b: Backend, limits: Limits) -> anyhow::Result<DbApp> {
    let storage = jobpulse_media::testing::s3::fresh_storage("media").await;
    DbApp::spawn_on(b, limits, Some(storage)).await
}

/// Runs `scenario(app)` on file storage and on S3, each on both backends.
macro_rules! on_both_storages {
    ($scenario:ident, $limits:expr) => {
        mod $scenario {
            use super::*;

            async fn file(b: Backend) -> anyhow::Result<()> {
                super::$scenario(&file_app(b, $limits).await?).await
            }

            async fn s3(b: Backend) -> anyhow::Result<()> {
                super::$scenario(&s3_app(b, $limits).await?).await
            }

            both!(file);
            both!(s3);
        }
    };
}

async fn post(app: &DbApp, path: &str, token: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let res = app
        .app
        .client
        .post(format!("{}{path}", app.app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// PUTs `bytes` to an upload URL the way the browser does; returns the status and the headers.
async fn put(
    app: &DbApp,
    url: &str,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, HeaderMap)> {
    let mut req = app.app.client.put(url).body(bytes);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let _ = res.bytes().await;
    Ok((status, headers))
}

async fn progress(app: &DbApp, id: i64, token: &str) -> anyhow::Result<Value> {
    Ok(app
        .app
        .get(&format!("/api/v1/media/videos/{id}/progress/"), Some(token))
        .await
        .json()
        .await?)
}

async fn jobs_of(app: &DbApp, t: i64, id: i64) -> anyhow::Result<usize> {
    Ok(app
        .tdb
        .db
        .video_jobs(TenantId::new(t)?, VideoId::new(id)?)
        .await?
        .len())
}

async fn stored(app: &DbApp, key: &str) -> anyhow::Result<Vec<u8>> {
    let path = app.dir.path().join("check.bin");
    app.state
        .storage
        .download_to(&StorageKey::parse(key)?, &path)
        .await?;
    Ok(std::fs::read(&path)?)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn init(app: &DbApp, token: &str, session: i64) -> anyhow::Result<Value> {
    let (status, body) = post(
        app,
        "/api/v1/media/videos/upload/init/",
        token,
        json!({"session": session, "title": "강의 1", "filename": "lecture one.mp4",
               "content_type": "video/mp4", "show_watermark": true, "allow_skip": false,
               "max_speed": 1.5, "folder": null, "description": "week 1"}),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    Ok(body)
}

fn etag(h: &HeaderMap) -> String {
    h.get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// init → PENDING (polled and listed) → PUT → still PENDING → complete → UPLOADED, one job;
/// complete again → the same video, not queued again.
async fn single_upload(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let body = init(app, &staff, session).await?;
    assert_eq!(body["video"]["status"], "PENDING", "{body}");
    assert_eq!(body["video"]["title"], "강의 1");
    assert_eq!(body["video"]["session_id"], session);
    assert_eq!(body["content_type"], "video/mp4");
    let id = body["video"]["id"].as_i64().expect("id");
    let url = body["upload_url"].as_str().expect("upload_url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "absolute: {url}");
    if app.state.storage.presigns() {
        assert!(url.contains("X-Amz-Signature="), "presigned S3 URL: {url}");
    } else {
        assert!(url.starts_with(&app.app.base), "the API's own URL: {url}");
    }
    // Known at once, as PENDING — never UPLOADED while the bytes are still coming.
    let p = progress(app, id, &staff).await?;
    assert_eq!(p["status"], "PENDING", "{p}");
    assert_eq!(p["progress"], 0);
    let (_, list) = post_list(app, &staff, "PENDING").await?;
    assert!(
        list.iter().any(|v| v["id"] == id),
        "hydration lists the PENDING video: {list:?}"
    );

    let data = bytes(3 * MIB + 17, 1);
    let (status, headers) = put(app, &url, Some("video/mp4"), data.clone()).await?;
    assert_eq!(status, 200, "PUT {url}");
    assert!(etag(&headers).starts_with('"'), "ETag: {headers:?}");
    assert_eq!(progress(app, id, &staff).await?["status"], "PENDING");
    assert_eq!(
        jobs_of(app, t, id).await?,
        0,
        "nothing queued before complete"
    );

    // Several completes at once (a double click, a retry racing the first call): every one is
    // answered UPLOADED, exactly one of them queued the video.
    let path = format!("/api/v1/media/videos/{id}/upload/complete/");
    let answers =
        futures::future::join_all((0..4).map(|_| post(app, &path, &staff, json!({"ok": true}))))
            .await;
    let mut queued = 0;
    for answer in answers {
        let (status, done) = answer?;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["video"]["status"], "UPLOADED", "{done}");
        queued += usize::from(done["queued"] == true);
    }
    assert_eq!(queued, 1, "exactly one complete queued the video");
    assert_eq!(progress(app, id, &staff).await?["status"], "UPLOADED");
    assert_eq!(
        stored(app, body["file_key"].as_str().expect("key")).await?,
        data
    );
    // Twice (the front end retries on a timeout): answered, never queued twice.
    let (status, again) = post(app, &path, &staff, json!({"ok": true})).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["queued"], false);
    assert_eq!(again["video"]["status"], "UPLOADED");
    assert_eq!(jobs_of(app, t, id).await?, 1);
    let (_, list) = post_list(app, &staff, "UPLOADED").await?;
    assert!(list.iter().any(|v| v["id"] == id));
    let (_, pending) = post_list(app, &staff, "PENDING").await?;
    assert!(!pending.iter().any(|v| v["id"] == id));
    // The URL is spent: the video left PENDING (file storage refuses; S3 cannot know, and the
    // queued job already has its source).
    if !app.state.storage.presigns() {
        let (status, _) = put(app, &url, Some("video/mp4"), bytes(10, 2)).await?;
        assert_eq!(status, 409);
    }
    Ok(())
}
on_both_storages!(single_upload, limits());

/// `GET /api/v1/media/videos/?status=…` → the `results`.
async fn post_list(app: &DbApp, token: &str, status: &str) -> anyhow::Result<(u16, Vec<Value>)> {
    let res = app
        .app
        .get(
            &format!("/api/v1/media/videos/?status={status}"),
            Some(token),
        )
        .await;
    let code = res.status().as_u16();
    let body: Value = res.json().await?;
    assert_eq!(code, 200, "{body}");
    Ok((
        code,
        body["results"].as_array().cloned().unwrap_or_default(),
    ))
}

/// Nothing (or zero bytes) uploaded: 409 `source_not_found_or_empty`, FAILED with that reason,
/// nothing queued — and the same answer again.
async fn complete_without_bytes(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "owner");
    for send_empty in [false, true] {
        let body = init(app, &staff, session).await?;
        let id = body["video"]["id"].as_i64().expect("id");
        if send_empty {
            let url = body["upload_url"].as_str().expect("url");
            let (status, _) = put(app, url, Some("video/mp4"), Vec::new()).await?;
            assert_eq!(status, 200, "an empty PUT is stored (S3 takes it too)");
        }
        let path = format!("/api/v1/media/videos/{id}/upload/complete/");
        for _ in 0..2 {
            let (status, err) = post(app, &path, &staff, json!({"ok": true})).await?;
            assert_eq!(status, 409, "{err}");
            assert_eq!(err["error"]["code"], "source_not_found_or_empty", "{err}");
        }
        let p = progress(app, id, &staff).await?;
        assert_eq!(p["status"], "FAILED", "{p}");
        assert_eq!(p["error_reason"], "source_not_found_or_empty", "{p}");
        assert_eq!(jobs_of(app, t, id).await?, 0);
    }
    Ok(())
}
on_both_storages!(complete_without_bytes, limits());

/// An expired URL answers 403; refresh-url gives a new one for the same object.
async fn refresh_after_expiry(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "owner");
    let body = init(app, &staff, session).await?;
    let id = body["video"]["id"].as_i64().expect("id");
    let old = body["upload_url"].as_str().expect("url").to_owned();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (status, _) = put(app, &old, Some("video/mp4"), bytes(1000, 3)).await?;
    assert_eq!(status, 403, "an expired upload URL");
    let (status, fresh) = post(
        app,
        &format!("/api/v1/media/videos/{id}/upload/refresh-url/"),
        &staff,
        json!({"content_type": "video/mp4"}),
    )
    .await?;
    assert_eq!(status, 200, "{fresh}");
    let url = fresh["upload_url"].as_str().expect("url");
    assert_ne!(url, old);
    let (status, _) = put(app, url, Some("video/mp4"), bytes(1000, 3)).await?;
    assert_eq!(status, 200);
    // Signed for its content type: another one is refused, as S3 refuses it.
    let (status, _) = put(app, url, Some("text/html"), bytes(10, 3)).await?;
    assert_eq!(status, 403, "a Content-Type other than the signed one");
    let (status, done) = post(
        app,
        &format!("/api/v1/media/videos/{id}/upload/complete/"),
        &staff,
        json!({"ok": true}),
    )
    .await?;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        stored(app, body["file_key"].as_str().expect("key")).await?,
        bytes(1000, 3)
    );
    Ok(())
}
on_both_storages!(
    refresh_after_expiry,
    Limits {
        upload_url_ttl: Duration::from_secs(5),
        ..limits()
    }
);

async fn multipart_init(app: &DbApp, token: &str, id: i64) -> anyhow::Result<String> {
    let (status, mp) = post(
        app,
        &format!("/api/v1/media/videos/{id}/upload/multipart/init/"),
        token,
        json!({"content_type": "video/mp4"}),
    )
    .await?;
    assert_eq!(status, 200, "{mp}");
    assert_eq!(mp["video_id"], id);
    Ok(mp["upload_id"].as_str().expect("upload_id").to_owned())
}

async fn presign(
    app: &DbApp,
    token: &str,
    id: i64,
    upload_id: &str,
    numbers: &[u32],
) -> anyhow::Result<(u16, Value)> {
    post(
        app,
        &format!("/api/v1/media/videos/{id}/upload/multipart/presign/"),
        token,
        json!({"upload_id": upload_id, "part_numbers": numbers}),
    )
    .await
}

/// Parts PUT out of order (no Content-Type, ETag read from the answer), completed with the list
/// in completion order: assembled in part order, UPLOADED and queued by the complete itself.
async fn multipart_out_of_order(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let body = init(app, &staff, session).await?;
    let id = body["video"]["id"].as_i64().expect("id");
    let upload_id = multipart_init(app, &staff, id).await?;
    let (status, signed) = presign(app, &staff, id, &upload_id, &[1, 2, 3]).await?;
    assert_eq!(status, 200, "{signed}");
    let parts = [bytes(5 * MIB, 10), bytes(5 * MIB, 20), bytes(123_457, 30)];
    let mut done = Vec::new();
    for n in [3usize, 1, 2] {
        let url = signed["urls"][n.to_string()].as_str().expect("part url");
        let (status, headers) = put(app, url, None, parts[n - 1].clone()).await?;
        assert_eq!(status, 200, "part {n}");
        let tag = etag(&headers);
        assert!(!tag.is_empty(), "part {n} answers an ETag");
        done.push(json!({"ETag": tag, "PartNumber": n}));
    }
    assert_eq!(progress(app, id, &staff).await?["status"], "PENDING");
    let path = format!("/api/v1/media/videos/{id}/upload/multipart/complete/");
    let (status, completed) = post(
        app,
        &path,
        &staff,
        json!({"upload_id": upload_id, "parts": done}),
    )
    .await?;
    assert_eq!(status, 200, "{completed}");
    assert_eq!(completed["video"]["status"], "UPLOADED");
    assert_eq!(completed["queued"], true);
    assert_eq!(progress(app, id, &staff).await?["status"], "UPLOADED");
    let whole: Vec<u8> = parts.concat();
    assert_eq!(
        stored(app, body["file_key"].as_str().expect("key")).await?,
        whole
    );
    // A retried complete (the front end's 120 s timeout): answered, not queued again.
    let (status, again) = post(
        app,
        &path,
        &staff,
        json!({"upload_id": upload_id, "parts": done}),
    )
    .await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["queued"], false);
    assert_eq!(jobs_of(app, t, id).await?, 1);
    assert!(
        app.state.storage.list_multipart_uploads().await?.is_empty(),
        "no upload left open"
    );
    Ok(())
}
on_both_storages!(multipart_out_of_order, limits());

/// Abort drops the upload (idempotent); its id is refused afterwards; the video stays PENDING
/// and a new multipart upload can start. A bad part list leaves the upload open.
async fn multipart_abort(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let body = init(app, &staff, session).await?;
    let id = body["video"]["id"].as_i64().expect("id");
    let upload_id = multipart_init(app, &staff, id).await?;
    let (_, signed) = presign(app, &staff, id, &upload_id, &[1, 2]).await?;
    let url = signed["urls"]["1"].as_str().expect("url");
    let (status, headers) = put(app, url, None, bytes(5 * MIB, 1)).await?;
    assert_eq!(status, 200);
    // Part 2 was never sent, part 1's ETag is wrong: 400, the upload stays open.
    let path = format!("/api/v1/media/videos/{id}/upload/multipart/complete/");
    let wrong = json!({"upload_id": upload_id, "parts": [
        {"ETag": "\"0123456789abcdef0123456789abcdef\"", "PartNumber": 1}, {"ETag": etag(&headers), "PartNumber": 2}]});
    let (status, err) = post(app, &path, &staff, wrong).await?;
    assert_eq!(status, 400, "{err}");
    assert_eq!(progress(app, id, &staff).await?["status"], "PENDING");
    assert_eq!(app.state.storage.list_multipart_uploads().await?.len(), 1);

    let abort = format!("/api/v1/media/videos/{id}/upload/multipart/abort/");
    let (status, aborted) = post(app, &abort, &staff, json!({"upload_id": upload_id})).await?;
    assert_eq!(status, 200, "{aborted}");
    assert_eq!(aborted["aborted"], true);
    assert!(app.state.storage.list_multipart_uploads().await?.is_empty());
    let (status, again) = post(app, &abort, &staff, json!({"upload_id": upload_id})).await?;
    assert_eq!(status, 200, "idempotent: {again}");
    assert_eq!(again["aborted"], false);
    let (status, _) = presign(app, &staff, id, &upload_id, &[1]).await?;
    assert_eq!(status, 400, "an aborted upload id");
    assert_eq!(progress(app, id, &staff).await?["status"], "PENDING");
    // A new attempt works.
    let second = multipart_init(app, &staff, id).await?;
    assert_ne!(second, upload_id);
    let (_, signed) = presign(app, &staff, id, &second, &[1]).await?;
    let url = signed["urls"]["1"].as_str().expect("url");
    let (_, headers) = put(app, url, None, bytes(1000, 5)).await?;
    let (status, done) = post(
        app,
        &path,
        &staff,
        json!({"upload_id": second, "parts": [{"ETag": etag(&headers), "PartNumber": 1}]}),
    )
    .await?;
    assert_eq!(status, 200, "{done}");
    assert_eq!(jobs_of(app, t, id).await?, 1);
    Ok(())
}
on_both_storages!(multipart_abort, limits());

/// Bad input is a clear 4xx and changes nothing.
async fn bad_input(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let (other, _, other_session) = app.tenant("other").await?;
    let staff = app.app.token(t, "teacher");
    let student = app.app.token(t, "student");
    let init_path = "/api/v1/media/videos/upload/init/";
    let ok = json!({"session": session, "filename": "a.mp4", "content_type": "video/mp4"});
    let res = app
        .app
        .client
        .post(format!("{}{init_path}", app.app.base))
        .json(&ok)
        .send()
        .await?;
    assert_eq!(res.status(), 401);
    assert_eq!(post(app, init_path, &student, ok.clone()).await?.0, 403);
    for bad in [
        json!({"session": -1, "filename": "a.mp4", "content_type": "video/mp4"}),
        json!({"session": "x", "filename": "a.mp4", "content_type": "video/mp4"}),
        json!({"session": session, "filename": "a.mp4", "content_type": "not a type"}),
        json!({"session": session, "filename": "a.mp4", "content_type": "video/mp4\r\nx: y"}),
        json!({"session": session, "title": "x".repeat(201), "content_type": "video/mp4"}),
    ] {
        let (status, err) = post(app, init_path, &staff, bad.clone()).await?;
        assert_eq!(status, 400, "{bad} → {err}");
    }
    let (status, _) = post(
        app,
        init_path,
        &staff,
        json!({"session": other_session, "filename": "a.mp4", "content_type": "video/mp4"}),
    )
    .await?;
    assert_eq!(status, 404, "another tenant's session");
    let (_, list) = post_list(app, &staff, "PENDING").await?;
    assert!(list.is_empty(), "nothing was created: {list:?}");

    let body = init(app, &staff, session).await?;
    let id = body["video"]["id"].as_i64().expect("id");
    // Another tenant cannot see or drive it.
    let foreign = app.app.token(other, "owner");
    let path = format!("/api/v1/media/videos/{id}/upload/complete/");
    assert_eq!(post(app, &path, &foreign, json!({})).await?.0, 404);
    let upload_id = multipart_init(app, &staff, id).await?;
    for numbers in [
        vec![],
        vec![0],
        vec![10_001],
        (1..=51).collect::<Vec<u32>>(),
    ] {
        let (status, err) = presign(app, &staff, id, &upload_id, &numbers).await?;
        assert_eq!(status, 400, "{numbers:?} → {err}");
    }
    let (status, _) = presign(app, &staff, id, "not-the-upload", &[1]).await?;
    assert_eq!(status, 400);
    let (status, _) = post(
        app,
        &format!("/api/v1/media/videos/{id}/upload/multipart/complete/"),
        &staff,
        json!({"upload_id": upload_id, "parts": []}),
    )
    .await?;
    assert_eq!(status, 400);
    if !app.state.storage.presigns() {
        // The API's own URL: an altered signature or video id is 403, as S3 answers.
        let url = body["upload_url"].as_str().expect("url");
        let altered = format!("{}x", url);
        assert_eq!(put(app, &altered, Some("video/mp4"), vec![1]).await?.0, 403);
        let other_video = url.replacen(&format!("/{id}/"), &format!("/{}/", id + 1), 1);
        assert_eq!(
            put(app, &other_video, Some("video/mp4"), vec![1]).await?.0,
            403
        );
        assert_eq!(
            put(app, url, None, vec![1]).await?.0,
            403,
            "no Content-Type"
        );
        // Over the size limit: refused, nothing stored.
        // The server answers 413 from Content-Length and closes the connection without reading
        // the body, so the client may see the connection closed while it is still sending (the
        // 413 then never reaches it): either outcome is a refusal; nothing may be stored.
        let huge = bytes(64 * MIB + 1, 0);
        match put(app, url, Some("video/mp4"), huge).await {
            Ok((status, _)) => assert_eq!(status, 413),
            Err(e) => {
                let e = e.downcast::<reqwest::Error>()?;
                assert!(
                    e.is_request() || e.is_body(),
                    "not a refusal mid-body: {e:?}"
                );
            }
        }
        assert!(
            !app.state
                .storage
                .exists(&StorageKey::parse(body["file_key"].as_str().expect("key"))?)
                .await?
        );
    }
    assert_eq!(progress(app, id, &staff).await?["status"], "PENDING");
    Ok(())
}
on_both_storages!(bad_input, limits());

/// Uploads never completed are removed after the retention: the multipart upload, the object
/// and the video (gone from the list, UNKNOWN to the progress URL); completed ones stay.
async fn abandoned_uploads_are_cleaned_up(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "owner");
    // A single upload whose bytes arrived but which was never completed.
    let single = init(app, &staff, session).await?;
    let single_id = single["video"]["id"].as_i64().expect("id");
    let url = single["upload_url"].as_str().expect("url");
    assert_eq!(
        put(app, url, Some("video/mp4"), bytes(1000, 1)).await?.0,
        200
    );
    // A multipart upload with one part.
    let multi = init(app, &staff, session).await?;
    let multi_id = multi["video"]["id"].as_i64().expect("id");
    let upload_id = multipart_init(app, &staff, multi_id).await?;
    let (_, signed) = presign(app, &staff, multi_id, &upload_id, &[1]).await?;
    let part = signed["urls"]["1"].as_str().expect("url");
    assert_eq!(put(app, part, None, bytes(5 * MIB, 2)).await?.0, 200);
    // A completed one.
    let kept = init(app, &staff, session).await?;
    let kept_id = kept["video"]["id"].as_i64().expect("id");
    let url = kept["upload_url"].as_str().expect("url");
    assert_eq!(
        put(app, url, Some("video/mp4"), bytes(1000, 3)).await?.0,
        200
    );
    let path = format!("/api/v1/media/videos/{kept_id}/upload/complete/");
    assert_eq!(post(app, &path, &staff, json!({})).await?.0, 200);

    // Within the retention nothing goes.
    let report = sweep_abandoned(&app.state, Duration::from_secs(3600)).await?;
    assert_eq!(report.videos, 0);
    assert_eq!(post_list(app, &staff, "PENDING").await?.1.len(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweep_abandoned(&app.state, Duration::from_secs(1)).await?;
    assert_eq!(report.videos, 2, "{report:?}");
    assert!(post_list(app, &staff, "PENDING").await?.1.is_empty());
    let storage = &app.state.storage;
    assert!(storage.list_multipart_uploads().await?.is_empty());
    for key in [&single["file_key"], &multi["file_key"]] {
        let key = StorageKey::parse(key.as_str().expect("key"))?;
        assert!(!storage.exists(&key).await?, "{key} removed");
    }
    let kept_key = StorageKey::parse(kept["file_key"].as_str().expect("key"))?;
    assert!(storage.exists(&kept_key).await?, "a completed upload stays");
    // The read model learns it through the outbox (the relay of a real process publishes it).
    app.state.relay.drain().await?;
    for id in [single_id, multi_id] {
        let p = progress(app, id, &staff).await?;
        assert_eq!(p["status"], "UNKNOWN", "{p}");
    }
    assert_eq!(progress(app, kept_id, &staff).await?["status"], "UPLOADED");
    Ok(())
}
on_both_storages!(abandoned_uploads_are_cleaned_up, limits());

/// Parts each within the limit that add up to more: the assembled object is refused at
/// complete (413 `source_too_large`), deleted, and the video FAILED with that reason.
async fn too_large_when_assembled(app: &DbApp) -> anyhow::Result<()> {
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "owner");
    let body = init(app, &staff, session).await?;
    let id = body["video"]["id"].as_i64().expect("id");
    let upload_id = multipart_init(app, &staff, id).await?;
    let (_, signed) = presign(app, &staff, id, &upload_id, &[1, 2]).await?;
    let mut parts = Vec::new();
    for (n, size) in [(1u32, 5 * MIB), (2, 2 * MIB)] {
        let url = signed["urls"][n.to_string()].as_str().expect("url");
        let (status, headers) = put(app, url, None, bytes(size, n as u8)).await?;
        assert_eq!(status, 200, "part {n} is within the limit");
        parts.push(json!({"ETag": etag(&headers), "PartNumber": n}));
    }
    let path = format!("/api/v1/media/videos/{id}/upload/multipart/complete/");
    let (status, err) = post(
        app,
        &path,
        &staff,
        json!({"upload_id": upload_id, "parts": parts}),
    )
    .await?;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "source_too_large", "{err}");
    let p = progress(app, id, &staff).await?;
    assert_eq!(p["status"], "FAILED", "{p}");
    assert_eq!(p["error_reason"], "source_too_large", "{p}");
    let key = StorageKey::parse(body["file_key"].as_str().expect("key"))?;
    assert!(
        !app.state.storage.exists(&key).await?,
        "the object is deleted"
    );
    assert_eq!(jobs_of(app, t, id).await?, 0);
    Ok(())
}
on_both_storages!(
    too_large_when_assembled,
    Limits {
        video_bytes: 6 * MIB as u64,
        ..limits()
    }
);
