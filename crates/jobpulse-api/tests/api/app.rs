//! The database-backed routes (media, jobs, lectures, signed files) on both backends.

use std::time::Duration;

use jobpulse_db::{Caps, Queue};
use jobpulse_media::testing::{ClipSpec, generate_clip};
use jobpulse_testkit::{Backend, both};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::*;

async fn clip(dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let tc = jobpulse_media::Toolchain::detect()?;
    let path = dir.join("clip.mp4");
    generate_clip(&tc, &path, &ClipSpec::new(2.0, 320, 240).with_audio()).await?;
    Ok(std::fs::read(path)?)
}

fn video_form(bytes: Vec<u8>, name: &str) -> Form {
    Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()))
}

async fn upload(app: &DbApp, token: &str, form: Form) -> anyhow::Result<(u16, Value)> {
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

async fn json(app: &DbApp, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let res = app.app.get(path, Some(token)).await;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn upload_then_the_first_poll_is_uploaded(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, session) = app.tenant("acme").await?;
    let (other, _, _) = app.tenant("other").await?;
    let staff = app.app.token(t, "teacher");
    let bytes = clip(app.dir.path()).await?;
    let form = video_form(bytes, "강의 1.mp4").text("session_id", session.to_string());
    let (status, body) = upload(&app, &staff, form).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "UPLOADED");
    assert_eq!(body["title"], "강의 1");
    assert_eq!(body["session_id"], session);
    let id = body["id"].as_i64().expect("id");
    // Published before the answer: the very first poll knows it.
    let (_, poll) = json(
        &app,
        &format!("/api/v1/media/videos/{id}/progress/"),
        &staff,
    )
    .await?;
    assert_eq!(poll["status"], "UPLOADED", "{poll}");
    assert_eq!(poll["progress"], 0);
    let (_, list) = json(&app, "/api/v1/media/videos/?status=UPLOADED", &staff).await?;
    assert_eq!(list["results"][0]["id"], id);
    let (s, _) = json(&app, "/api/v1/media/videos/?status=NOPE", &staff).await?;
    assert_eq!(s, 400);
    let (s, one) = json(&app, &format!("/api/v1/media/videos/{id}/"), &staff).await?;
    assert_eq!((s, one["id"].as_i64()), (200, Some(id)));
    // Another tenant sees nothing of it.
    let theirs = app.app.token(other, "owner");
    let (s, _) = json(&app, &format!("/api/v1/media/videos/{id}/"), &theirs).await?;
    assert_eq!(s, 404);
    let (_, poll) = json(
        &app,
        &format!("/api/v1/media/videos/{id}/progress/"),
        &theirs,
    )
    .await?;
    assert_eq!(poll["status"], "UNKNOWN");
    let (_, list) = json(&app, "/api/v1/media/videos/", &theirs).await?;
    assert_eq!(list["results"].as_array().map(Vec::len), Some(0));
    Ok(())
}
both!(upload_then_the_first_poll_is_uploaded);

