//! Batch reads and Server-Sent Events.

use std::time::Duration;

use futures::StreamExt;
use jobpulse_domain::{JobStatus, State, VideoStatus};

use crate::helpers::*;

#[tokio::test]
async fn batch_mixes_known_unknown_and_foreign_ids() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 0, 1),
        State::video(VideoStatus::Uploaded),
    )
    .await;
    app.put(
        video_key(2, 2),
        fence(1, 0, 1),
        State::video(VideoStatus::Uploaded),
    )
    .await;
    app.put(
        job_key(1, "a"),
        fence(1, 1, 1),
        job_state(JobStatus::Running, "ppt_generation"),
    )
    .await;
    app.put(job_key(1, "imp"), fence(1, 1, 1), running_import(10, 1, 0))
        .await;
    let token = app.token(1, "teacher");
    let res = app
        .get("/api/v1/progress/?videos=1,2,3&jobs=a,b,imp", Some(&token))
        .await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["videos"]["1"]["status"], "UPLOADED");
    assert!(
        v["videos"].get("2").is_none(),
        "another tenant's video is unknown"
    );
    assert_eq!(v["unknown"]["videos"], serde_json::json!([2, 3]));
    assert_eq!(v["jobs"]["a"]["status"], "RUNNING");
    assert_eq!(v["jobs"]["imp"]["status"], "RUNNING");
    assert_eq!(v["unknown"]["jobs"], serde_json::json!(["b"]));
    // The single endpoint's body, byte for byte.
    let single: serde_json::Value = app
        .get("/api/v1/media/videos/1/progress/", Some(&token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["videos"]["1"], single);
    // A student does not see staff-only jobs: they are unknown to them.
    let v: serde_json::Value = app
        .get(
            "/api/v1/progress/?jobs=a,imp",
            Some(&app.token(1, "student")),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["unknown"]["jobs"], serde_json::json!(["imp"]));
}

#[tokio::test]
async fn batch_post_and_limits() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher");
    let url = format!("{}/api/v1/progress/", app.base);
    let res = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"videos": [1, "2"], "jobs": ["x"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["unknown"]["videos"], serde_json::json!([1, 2]));
    let too_many: Vec<i64> = (1..=201).collect();
    for body in [
        serde_json::json!({"videos": too_many}),
        serde_json::json!({"videos": [0]}),
        serde_json::json!({"jobs": ["a:b"]}),
        serde_json::json!({"tenant": 2}),
        serde_json::json!({"videos": [[1]]}),
    ] {
        let res = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 400, "{body}");
    }
    let res = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 400);
}

/// A minimal SSE reader over a streaming response.
pub(crate) struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Frame {
    pub(crate) event: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
    pub(crate) comment: bool,
}

impl Sse {
    pub(crate) async fn open(
        app: &TestApp,
        query: &str,
        token: &str,
        last_id: Option<&str>,
    ) -> reqwest::Response {
        let mut req = app
            .client
            .get(format!("{}/api/v1/progress/stream?{query}", app.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(60));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        req.send().await.expect("sent")
    }

    pub(crate) fn new(res: reqwest::Response) -> Sse {
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"))
        );
        Sse {
            body: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next frame (event or comment), within 5 s.
    pub(crate) async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in raw.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        f.comment = true;
                        f.data = c.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        f.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        f.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        f.data.push_str(v.trim_start());
                    }
                }
                return f;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.body.next())
                .await
                .expect("an SSE frame within 5 s")
                .expect("stream open")
                .expect("chunk");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    pub(crate) async fn next_event(&mut self) -> (Frame, serde_json::Value) {
        loop {
            let f = self.next().await;
            if !f.comment {
                let v = serde_json::from_str(&f.data).expect("json data");
                return (f, v);
            }
        }
    }
}

#[tokio::test]
async fn stream_sends_the_snapshot_then_every_change() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 1),
        fence(1, 1, 1),
        processing(20, Some((4, 0.1)), Some(50)),
    )
    .await;
    let token = app.token(1, "teacher");
    let mut sse = Sse::new(Sse::open(&app, "videos=1,2", &token, None).await);
    let (f1, v1) = sse.next_event().await;
    let (f2, v2) = sse.next_event().await;
    assert_eq!(f1.event.as_deref(), Some("video"));
    assert_eq!(v1["id"], 1);
    assert_eq!(v1["status"], "PROCESSING");
    assert_eq!(
        (f2.event.as_deref(), v2["status"].as_str()),
        (Some("video"), Some("UNKNOWN"))
    );
    app.put(
        video_key(1, 1),
        fence(1, 1, 2),
        processing(30, Some((4, 0.3)), Some(40)),
    )
    .await;
    let (f, v) = sse.next_event().await;
    assert_eq!(v["progress"], 30);
    assert!(f.id.is_some(), "live events carry their change-log id");
    // Changes of tasks not watched, and of other tenants, do not arrive.
    app.put(video_key(1, 9), fence(1, 1, 2), processing(30, None, None))
        .await;
    app.put(video_key(2, 1), fence(1, 1, 2), processing(30, None, None))
        .await;
    app.put(
        video_key(1, 2),
        fence(1, 0, 1),
        State::video(VideoStatus::Uploaded),
    )
    .await;
    let (_, v) = sse.next_event().await;
    assert_eq!(
        (v["id"].as_i64(), v["status"].as_str()),
        (Some(2), Some("UPLOADED"))
    );
}

