//! Issue 18 items 2 and 3 through the real API, on both read models (Redis and in-process):
//! a running task whose worker goes quiet turns `stalled` on polls (with a new ETag) and on the
//! event stream, and back; a retried task says which attempt it is, how many it may take, when
//! the next starts and what the previous one showed, while the percent the front end reads
//! never goes back (docs/contract.md §3a, §3b).

use std::time::Duration;

use jobpulse_api::render::Liveness;
use jobpulse_api::{HttpConfig, RouterConfig};
use jobpulse_domain::{JobStatus, VideoStatus};
use jobpulse_testkit::{Backend, store_for};
use serde_json::Value;

use crate::helpers::*;

#[path = "../../../jobpulse-cli/tests/fleet/sse.rs"]
#[allow(dead_code)]
mod sse;

async fn app_on(backend: Backend, stalled_after: Duration) -> (TestApp, impl Sized) {
    let (store, guard) = store_for(backend).await.expect("a read model");
    let app = TestApp::spawn_configured(
        store,
        HttpConfig::default(),
        100,
        RouterConfig {
            liveness: Liveness { stalled_after },
            ..RouterConfig::default()
        },
    )
    .await;
    (app, guard)
}

/// One poll: status, ETag and body.
async fn poll(app: &TestApp, path: &str, token: &str, inm: Option<&str>) -> (u16, String, Value) {
    let mut req = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(tag) = inm {
        req = req.header("If-None-Match", tag);
    }
    let res = req.send().await.expect("answered");
    let status = res.status().as_u16();
    let tag = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.expect("body");
    let body = if status == 200 {
        serde_json::from_str(&text).expect("JSON")
    } else {
        Value::Null
    };
    (status, tag, body)
}

async fn a_quiet_worker_turns_stalled_and_back(backend: Backend) {
    let (app, _guard) = app_on(backend, Duration::from_millis(1500)).await;
    let token = app.token(1, "teacher");
    let path = "/api/v1/media/videos/7/progress/";
    app.put(
        video_key(1, 7),
        fence(1, 1, 2),
        processing(40, Some((4, 0.2)), None),
    )
    .await;
    let mut stream = sse::Sse::open(
        &format!("{}/api/v1/progress/stream?videos=7", app.base),
        &token,
        None,
    )
    .await
    .expect("stream opens");
    let first = match stream.next(Duration::from_secs(5)).await {
        sse::Next::Event(e) => e,
        other => panic!("no snapshot event: {other:?}"),
    };
    assert_eq!(
        first.json().expect("json")["stalled"],
        false,
        "{}",
        first.data
    );

    let (status, alive_tag, body) = poll(&app, path, &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["stalled"], false, "{body}");
    assert!(body["worker_seen_at"].as_u64().is_some(), "{body}");
    assert!(!alive_tag.ends_with("-s\""), "{alive_tag}");
    // The body the front end reads is unchanged.
    assert_eq!(body["encoding_progress"], 40);
    assert_eq!(body["progress"], 40);

    // No write for longer than the threshold: the event stream says so on its own.
    let stalled_event = loop {
        match stream.next(Duration::from_secs(5)).await {
            sse::Next::Event(e) if e.json().expect("json")["stalled"] == true => break e,
            sse::Next::Event(_) => {}
            other => panic!("no stalled event: {other:?}"),
        }
    };
    let ev = stalled_event.json().expect("json");
    assert!(ev["worker_seen_seconds_ago"].as_u64() >= Some(1), "{ev}");

    // A poll with the alive tag is not answered 304: the flip changed the tag.
    let (status, stalled_tag, body) = poll(&app, path, &token, Some(&alive_tag)).await;
    assert_eq!(
        status, 200,
        "the stalled flip must not hide behind If-None-Match"
    );
    assert_eq!(body["stalled"], true, "{body}");
    assert!(stalled_tag.ends_with("-s\""), "{stalled_tag}");
    assert_eq!(body["encoding_progress"], 40);
    let (status, _, _) = poll(&app, path, &token, Some(&stalled_tag)).await;
    assert_eq!(status, 304);

    // The worker writes again: alive on polls and on the stream.
    app.put(
        video_key(1, 7),
        fence(1, 1, 3),
        processing(45, Some((4, 0.3)), None),
    )
    .await;
    let (status, _, body) = poll(&app, path, &token, Some(&stalled_tag)).await;
    assert_eq!(status, 200);
    assert_eq!(body["stalled"], false, "{body}");
    let back = loop {
        match stream.next(Duration::from_secs(5)).await {
            sse::Next::Event(e) => {
                let v = e.json().expect("json");
                if v["encoding_progress"] == 45 {
                    break v;
                }
            }
            other => panic!("no event after the write: {other:?}"),
        }
    };
    assert_eq!(back["stalled"], false, "{back}");

    // Not running: no liveness fields at all.
    let mut ready = jobpulse_domain::State::video(VideoStatus::Ready);
    ready.hls_path = Some(text("tenants/1/video/hls/7/master.m3u8"));
    ready.duration = Some(3);
    app.put(video_key(1, 7), fence(1, 1, 4), ready).await;
    let (_, _, body) = poll(&app, path, &token, None).await;
    assert!(body.get("stalled").is_none(), "{body}");
    assert!(body.get("worker_seen_at").is_none(), "{body}");
}