async fn bad_uploads_are_refused_and_change_nothing(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn_with(
        b,
        jobpulse_api::state::Limits {
            video_bytes: 200_000,
            ..Default::default()
        },
    )
    .await?;
    let (t, _, _) = app.tenant("acme").await?;
    let (other, _, other_session) = app.tenant("other").await?;
    let staff = app.app.token(t, "staff");
    let cases: Vec<(Form, u16, &str)> = vec![
        (Form::new().text("title", "x"), 400, "no file"),
        (
            video_form(b"hello, I am not a video".to_vec(), "notes.mp4"),
            422,
            "not a video",
        ),
        (video_form(vec![0u8; 300_000], "big.mp4"), 413, "too large"),
        (video_form(Vec::new(), "empty.mp4"), 422, "empty"),
        (
            video_form(b"x".to_vec(), "a.mp4").text("tenant_id", "2"),
            400,
            "unknown field",
        ),
        (
            video_form(b"x".to_vec(), "a.mp4").text("session_id", "abc"),
            400,
            "bad session",
        ),
    ];
    for (form, want, what) in cases {
        let (status, body) = upload(&app, &staff, form).await?;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
    // Another tenant's session is not found.
    let bytes = clip(app.dir.path()).await?;
    let form = video_form(bytes.clone(), "a.mp4").text("session_id", other_session.to_string());
    assert_eq!(upload(&app, &staff, form).await?.0, 404);
    // Students cannot upload.
    let student = app.app.token(t, "student");
    assert_eq!(
        upload(&app, &student, video_form(bytes, "a.mp4")).await?.0,
        403
    );
    let (_, list) = json(&app, "/api/v1/media/videos/", &staff).await?;
    assert_eq!(
        list["results"].as_array().map(Vec::len),
        Some(0),
        "nothing created"
    );
    let _ = other;
    // Nothing left in the spool either.
    let spooled = std::fs::read_dir(app.dir.path().join("spool"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spooled, 0);
    Ok(())
}
both!(bad_uploads_are_refused_and_change_nothing);

async fn retry_starts_a_new_generation_and_delete_hides(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, _) = app.tenant("acme").await?;
    let staff = app.app.token(t, "teacher");
    let bytes = clip(app.dir.path()).await?;
    let (_, body) = upload(&app, &staff, video_form(bytes, "a.mp4")).await?;
    let id = body["id"].as_i64().expect("id");
    let url = format!("{}/api/v1/media/videos/{id}/retry/", app.app.base);
    // Not failed yet: 409.
    let res = app.app.client.post(&url).bearer_auth(&staff).send().await?;
    assert_eq!(res.status(), 409);
    // Fail it for good through the queue, as a worker would.
    let claim = app
        .tdb
        .db
        .claim(
            Queue::Video,
            "test-worker",
            Duration::from_secs(30),
            Caps::default(),
        )
        .await?
        .expect("a queued job");
    let failed = app.tdb.db.fail(&claim, "ffmpeg exploded", false).await?;
    app.state.relay.publish_now(&failed.outbox).await?;
    let poll_path = format!("/api/v1/media/videos/{id}/progress/");
    let (_, poll) = json(&app, &poll_path, &staff).await?;
    assert_eq!(poll["status"], "FAILED", "{poll}");
    let res = app.app.client.post(&url).bearer_auth(&staff).send().await?;
    assert_eq!(res.status(), 202);
    let rec: Value = res.json().await?;
    assert_eq!(
        (rec["status"].as_str(), rec["generation"].as_u64()),
        (Some("UPLOADED"), Some(2))
    );
    // At once in the read model — not the stale FAILED of the old system.
    let (_, poll) = json(&app, &poll_path, &staff).await?;
    assert_eq!(poll["status"], "UPLOADED", "{poll}");
    // Delete: gone from the API and the read model.
    let res = app
        .app
        .client
        .delete(format!("{}/api/v1/media/videos/{id}/", app.app.base))
        .bearer_auth(&staff)
        .send()
        .await?;
    assert_eq!(res.status(), 204);
    let (_, poll) = json(&app, &poll_path, &staff).await?;
    assert_eq!(poll["status"], "UNKNOWN");
    assert_eq!(
        json(&app, &format!("/api/v1/media/videos/{id}/"), &staff)
            .await?
            .0,
        404
    );
    Ok(())
}
both!(retry_starts_a_new_generation_and_delete_hides);

async fn submit(
    app: &DbApp,
    token: &str,
    form: Form,
    idem: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(token)
        .multipart(form);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await?;
    let s = res.status().as_u16();
    Ok((s, res.json().await.unwrap_or(Value::Null)))
}

fn excel_form(lecture: Option<i64>) -> Form {
    let mut f = Form::new().text("job_type", "excel_parsing").part(
        "file",
        Part::bytes(b"PK fake xlsx bytes".to_vec()).file_name("students.xlsx"),
    );
    if let Some(l) = lecture {
        f = f.text("lecture_id", l.to_string());
    }
    f
}

async fn jobs_submit_list_cancel(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, lecture, _) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    let (s, body) = submit(&app, &staff, excel_form(Some(lecture)), Some("k-1")).await?;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["status"], "PENDING");
    let job = body["job_id"].as_str().expect("job id").to_owned();
    let (_, poll) = json(&app, &format!("/api/v1/jobs/{job}/progress/"), &staff).await?;
    assert_eq!(poll["status"], "PENDING", "{poll}");
    // The same Idempotency-Key: the same job, 200.
    let (s, again) = submit(&app, &staff, excel_form(Some(lecture)), Some("k-1")).await?;
    assert_eq!((s, again["job_id"].as_str()), (200, Some(job.as_str())));
    // Unknown type: rejected at submit, visibly.
    let (s, rej) = submit(
        &app,
        &staff,
        Form::new().text("job_type", "time_travel"),
        None,
    )
    .await?;
    assert_eq!(s, 422, "{rej}");
    assert_eq!(rej["status"], "REJECTED_BAD_INPUT");
    assert!(
        rej["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("time_travel"))
    );
    let rid = rej["job_id"].as_str().expect("id");
    let (_, poll) = json(&app, &format!("/api/v1/jobs/{rid}/progress/"), &staff).await?;
    assert_eq!(poll["status"], "REJECTED_BAD_INPUT");
    assert!(poll["error_message"].is_string());
    // A file-taking type without a file is rejected the same way.
    let (s, _) = submit(
        &app,
        &staff,
        Form::new()
            .text("job_type", "excel_parsing")
            .text("lecture_id", lecture.to_string()),
        None,
    )
    .await?;
    assert_eq!(s, 422);
    // Bad requests change nothing.
    assert_eq!(submit(&app, &staff, excel_form(None), None).await?.0, 400);
    assert_eq!(
        submit(&app, &staff, excel_form(Some(999_999)), None)
            .await?
            .0,
        422
    );
    assert_eq!(
        submit(&app, &staff, Form::new().text("job_type", "Bad Type"), None)
            .await?
            .0,
        400
    );
    // Students may not submit staff-only types, nor see them.
    let student = app.app.token(t, "student");
    assert_eq!(
        submit(&app, &student, excel_form(Some(lecture)), None)
            .await?
            .0,
        403
    );
    assert_eq!(
        json(&app, &format!("/api/v1/jobs/{job}/"), &student)
            .await?
            .0,
        404
    );
    // JSON submit of a type without a file.
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(&student)
        .json(&serde_json::json!({"job_type": "ppt_generation", "payload": {"topic": "x"}}))
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let (_, list) = json(&app, "/api/v1/jobs/", &staff).await?;
    assert!(
        list["results"].as_array().is_some_and(|r| r.len() >= 3),
        "{list}"
    );
    let (_, list) = json(&app, "/api/v1/jobs/", &student).await?;
    assert!(
        list["results"]
            .as_array()
            .is_some_and(|r| r.iter().all(|j| j["job_type"] != "excel_parsing")),
        "{list}"
    );
    // No result yet.
    assert_eq!(
        json(&app, &format!("/api/v1/jobs/{job}/result/"), &staff)
            .await?
            .0,
        404
    );
    // Cancel a pending job: it ends at once.
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/{job}/cancel/", app.app.base))
        .bearer_auth(&staff)
        .send()
        .await?;
    assert_eq!(res.status(), 202);
    let c: Value = res.json().await?;
    assert_eq!(c["outcome"], "ended");
    let (_, poll) = json(&app, &format!("/api/v1/jobs/{job}/progress/"), &staff).await?;
    assert_eq!(poll["status"], "FAILED", "{poll}");
    Ok(())
}
both!(jobs_submit_list_cancel);

