//! Hostile input, round 2 (issue 15): what a non-staff user can write, list cursors, submit
//! bounds and the per-user submit rate — against the real routes on both database backends.

use jobpulse_api::auth::TokenSpec;
use jobpulse_api::rate::RateLimit;
use jobpulse_api::state::Limits;
use jobpulse_domain::JobId;
use jobpulse_testkit::{Backend, both};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::*;

/// Every role a token may carry; the first four are staff.
const ROLES: [&str; 7] = [
    "owner", "admin", "teacher", "staff", "student", "parent", "guest",
];

fn is_staff(role: &str) -> bool {
    ROLES[..4].contains(&role)
}

/// A token for `user` with `role` in tenant `t`.
fn token_for(app: &DbApp, t: i64, user: &str, role: &str) -> String {
    app.app
        .verifier
        .mint(&TokenSpec {
            tenant: tenant(t),
            tenant_code: Some(format!("t{t}")),
            user_id: Some(user.into()),
            role: Some(role.into()),
            ttl_secs: 600,
            worker: false,
        })
        .expect("mints")
}

async fn submit_json(app: &DbApp, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    // A client per call: a refused oversized body may leave its connection closed by the
    // server, which must not break the shared client's pool.
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let s = res.status().as_u16();
    Ok((s, res.json().await.unwrap_or(Value::Null)))
}

async fn submit_excel(app: &DbApp, token: &str, lecture: i64) -> anyhow::Result<String> {
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", lecture.to_string())
        .part(
            "file",
            Part::bytes(b"PK fake xlsx bytes".to_vec()).file_name("students.xlsx"),
        );
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "excel submit: {}", res.status());
    let body: Value = res.json().await?;
    Ok(body["job_id"].as_str().unwrap_or_default().to_owned())
}

/// Follows `next` links from `first`, returning every id listed and every `next` seen.
async fn page_through(
    app: &DbApp,
    first: &str,
    token: &str,
    id_field: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut ids, mut cursors) = (Vec::new(), Vec::new());
    let mut url = Some(first.to_owned());
    while let Some(u) = url.take() {
        anyhow::ensure!(cursors.len() < 50, "paging does not end");
        let res = app.app.get(&u, Some(token)).await;
        anyhow::ensure!(res.status() == 200, "{u}: {}", res.status());
        let page: Value = res.json().await?;
        for r in page["results"].as_array().into_iter().flatten() {
            ids.push(match &r[id_field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        if let Some(n) = page["next"].as_str() {
            cursors.push(n.to_owned());
            url = Some(n.to_owned());
        }
    }
    Ok((ids, cursors))
}

/// Finding 12: a page and its cursor are built from what the caller may see, for every list
/// route and every role, and a cursor keeps the page's filters.
async fn list_cursors_hold_only_what_the_role_may_see(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, lecture, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    // Oldest first: a job any role may see, then three staff-only imports above it.
    let (s, body) = submit_json(
        &app,
        &token_for(&app, t, "s1", "student"),
        &json!({"job_type": "ppt_generation", "payload": {"topic": "x"}}),
    )
    .await?;
    assert_eq!(s, 201, "{body}");
    let visible = body["job_id"].as_str().expect("id").to_owned();
    let mut hidden = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        hidden.push(submit_excel(&app, &staff, lecture).await?);
    }
    let mut videos = Vec::new();
    for i in 0..3 {
        let v = app
            .state
            .db
            .create_video(
                tenant(t),
                Some(session),
                &format!("v{i}"),
                "tenants/1/video/raw/1/source.mp4",
            )
            .await?;
        videos.push(v.value.id.to_string());
    }
    videos.reverse();
    for role in ROLES {
        let token = token_for(&app, t, "u1", role);
        let (ids, cursors) = page_through(&app, "/api/v1/jobs/?limit=1", &token, "job_id").await?;
        if is_staff(role) {
            let mut want: Vec<String> = hidden.iter().rev().cloned().collect();
            want.push(visible.clone());
            assert_eq!(ids, want, "{role}: every job, newest first");
        } else {
            assert_eq!(ids, vec![visible.clone()], "{role}: only the visible job");
            for c in &cursors {
                for h in &hidden {
                    assert!(!c.contains(h.as_str()), "{role}: cursor {c} names {h}");
                }
            }
            // A full page links to the next one, from its own last (visible) job.
            assert!(
                cursors.iter().all(|c| c.contains(visible.as_str())),
                "{role}: {cursors:?}"
            );
        }
        let (ids, _) = page_through(&app, "/api/v1/media/videos/?limit=1", &token, "id").await?;
        assert_eq!(ids, videos, "{role}: every video of the tenant");
    }
    // The cursor keeps the filters it was built with.
    let (ids, cursors) = page_through(
        &app,
        "/api/v1/jobs/?job_type=excel_parsing&limit=2",
        &staff,
        "job_id",
    )
    .await?;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        cursors.iter().all(|c| c.contains("job_type=excel_parsing")),
        "{cursors:?}"
    );
    let (ids, _) = page_through(
        &app,
        "/api/v1/jobs/?status=PENDING&limit=1",
        &staff,
        "job_id",
    )
    .await?;
    assert_eq!(ids.len(), 4, "{ids:?}");
    Ok(())
}
both!(list_cursors_hold_only_what_the_role_may_see);

