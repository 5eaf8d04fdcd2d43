//! Every body shape of docs/contract.md §2–3, pinned byte for byte with insta snapshots.

use jobpulse_domain::{JobResult, JobStatus, State, VideoStatus};
use serde_json::json;

use crate::helpers::*;

/// The body with the time-dependent liveness figures of a running task (docs/contract.md §3a)
/// replaced by 0, so the snapshots stay byte-exact.
fn redact_seen(body: String) -> String {
    let mut out = body;
    for field in ["\"worker_seen_at\":", "\"worker_seen_seconds_ago\":"] {
        if let Some(at) = out.find(field) {
            let start = at + field.len();
            let end = start
                + out[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(out.len() - start);
            out.replace_range(start..end, "0");
        }
    }
    out
}

async fn video_body(app: &TestApp, id: i64) -> String {
    let token = app.token(1, "teacher");
    let res = app
        .get(
            &format!("/api/v1/media/videos/{id}/progress/"),
            Some(&token),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"3"[..])
    );
    assert_eq!(
        res.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    redact_seen(res.text().await.expect("body"))
}

async fn job_body(app: &TestApp, id: &str) -> String {
    let token = app.token(1, "staff");
    let res = app
        .get(&format!("/api/v1/jobs/{id}/progress/"), Some(&token))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"3"[..])
    );
    redact_seen(res.text().await.expect("body"))
}

#[tokio::test]
async fn video_shapes() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 0, 1),
        State::video(VideoStatus::Uploaded),
    )
    .await;
    app.put(video_key(1, 2), fence(1, 1, 1), processing(10, None, None))
        .await;
    app.put(
        video_key(1, 3),
        fence(1, 1, 9),
        processing(57, Some((4, 0.4)), Some(84)),
    )
    .await;
    let mut retry = State::video(VideoStatus::RetryWait);
    retry.attempt = Some(1);
    retry.error = Some(text("ffmpeg exited with status 1"));
    app.put(video_key(1, 4), fence(1, 2, 0), retry).await;
    let mut ready = State::video(VideoStatus::Ready);
    ready.hls_path = Some(text("tenants/1/video/hls/5/master.m3u8"));
    ready.duration = Some(42);
    app.put(video_key(1, 5), fence(1, 1, 30), ready).await;
    let mut failed = State::video(VideoStatus::Failed);
    failed.error = Some(text("not a video: no video stream"));
    failed.attempt = Some(5);
    app.put(video_key(1, 6), fence(1, 6, 0), failed).await;

    insta::assert_snapshot!("video_uploaded", video_body(&app, 1).await);
    insta::assert_snapshot!("video_processing_no_step", video_body(&app, 2).await);
    insta::assert_snapshot!("video_processing_step", video_body(&app, 3).await);
    insta::assert_snapshot!("video_retry_wait", video_body(&app, 4).await);
    insta::assert_snapshot!("video_ready", video_body(&app, 5).await);
    insta::assert_snapshot!("video_failed", video_body(&app, 6).await);
    insta::assert_snapshot!("video_unknown", video_body(&app, 999).await);
}

#[tokio::test]
async fn job_shapes() {
    let app = TestApp::spawn().await;
    app.put(
        job_key(1, "pending1"),
        fence(1, 0, 1),
        job_state(JobStatus::Pending, "excel_parsing"),
    )
    .await;
    app.put(
        job_key(1, "running1"),
        fence(1, 1, 5),
        running_import(73, 3, 60),
    )
    .await;
    let mut done = job_state(JobStatus::Done, "excel_parsing");
    done.result = Some(result(json!({
        "created": 2, "duplicates": [], "restored": [],
        "failed": [{"row": 4, "name": "김민수", "error": "invalid parent phone"}]
    })));
    app.put(job_key(1, "done_inline"), fence(1, 1, 9), done)
        .await;
    let mut big = job_state(JobStatus::Done, "ppt_generation");
    big.result = Some(
        JobResult::summary_with_full(json!({"filename": "deck.pptx", "slide_count": 12}))
            .expect("object"),
    );
    app.put(job_key(1, "done_url"), fence(1, 1, 9), big).await;
    let mut done_err = job_state(JobStatus::Done, "excel_parsing");
    done_err.error = Some(text("the sheet had no student rows"));
    app.put(job_key(1, "done_error"), fence(1, 1, 9), done_err)
        .await;
    let mut retrying = job_state(JobStatus::Retrying, "excel_parsing");
    retrying.attempt = Some(1);
    app.put(job_key(1, "retrying1"), fence(1, 2, 0), retrying)
        .await;
    for (id, status) in [
        ("failed1", JobStatus::Failed),
        ("rejected1", JobStatus::RejectedBadInput),
        ("gpu1", JobStatus::FallbackToGpu),
        ("review1", JobStatus::ReviewRequired),
    ] {
        let mut s = job_state(status, "ppt_generation");
        s.error = Some(text(&format!("{} happened", status.as_str())));
        app.put(job_key(1, id), fence(1, 1, 3), s).await;
    }

    insta::assert_snapshot!("job_pending", job_body(&app, "pending1").await);
    insta::assert_snapshot!("job_running", job_body(&app, "running1").await);
    insta::assert_snapshot!("job_done_inline", job_body(&app, "done_inline").await);
    insta::assert_snapshot!("job_done_result_url", job_body(&app, "done_url").await);
    insta::assert_snapshot!("job_done_error", job_body(&app, "done_error").await);
    insta::assert_snapshot!("job_retrying", job_body(&app, "retrying1").await);
    insta::assert_snapshot!("job_failed", job_body(&app, "failed1").await);
    insta::assert_snapshot!("job_rejected", job_body(&app, "rejected1").await);
    insta::assert_snapshot!("job_fallback_to_gpu", job_body(&app, "gpu1").await);
    insta::assert_snapshot!("job_review_required", job_body(&app, "review1").await);
    insta::assert_snapshot!("job_unknown", job_body(&app, "nope").await);
}

#[tokio::test]
async fn progress_equals_encoding_progress_and_step_fields_come_together() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 3),
        fence(1, 1, 9),
        processing(57, Some((4, 0.4)), Some(84)),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&video_body(&app, 3).await).expect("json");
    assert_eq!(v["progress"], v["encoding_progress"]);
    for f in [
        "encoding_step_index",
        "encoding_step_total",
        "encoding_step_name",
        "encoding_step_percent",
    ] {
        assert!(!v[f].is_null(), "{f}");
    }
    assert_eq!(v["encoding_step_name"], "인코딩");
}