async fn signed_media_urls_serve_their_scope_only(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let storage = &app.state.storage;
    let tenant = tenant(3);
    let video = jobpulse_domain::VideoId::new(21)?;
    let prefix = jobpulse_media::keys::hls_prefix(tenant, video);
    let master = jobpulse_media::keys::hls_master_key(tenant, video);
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("m.m3u8");
    std::fs::write(&f, "#EXTM3U\n")?;
    storage.put_file(&master, &f).await?;
    let seg = prefix.join("360p/seg_00000.ts")?;
    storage.put_file(&seg, &f).await?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 60;
    let url = app
        .state
        .signer
        .url(prefix.as_str().trim_end_matches('/'), master.as_str(), exp)
        .expect("in scope");
    let res = app.app.get(&url, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.apple.mpegurl")
    );
    // A relative segment URI resolves under the same signed prefix.
    let seg_url = url.replace("master.m3u8", "360p/seg_00000.ts");
    assert_eq!(app.app.get(&seg_url, None).await.status(), 200);
    // Tampered signature, another video, traversal: the same 403.
    for bad in [
        url.replacen("/media/s/", "/media/s/1", 1),
        url.replace("/21/", "/22/"),
        url.replace("master.m3u8", "../../hls/22/master.m3u8"),
    ] {
        assert_eq!(app.app.get(&bad, None).await.status(), 403, "{bad}");
    }
    let (t, _, _) = app.tenant("acme").await?;
    let (s, lectures) = json(&app, "/api/v1/lectures/", &app.app.token(t, "teacher")).await?;
    assert_eq!(s, 200);
    assert_eq!(
        lectures["results"][0]["sessions"].as_array().map(Vec::len),
        Some(1)
    );
    Ok(())
}
both!(signed_media_urls_serve_their_scope_only);