/// Finding 6: a non-staff token cannot write rows with an unknown type, a JSON body is capped
/// like the multipart payload, and a rejected row keeps only an excerpt of what was sent.
async fn a_non_staff_token_writes_nothing_it_may_not(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, _, _) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    let count = || async {
        let (ids, _) = page_through(&app, "/api/v1/jobs/?limit=200", &staff, "job_id").await?;
        anyhow::Ok(ids.len())
    };
    for role in ["student", "parent", "guest"] {
        let token = token_for(&app, t, &format!("{role}-1"), role);
        let (s, body) = submit_json(
            &app,
            &token,
            &json!({"job_type": "time_travel", "payload": {"x": 1}}),
        )
        .await?;
        assert_eq!(s, 422, "{role}: {body}");
        assert!(body["job_id"].is_null(), "{role}: no job recorded: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("time_travel")),
            "{body}"
        );
    }
    assert_eq!(count().await?, 0, "nothing recorded for non-staff");
    // A JSON body beyond the payload cap: 413 before anything is parsed or written, whoever
    // sends it (a 19 MB payload grew the database by 20 MB per request before).
    let big = "x".repeat(19 * 1024 * 1024);
    for token in [&staff, &app.app.token(t, "student")] {
        // The server answers once it has read past the cap and does not read the rest: the
        // client sees the 413 or, when it was still sending, the connection closed.
        match submit_json(
            &app,
            token,
            &json!({"job_type": "time_travel", "payload": {"blob": big}}),
        )
        .await
        {
            Ok((s, body)) => assert_eq!(s, 413, "{body}"),
            Err(e) => assert!(
                e.downcast_ref::<reqwest::Error>()
                    .is_some_and(|e| e.is_request() || e.is_body()),
                "{e:#}"
            ),
        }
    }
    let just_over = "y".repeat(64 * 1024);
    let (s, body) = submit_json(
        &app,
        &staff,
        &json!({"job_type": "ppt_generation", "payload": {"blob": just_over}}),
    )
    .await?;
    assert_eq!(s, 413, "payload over 64 KiB: {body}");
    assert_eq!(count().await?, 0, "refusals wrote nothing");
    // Staff still get a visible REJECTED_BAD_INPUT row, holding an excerpt of a large payload.
    let payload = json!({"notes": "z".repeat(40 * 1024)});
    let (s, body) = submit_json(
        &app,
        &staff,
        &json!({"job_type": "time_travel", "payload": payload}),
    )
    .await?;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["status"], "REJECTED_BAD_INPUT");
    let id = JobId::parse(body["job_id"].as_str().expect("a recorded job"))?;
    let job = app
        .state
        .db
        .get_ai_job(tenant(t), &id)
        .await?
        .expect("the row");
    let stored = job.payload.to_string();
    assert!(stored.len() < 1024, "payload kept as an excerpt: {stored}");
    assert_eq!(job.payload["truncated"], true, "{stored}");
    assert_eq!(
        job.payload["bytes"].as_u64(),
        Some(payload.to_string().len() as u64)
    );
    // A small rejected payload is kept as sent.
    let (s, body) = submit_json(
        &app,
        &staff,
        &json!({"job_type": "time_travel", "payload": {"a": 1}}),
    )
    .await?;
    assert_eq!(s, 422);
    let id = JobId::parse(body["job_id"].as_str().expect("id"))?;
    let job = app.state.db.get_ai_job(tenant(t), &id).await?.expect("row");
    assert_eq!(job.payload, json!({"a": 1}));
    Ok(())
}
both!(a_non_staff_token_writes_nothing_it_may_not);

