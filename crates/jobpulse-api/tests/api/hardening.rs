//! Input validation, headers, ops routes and connection hardening.

use std::sync::Arc;
use std::time::Duration;

use jobpulse_api::{HttpConfig, RouterConfig};
use jobpulse_domain::VideoStatus;
use jobpulse_store::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

#[tokio::test]
async fn malformed_ids_are_400_with_a_json_error() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "owner");
    for path in [
        "/api/v1/media/videos/abc/progress/",
        "/api/v1/media/videos/0/progress/",
        "/api/v1/media/videos/-1/progress/",
        "/api/v1/media/videos/99999999999999999999999/progress/",
        "/api/v1/media/videos/1%3A2/progress/",
        "/api/v1/media/videos/%7Bt1%7D/progress/",
        "/api/v1/jobs/a%3Ab/progress/",
        "/api/v1/jobs/a*/progress/",
        "/api/v1/jobs/%E2%9C%93/progress/",
        "/api/v1/jobs/%FF/progress/",
    ] {
        let res = app.get(path, Some(&token)).await;
        assert_eq!(res.status(), 400, "{path}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "bad_request", "{path}");
    }
    let long = format!("/api/v1/jobs/{}/progress/", "a".repeat(65));
    assert_eq!(app.get(&long, Some(&token)).await.status(), 400);
}

#[tokio::test]
async fn etag_round_trip_gives_304_and_changes_with_the_record() {
    let app = TestApp::spawn().await;
    app.put(
        video_key(1, 5),
        fence(1, 1, 1),
        processing(20, Some((4, 0.1)), None),
    )
    .await;
    let token = app.token(1, "teacher");
    let url = format!("{}/api/v1/media/videos/5/progress/", app.base);
    let first = app
        .get("/api/v1/media/videos/5/progress/", Some(&token))
        .await;
    assert_eq!(
        first.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-cache"[..])
    );
    assert_eq!(
        first.headers().get("x-poll-after").map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    let tag = first.headers().get("etag").cloned().expect("etag");
    let again = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("If-None-Match", tag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304);
    assert_eq!(
        again.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"3"[..])
    );
    assert!(again.bytes().await.expect("body").is_empty());
    app.put(
        video_key(1, 5),
        fence(1, 1, 2),
        processing(30, Some((4, 0.3)), None),
    )
    .await;
    let changed = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("If-None-Match", tag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers().get("etag"), Some(&tag));
    // Terminal answers may be kept and tell the poller to stop.
    let mut ready = jobpulse_domain::State::video(VideoStatus::Ready);
    ready.hls_path = Some(text("x/master.m3u8"));
    ready.duration = Some(3);
    app.put(video_key(1, 5), fence(1, 1, 3), ready).await;
    let done = app
        .get("/api/v1/media/videos/5/progress/", Some(&token))
        .await;
    assert_eq!(
        done.headers().get("x-poll-after").map(|v| v.as_bytes()),
        Some(&b"stop"[..])
    );
    assert!(
        done.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("max-age"))
    );
}

#[tokio::test]
async fn cors_preflight_exposes_the_polling_headers() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/media/videos/1/progress/", app.base),
        )
        .header("Origin", "https://academy.example")
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "authorization,x-tenant-code",
        )
        .send()
        .await
        .expect("sent");
    assert!(res.status().is_success());
    let get = app
        .client
        .get(format!("{}/api/v1/media/videos/1/progress/", app.base))
        .header("Origin", "https://academy.example")
        .bearer_auth(app.token(1, "owner"))
        .send()
        .await
        .expect("sent");
    let exposed = get
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("etag"),
        "{exposed}"
    );
}

/// The preflight of a request with `headers` from `origin` to `path`, for `method`.
async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .expect("sent")
}

fn header_list(res: &reqwest::Response, name: &str) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// docs/contract.md §1: the front end's axios wrapper sends these on every request; a preflight
/// that refuses one of them is a network error to the app.
const FRONT_END_HEADERS: &str =
    "authorization,content-type,x-client,x-client-version,x-tenant-code";

