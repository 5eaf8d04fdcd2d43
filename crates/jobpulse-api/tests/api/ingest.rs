//! The worker ingest routes: worker tokens only, fenced, validated.

use jobpulse_api::auth::TokenSpec;
use serde_json::{Value, json};

use crate::helpers::*;

fn worker_token(app: &TestApp, tenant_id: i64) -> String {
    app.verifier
        .mint(&TokenSpec {
            tenant: tenant(tenant_id),
            tenant_code: None,
            user_id: Some("python-worker".into()),
            role: None,
            ttl_secs: 600,
            worker: true,
        })
        .expect("mints")
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ingest_applies_fenced_writes_and_reports_stale_ones() {
    let app = TestApp::spawn().await;
    let w = worker_token(&app, 1);
    let tick = |seq: u64, pct: u8| {
        json!({"fence": {"generation": 1, "attempt": 1, "seq": seq}, "status": "PROCESSING",
               "percent": pct, "remaining_seconds": 30,
               "step": {"index": 4, "total": 7, "name": "transcoding", "display": "인코딩", "percent": 50}})
    };
    let (s, a) = post(&app, "/internal/v1/videos/5/progress", &w, tick(2, 40)).await;
    assert_eq!((s, a["outcome"].as_str()), (200, Some("applied")), "{a}");
    // The browser sees it.
    let v: Value = app
        .get(
            "/api/v1/media/videos/5/progress/",
            Some(&app.token(1, "teacher")),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (v["status"].as_str(), v["progress"].as_u64()),
        (Some("PROCESSING"), Some(40))
    );
    // READY, then a late tick: 409 with what the store holds.
    let (s, _) = post(
        &app,
        "/internal/v1/videos/5/transition",
        &w,
        json!({"fence": {"generation": 1, "attempt": 1, "seq": 9}, "status": "READY",
               "hls_path": "tenants/1/video/hls/5/master.m3u8", "duration": 12}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, a) = post(&app, "/internal/v1/videos/5/progress", &w, tick(10, 50)).await;
    assert_eq!(s, 409, "{a}");
    assert_eq!(a["outcome"], "stale");
    assert_eq!(
        a["current"],
        json!({"generation": 1, "attempt": 1, "seq": 9})
    );
    assert!(a["rev"].is_u64());
    // Heartbeats: for a record the store does not have → 422.
    let (s, a) = post(
        &app,
        "/internal/v1/jobs/nope/heartbeat",
        &w,
        json!({"fence": {"generation": 1, "attempt": 1}}),
    )
    .await;
    assert_eq!((s, a["outcome"].as_str()), (422, Some("rejected")));
    // A job with its type and result.
    let (s, _) = post(
        &app,
        "/internal/v1/jobs/ext-1/transition",
        &w,
        json!({"fence": {"generation": 1, "attempt": 1, "seq": 3}, "status": "DONE",
               "job_type": "ppt_generation",
               "result": {"download_url": "/x.pptx", "filename": "x.pptx", "slide_count": 3, "size_bytes": 10}}),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = app
        .get(
            "/api/v1/jobs/ext-1/progress/",
            Some(&app.token(1, "teacher")),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["result"]["slide_count"], 3);
}

#[tokio::test]
async fn ingest_refuses_browser_tokens_and_bad_input() {
    let app = TestApp::spawn().await;
    let w = worker_token(&app, 1);
    let ok = json!({"fence": {"generation": 1, "attempt": 1, "seq": 2}, "status": "PROCESSING", "percent": 5});
    let (s, _) = post(
        &app,
        "/internal/v1/videos/5/progress",
        &app.token(1, "owner"),
        ok.clone(),
    )
    .await;
    assert_eq!(s, 403, "a browser token on a write route");
    let res = app
        .client
        .post(format!("{}/internal/v1/videos/5/progress", app.base))
        .json(&ok)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 401);
    let cases = [
        ("/internal/v1/videos/5/progress", json!({"fence": 1}), 400),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 1, "attempt": 1}, "status": "PROCESSING", "percent": 101}),
            422,
        ),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 1, "attempt": 1}, "status": "PROCESSING", "percent": 300}),
            400,
        ),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 0, "attempt": 1, "seq": 1}, "status": "PROCESSING"}),
            422,
        ),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "RUNNING"}),
            422,
        ),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "READY"}),
            422,
        ),
        (
            "/internal/v1/videos/5/transition",
            json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "PROCESSING", "percent": 100}),
            422,
        ),
        (
            "/internal/v1/jobs/j1/transition",
            json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "DONE"}),
            422,
        ),
        (
            "/internal/v1/videos/5/progress",
            json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "PROCESSING", "tenant_id": 2}),
            400,
        ),
        ("/internal/v1/videos/abc/progress", ok.clone(), 400),
        ("/internal/v1/jobs/a:b/progress", ok.clone(), 400),
        ("/internal/v1/files/5/progress", ok.clone(), 404),
        ("/internal/v1/videos/5/explode", ok.clone(), 404),
    ];
    for (path, body, want) in cases {
        let (s, a) = post(&app, path, &w, body.clone()).await;
        assert_eq!(s, want, "{path} {body} -> {a}");
    }
    let big = json!({"fence": {"generation": 1, "attempt": 1, "seq": 1}, "status": "DONE",
                     "job_type": "x", "result": {"blob": "x".repeat(100_000)}});
    let (s, _) = post(&app, "/internal/v1/jobs/j1/transition", &w, big).await;
    assert_eq!(s, 413);
    // Nothing of the refused writes reached the read model.
    let v: Value = app
        .get(
            "/api/v1/media/videos/5/progress/",
            Some(&app.token(1, "teacher")),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "UNKNOWN");
}