/// Finding 6: one user's submits are rate limited (429 + Retry-After, nothing written);
/// another user of the same tenant is not affected.
async fn submits_are_rate_limited_per_user(b: Backend) -> anyhow::Result<()> {
    let limits = Limits {
        submits: RateLimit {
            per_minute: 6,
            burst: 3,
        },
        ..Limits::default()
    };
    let app = DbApp::spawn_with(b, limits).await?;
    let (t, _, _) = app.tenant("acme").await?;
    let alice = token_for(&app, t, "alice", "student");
    let body = json!({"job_type": "ppt_generation", "payload": {"topic": "x"}});
    for i in 0..3 {
        let (s, b) = submit_json(&app, &alice, &body).await?;
        assert_eq!(s, 201, "submit {i} within the burst: {b}");
    }
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status(), 429);
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry), "one every 10 s: {retry}");
    let err: Value = res.json().await?;
    assert_eq!(err["error"]["code"], "too_many_requests", "{err}");
    // Bob (same tenant, same role) still submits; the staff list holds exactly 4 jobs.
    let bob = token_for(&app, t, "bob", "student");
    assert_eq!(submit_json(&app, &bob, &body).await?.0, 201);
    let staff = app.app.token(t, "staff");
    let (ids, _) = page_through(&app, "/api/v1/jobs/?limit=200", &staff, "job_id").await?;
    assert_eq!(ids.len(), 4, "the refused submit wrote nothing");
    Ok(())
}
both!(submits_are_rate_limited_per_user);

/// Finding 5: an upload's stored name keeps only an allowed extension — a real video sent as
/// `x.m3u8` (or `.html`) is stored as `source.bin`, on the direct and the old upload route, and
/// a job input as `input.bin` unless it is a document type.
async fn upload_keys_keep_only_allowed_extensions(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, lecture, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    for (name, want) in [
        ("x.m3u8", "/source.bin"),
        ("page.html", "/source.bin"),
        ("Lecture.MOV", "/source.mov"),
    ] {
        let res = app
            .app
            .client
            .post(format!("{}/api/v1/media/videos/upload/init/", app.app.base))
            .bearer_auth(&staff)
            .json(&json!({"session": session, "filename": name, "content_type": "video/mp4"}))
            .send()
            .await?;
        assert_eq!(res.status(), 201, "{name}");
        let body: Value = res.json().await?;
        let key = body["file_key"].as_str().expect("file_key");
        assert!(
            key.starts_with(&format!("tenants/{t}/video/uploads/")) && key.ends_with(want),
            "{name} → {key}"
        );
    }
    // The old multipart upload: a real clip named x.m3u8.
    let tc = jobpulse_media::Toolchain::detect()?;
    let clip = app.dir.path().join("clip.mp4");
    jobpulse_media::testing::generate_clip(
        &tc,
        &clip,
        &jobpulse_media::testing::ClipSpec::new(1.0, 160, 120),
    )
    .await?;
    let form = Form::new().text("session_id", session.to_string()).part(
        "file",
        Part::bytes(std::fs::read(&clip)?).file_name("x.m3u8"),
    );
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/media/videos/", app.app.base))
        .bearer_auth(&staff)
        .multipart(form)
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await?;
    let id = jobpulse_domain::VideoId::new(body["id"].as_i64().expect("id"))?;
    let video = app
        .state
        .db
        .get_video(tenant(t), id)
        .await?
        .expect("the row");
    assert!(
        video.file_key.ends_with("/source.bin"),
        "{}",
        video.file_key
    );
    // A job input: an .html file is kept as input.bin.
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", lecture.to_string())
        .part(
            "file",
            Part::bytes(b"PK fake".to_vec()).file_name("students.html"),
        );
    let res = app
        .app
        .client
        .post(format!("{}/api/v1/jobs/", app.app.base))
        .bearer_auth(&staff)
        .multipart(form)
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await?;
    let job = app
        .state
        .db
        .get_ai_job(
            tenant(t),
            &JobId::parse(body["job_id"].as_str().expect("id"))?,
        )
        .await?
        .expect("row");
    let input = job.input_file_key.expect("an input key");
    assert!(input.ends_with("/input.bin"), "{input}");
    Ok(())
}
both!(upload_keys_keep_only_allowed_extensions);