#[tokio::test]
async fn cors_preflight_allows_every_header_the_front_end_sends() {
    let app = TestApp::spawn_configured(
        Arc::new(MemoryStore::default()),
        HttpConfig::default(),
        10,
        RouterConfig {
            cors: jobpulse_api::CorsOrigins::List(vec!["https://academy.example".into()]),
            cors_headers: vec!["x-request-trace".into()],
            ..RouterConfig::default()
        },
    )
    .await;
    for (path, method) in [
        ("/api/v1/media/videos/1/progress/", "GET"),
        ("/api/v1/media/videos/upload/init/", "POST"),
        ("/media/upload/1/1/1/x", "PUT"),
    ] {
        let res = preflight(
            &app,
            path,
            "https://academy.example",
            method,
            FRONT_END_HEADERS,
        )
        .await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("https://academy.example"),
            "{path}"
        );
        let allowed = header_list(&res, "access-control-allow-headers");
        for h in FRONT_END_HEADERS.split(',').chain(["x-request-trace"]) {
            assert!(
                allowed.iter().any(|a| a == h),
                "{path}: {h} not in {allowed:?}"
            );
        }
        let methods = header_list(&res, "access-control-allow-methods");
        assert!(
            methods.iter().any(|m| m == &method.to_ascii_lowercase()),
            "{path}: {method} not in {methods:?}"
        );
    }
    // A header nobody configured is not allowed; another origin gets no grant at all.
    let res = preflight(
        &app,
        "/api/v1/media/videos/1/progress/",
        "https://academy.example",
        "GET",
        "x-not-configured",
    )
    .await;
    let allowed = header_list(&res, "access-control-allow-headers");
    assert!(
        !allowed.iter().any(|a| a == "x-not-configured"),
        "{allowed:?}"
    );
    let res = preflight(
        &app,
        "/api/v1/media/videos/1/progress/",
        "https://evil.example",
        "GET",
        FRONT_END_HEADERS,
    )
    .await;
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "an origin outside --cors-origins must not be granted"
    );
    // The answer itself exposes what the front end reads.
    let get = app
        .client
        .get(format!("{}/api/v1/media/videos/1/progress/", app.base))
        .header("Origin", "https://academy.example")
        .header("X-Client", "academyfront")
        .header("X-Client-Version", "1.2.3")
        .bearer_auth(app.token(1, "owner"))
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), 200);
    let exposed = header_list(&get, "access-control-expose-headers");
    for h in ["etag", "retry-after", "x-poll-after"] {
        assert!(exposed.iter().any(|e| e == h), "{h} not in {exposed:?}");
    }
}

#[tokio::test]
async fn ops_routes_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let ready: serde_json::Value = app.get("/readyz", None).await.json().await.expect("json");
    assert_eq!(ready["status"], "ok");
    // Make some traffic, then look for it in the metrics.
    let token = app.token(1, "owner");
    app.get("/api/v1/media/videos/1/progress/", Some(&token))
        .await;
    let text = app.get("/metrics", None).await.text().await.expect("text");
    assert!(text.contains("jobpulse_progress_requests_total"), "{text}");
    assert!(text.contains("jobpulse_read_model_lookups_total"), "{text}");
    assert!(text.contains("jobpulse_progress_request_seconds"), "{text}");
    let doc: serde_json::Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .expect("json");
    for p in [
        "/api/v1/media/videos/{id}/progress/",
        "/api/v1/jobs/{job_id}/progress/",
        "/api/v1/progress/",
        "/api/v1/progress/stream",
        "/api/v1/media/videos/",
        "/api/v1/media/videos/{id}/",
        "/api/v1/media/videos/{id}/retry/",
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}/",
        "/api/v1/jobs/{job_id}/result/",
        "/api/v1/jobs/{job_id}/cancel/",
        "/api/v1/jobs/{job_id}/files/{filename}",
        "/api/v1/lectures/",
        "/api/v1/webhooks/",
        "/api/v1/webhooks/{id}/",
        "/api/v1/webhooks/{id}/deliveries/",
        "/media/s/{expires}/{n}/{sig}/{key}",
        "/internal/v1/{kind}/{id}/{action}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    let missing = app.get("/nope", None).await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_client_that_dribbles_its_headers_is_cut_off() {
    let app = TestApp::spawn_with(
        Arc::new(MemoryStore::default()),
        HttpConfig {
            header_read_timeout: Duration::from_millis(500),
            ..HttpConfig::default()
        },
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    let started = std::time::Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    // Never finish the headers; the server must close the connection on its own.
    // Closed by the 500 ms header timeout: not at once, and not never (a 10 s wait leaves room
    // for a loaded machine).
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
}