#[tokio::test]
async fn heartbeats_flow_while_idle() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher");
    let mut sse = Sse::new(Sse::open(&app, "jobs=x", &token, None).await);
    let (_, v) = sse.next_event().await;
    assert_eq!(v["status"], "UNKNOWN");
    let hb = sse.next().await;
    assert!(hb.comment && hb.data == "hb", "{hb:?}");
}

#[tokio::test]
async fn resume_after_a_disconnect_delivers_the_terminal_state() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher");
    let mut sse = Sse::new(Sse::open(&app, "videos=5", &token, None).await);
    let _ = sse.next_event().await; // UNKNOWN snapshot
    app.put(
        video_key(1, 5),
        fence(1, 1, 1),
        processing(15, Some((2, 0.5)), None),
    )
    .await;
    let (f, _) = sse.next_event().await;
    let last = f.id.expect("id");
    drop(sse);
    // While disconnected: progress, then READY, plus noise on other tasks.
    for seq in 2..20 {
        app.put(
            video_key(1, 5),
            fence(1, 1, seq),
            processing(15 + seq as u8, Some((4, 0.5)), None),
        )
        .await;
        app.put(
            video_key(1, 6),
            fence(1, 1, seq),
            processing(10, None, None),
        )
        .await;
    }
    let mut ready = State::video(VideoStatus::Ready);
    ready.hls_path = Some(text("a/master.m3u8"));
    ready.duration = Some(3);
    app.put(video_key(1, 5), fence(1, 1, 50), ready).await;
    let mut sse = Sse::new(Sse::open(&app, "videos=5", &token, Some(&last)).await);
    let (f, v) = sse.next_event().await;
    assert_eq!(v["status"], "READY", "the terminal state after resume");
    assert!(f.id.is_some());
    // An id the store never issued: a reset, then everything watched is re-sent.
    let mut sse = Sse::new(Sse::open(&app, "videos=5", &token, Some("999999999")).await);
    let (f, v) = sse.next_event().await;
    assert_eq!(
        (f.event.as_deref(), v["tasks"].as_u64()),
        (Some("reset"), Some(1))
    );
    let (_, v) = sse.next_event().await;
    assert_eq!(v["status"], "READY");
}

#[tokio::test]
async fn tenant_wide_stream_is_for_staff_and_stays_in_the_tenant() {
    let app = TestApp::spawn().await;
    let student = Sse::open(&app, "all=true", &app.token(1, "student"), None).await;
    assert_eq!(student.status(), 403);
    let mut sse = Sse::new(Sse::open(&app, "all=true", &app.token(1, "admin"), None).await);
    app.put(
        video_key(2, 1),
        fence(1, 0, 1),
        State::video(VideoStatus::Uploaded),
    )
    .await;
    app.put(
        job_key(1, "j1"),
        fence(1, 0, 1),
        job_state(JobStatus::Pending, "excel_parsing"),
    )
    .await;
    let (f, v) = sse.next_event().await;
    assert_eq!(
        (f.event.as_deref(), v["job_id"].as_str()),
        (Some("job"), Some("j1"))
    );
}

#[tokio::test]
async fn streams_per_tenant_are_capped() {
    let app = TestApp::spawn_full(
        std::sync::Arc::new(jobpulse_store::MemoryStore::default()),
        jobpulse_api::HttpConfig::default(),
        2,
    )
    .await;
    let token = app.token(1, "teacher");
    let a = Sse::open(&app, "videos=1", &token, None).await;
    let b = Sse::open(&app, "videos=1", &token, None).await;
    let c = Sse::open(&app, "videos=1", &token, None).await;
    assert_eq!(
        (
            a.status().as_u16(),
            b.status().as_u16(),
            c.status().as_u16()
        ),
        (200, 200, 429)
    );
    // Another tenant is not affected.
    let d = Sse::open(&app, "videos=1", &app.token(2, "teacher"), None).await;
    assert_eq!(d.status(), 200);
    drop((a, b));
    // Closed streams free their slots (the server notices the disconnect).
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Sse::open(&app, "videos=1", &token, None).await.status() == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "slots were not released");
}