/// Finding 2: the API's upload probes are a bounded pool — with every slot taken and the line
/// full, an upload is refused at once with 503 + `Retry-After`, and nothing is stored.
async fn upload_probes_are_a_bounded_pool(b: Backend) -> anyhow::Result<()> {
    let limits = Limits {
        probes: jobpulse_api::probe_pool::ProbeLimits {
            running: 1,
            waiting: 0,
            max_wait: std::time::Duration::from_millis(200),
        },
        ..Limits::default()
    };
    let app = DbApp::spawn_with(b, limits).await?;
    let (t, _, session) = app.tenant("acme").await?;
    let staff = app.app.token(t, "staff");
    let tc = jobpulse_media::Toolchain::detect()?;
    let clip = app.dir.path().join("clip.mp4");
    jobpulse_media::testing::generate_clip(
        &tc,
        &clip,
        &jobpulse_media::testing::ClipSpec::new(1.0, 160, 120),
    )
    .await?;
    let bytes = std::fs::read(&clip)?;
    let send = || {
        let form = Form::new()
            .text("session_id", session.to_string())
            .part("file", Part::bytes(bytes.clone()).file_name("a.mp4"));
        app.app
            .client
            .post(format!("{}/api/v1/media/videos/", app.app.base))
            .bearer_auth(&staff)
            .multipart(form)
            .send()
    };
    // The only slot is taken (as by a long probe).
    let held = app.state.probes.slot().await?;
    let res = send().await?;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let err: Value = res.json().await?;
    assert_eq!(err["error"]["code"], "busy", "{err}");
    let (ids, _) = page_through(&app, "/api/v1/media/videos/?limit=200", &staff, "id").await?;
    assert!(ids.is_empty(), "nothing stored: {ids:?}");
    drop(held);
    let res = send().await?;
    assert_eq!(res.status(), 201);
    assert_eq!(app.state.probes.running(), 0, "the slot is free again");
    Ok(())
}
both!(upload_probes_are_a_bounded_pool);

/// Finding 3: what uploads may hold in the spool together is bounded (503 + `Retry-After` past
/// the budget) and the spool's disk keeps a free-space floor (507); a refused upload leaves no
/// file behind and writes nothing.
async fn the_upload_spool_is_bounded(b: Backend) -> anyhow::Result<()> {
    for (limits, want, retry) in [
        (
            jobpulse_api::spool::SpoolLimits {
                max_bytes: 1024 * 1024,
                min_free_bytes: 0,
            },
            503,
            Some("30"),
        ),
        (
            jobpulse_api::spool::SpoolLimits {
                max_bytes: u64::MAX / 2,
                min_free_bytes: u64::MAX / 4,
            },
            507,
            None,
        ),
    ] {
        let app = DbApp::spawn_with(
            b,
            Limits {
                spool: limits,
                ..Limits::default()
            },
        )
        .await?;
        let (t, lecture, _) = app.tenant("acme").await?;
        let staff = app.app.token(t, "staff");
        let form = Form::new()
            .text("job_type", "excel_parsing")
            .text("lecture_id", lecture.to_string())
            .part(
                "file",
                Part::bytes(vec![b'x'; 3 * 1024 * 1024]).file_name("students.xlsx"),
            );
        // A client of its own: the server may close this connection after its early answer,
        // which must not break the shared client's pooled connection for the checks below.
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/jobs/", app.app.base))
            .bearer_auth(&staff)
            .multipart(form)
            .send()
            .await;
        // The server answers when it refuses, without reading the rest of the body: the client
        // sees the answer or, still sending, the connection closed.
        if let Ok(res) = res {
            assert_eq!(res.status().as_u16(), want);
            assert_eq!(
                res.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                retry
            );
        }
        assert_eq!(app.state.spool.used(), 0, "the reservation is released");
        let left: Vec<_> = std::fs::read_dir(&app.state.spool_dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "no partial file left: {left:?}");
        let (ids, _) = page_through(&app, "/api/v1/jobs/?limit=200", &staff, "job_id").await?;
        assert!(ids.is_empty(), "no job written: {ids:?}");
    }
    Ok(())
}
both!(the_upload_spool_is_bounded);