#[tokio::test]
async fn a_quiet_worker_turns_stalled_and_back_on_redis() {
    a_quiet_worker_turns_stalled_and_back(Backend::Postgres).await;
}

#[tokio::test]
async fn a_quiet_worker_turns_stalled_and_back_in_process() {
    a_quiet_worker_turns_stalled_and_back(Backend::Sqlite).await;
}

/// The front end's bar for a job answer (docs/contract.md §3, /work/shared/CONTRACT.md): the
/// percent while RUNNING, 100 when DONE; any other status leaves the bar where it was.
fn job_bar(body: &Value, last: u64) -> u64 {
    match body["status"].as_str() {
        Some("RUNNING") => body["progress"]["percent"].as_u64().unwrap_or(last),
        Some("DONE") => 100,
        _ => last,
    }
}

async fn a_retried_job_holds_its_bar(backend: Backend) {
    let (app, _guard) = app_on(backend, Duration::from_secs(60)).await;
    let token = app.token(1, "staff");
    let path = "/api/v1/jobs/imp1/progress/";
    let key = job_key(1, "imp1");
    let mut bars = Vec::new();
    let mut bar = 0;
    let mut look = async |app: &TestApp| -> Value {
        let (status, _, body) = poll(app, path, &token, None).await;
        assert_eq!(status, 200);
        bar = job_bar(&body, bar);
        bars.push(bar);
        body
    };

    app.put(
        key.clone(),
        fence(1, 0, 1),
        job_state(JobStatus::Pending, "excel_parsing"),
    )
    .await;
    look(&app).await;
    let mut claim = job_state(JobStatus::Running, "excel_parsing");
    claim.attempt = Some(1);
    claim.max_attempts = Some(3);
    app.put(key.clone(), fence(1, 1, 1), claim.clone()).await;
    let mut tick = running_import(60, 3, 40);
    tick.attempt = Some(1);
    tick.max_attempts = Some(3);
    app.put(key.clone(), fence(1, 1, 2), tick).await;
    let body = look(&app).await;
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["max_attempts"], 3);
    assert_eq!(body["attempt_changed"], false, "{body}");
    assert!(body.get("previous_attempt").is_none(), "{body}");

    // The attempt fails: RETRYING, with when the next one starts.
    let retry_at = jobpulse_api::render::now_ms() + 20_000;
    let mut retrying = job_state(JobStatus::Retrying, "excel_parsing");
    retrying.attempt = Some(1);
    retrying.max_attempts = Some(3);
    retrying.retry_at = Some(retry_at);
    retrying.error = Some(text("the database went away"));
    app.put(key.clone(), fence(1, 2, 0), retrying).await;
    let body = look(&app).await;
    assert_eq!(body["status"], "RETRYING");
    assert_eq!(
        body["progress"],
        Value::Null,
        "the contract's progress stays null"
    );
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["max_attempts"], 3);
    assert_eq!(body["retry_at"], retry_at);
    let prev = &body["previous_attempt"];
    assert_eq!(prev["attempt"], 1, "{body}");
    assert_eq!(prev["percent"], 60, "{body}");
    assert_eq!(prev["step"], "enrolling", "{body}");
    assert_eq!(prev["step_index"], 3, "{body}");
    assert_eq!(prev["step_percent"], 40, "{body}");

    // Attempt 2 starts from nothing: the contract's percent is held at 60 and says so.
    claim.attempt = Some(2);
    app.put(key.clone(), fence(1, 2, 1), claim).await;
    let body = look(&app).await;
    assert_eq!(body["status"], "RUNNING");
    assert_eq!(body["attempt"], 2);
    assert_eq!(body["progress"]["percent"], 60, "held: {body}");
    assert_eq!(body["attempt_percent"], 0, "{body}");
    assert_eq!(body["attempt_changed"], true, "{body}");
    assert_eq!(body["previous_attempt"]["percent"], 60, "{body}");
    for (seq, pct) in [(2, 30u8), (3, 59), (4, 75)] {
        let mut t = running_import(pct, 3, 50);
        t.attempt = Some(2);
        t.max_attempts = Some(3);
        app.put(key.clone(), fence(1, 2, seq), t).await;
        let body = look(&app).await;
        assert_eq!(body["attempt_percent"], pct, "{body}");
        assert_eq!(
            body["progress"]["percent"],
            u64::from(pct).max(60),
            "held until passed: {body}"
        );
        assert_eq!(body["previous_attempt"]["attempt"], 1, "{body}");
    }
    let mut done = job_state(JobStatus::Done, "excel_parsing");
    done.result = Some(result(serde_json::json!({"created": 1})));
    done.attempt = Some(2);
    app.put(key.clone(), fence(1, 2, 5), done).await;
    let body = look(&app).await;
    assert!(body.get("previous_attempt").is_none(), "terminal: {body}");
    assert!(
        bars.windows(2).all(|w| w[0] <= w[1]),
        "the front end's bar went back: {bars:?}"
    );
    assert_eq!(bars.last(), Some(&100));
    assert!(bars.contains(&60) && !bars.contains(&30), "{bars:?}");
}

#[tokio::test]
async fn a_retried_job_holds_its_bar_on_redis() {
    a_retried_job_holds_its_bar(Backend::Postgres).await;
}

#[tokio::test]
async fn a_retried_job_holds_its_bar_in_process() {
    a_retried_job_holds_its_bar(Backend::Sqlite).await;
}