#[tokio::test]
async fn stream_rejects_bad_queries() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher");
    for q in ["", "videos=x", "jobs=a:b", "all=true&videos=1", "tenant=3"] {
        assert_eq!(Sse::open(&app, q, &token, None).await.status(), 400, "{q}");
    }
    // EventSource-style token in the query.
    let res = app
        .client
        .get(format!(
            "{}/api/v1/progress/stream?videos=1&access_token={token}",
            app.base
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn batch_answers_carry_an_etag_and_a_poll_hint() {
    let app = TestApp::spawn().await;
    app.put(video_key(1, 1), fence(1, 1, 1), processing(20, None, None))
        .await;
    let token = app.token(1, "teacher");
    let path = "/api/v1/progress/?videos=1,2";
    let first = app.get(path, Some(&token)).await;
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    assert_eq!(
        first.headers()["x-poll-after"],
        "2",
        "an active task: poll soon"
    );
    let again = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&token)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304, "nothing changed");
    assert_eq!(again.headers()["etag"], tag.as_str());
    // A change of one task changes the batch's tag.
    app.put(video_key(1, 1), fence(1, 1, 2), processing(30, None, None))
        .await;
    let changed = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&token)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], tag.as_str());
    // The same ids for another role (which may see less) never share a tag.
    let student = app.get(path, Some(&app.token(1, "student"))).await;
    assert_ne!(student.headers()["etag"], changed.headers()["etag"]);
    // Every task finished: stop.
    app.put(
        video_key(1, 1),
        fence(1, 1, 3),
        State::video(VideoStatus::Ready),
    )
    .await;
    let done = app.get("/api/v1/progress/?videos=1", Some(&token)).await;
    assert_eq!(done.headers()["x-poll-after"], "stop");
}

/// Sends `head` over a raw connection, in `pieces` writes, and reads what comes back within
/// `wait` (the stream path closes the connection only when the answer ends).
async fn raw(app: &TestApp, head: &str, pieces: usize, wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    let bytes = head.as_bytes();
    let step = bytes.len().div_ceil(pieces);
    for part in bytes.chunks(step) {
        s.write_all(part).await.expect("writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn streams_are_served_without_hyper_with_chunked_frames_and_closing_errors() {
    let app = TestApp::spawn().await;
    app.put(video_key(1, 1), fence(1, 1, 1), processing(20, None, None))
        .await;
    let token = app.token(1, "teacher");
    // A request line sent in pieces still takes the stream path.
    let head = format!(
        "GET /api/v1/progress/stream?videos=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    let got = raw(&app, &head, 4, Duration::from_millis(800)).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let lower = got.to_ascii_lowercase();
    for h in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "connection: close",
        "access-control-allow-origin: *",
        "date: ",
    ] {
        assert!(lower.contains(h), "{h} in {got}");
    }
    assert!(
        got.contains("event: video") && got.contains("\"id\":1"),
        "the snapshot, chunked: {got}"
    );
    // An error is written whole, with its length, and the connection closes.
    let err = raw(
        &app,
        "GET /api/v1/progress/stream?videos=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        Duration::from_secs(3),
    )
    .await;
    assert!(err.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{err}");
    assert!(
        err.to_ascii_lowercase().contains("content-length: "),
        "{err}"
    );
    assert!(
        err.ends_with('}'),
        "the whole JSON envelope, then close: {err}"
    );
    // HTTP/1.0: no chunked framing (close-delimited).
    let old = raw(
        &app,
        &format!(
            "GET /api/v1/progress/stream?videos=1 HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
        ),
        1,
        Duration::from_millis(800),
    )
    .await;
    assert!(old.starts_with("HTTP/1.0 200 OK\r\n"), "{old}");
    assert!(
        !old.to_ascii_lowercase().contains("transfer-encoding"),
        "{old}"
    );
    assert!(
        old.contains("\n\nevent: video") || old.contains("\r\n\r\nevent: video"),
        "{old}"
    );
    // Garbage and oversized heads get a clear 4xx.
    let bad = raw(
        &app,
        "GET /api/v1/progress/stream?videos=1 HTTP/1.1\r\nBad Header\r\n\r\n",
        1,
        Duration::from_secs(3),
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let huge = format!(
        "GET /api/v1/progress/stream?videos=1 HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        // Beyond hyper's limit, which this path shares (a 20 KB head is answered like on any
        // other route: see fanout::a_large_token_is_answered_like_on_every_other_route).
        "a".repeat(500_000)
    );
    let big = raw(&app, &huge, 1, Duration::from_secs(3)).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // Other paths that start alike are hyper's (404 with keep-alive framing).
    let other = raw(
        &app,
        "GET /api/v1/progress/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        1,
        Duration::from_secs(3),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
}
