//! Scenario 15 — liveness and retry-aware progress (issue 18 items 2 and 3), with the real
//! `jobpulse serve` and `jobpulse worker video` processes.
//!
//! 1. A video transcodes on a worker (60 s lease, so its job is not handed on); the worker is
//!    paused (SIGSTOP). Pass: within the API's `--worker-stalled-after` (4 s) plus 3 s, polls
//!    answer `stalled: true` (with a new `ETag`: the alive tag is not answered 304) and the
//!    event stream pushes a `stalled: true` event on its own; after SIGCONT both show
//!    `stalled: false` again within 5 s, and the video ends READY on its first attempt.
//! 2. A video transcodes on worker A (4 s lease), which is killed at step 4; worker B reaps
//!    the lease and runs attempt 2. Pass: RETRY_WAIT answers carry `attempt` 1,
//!    `max_attempts`, `retry_at` and `previous_attempt` with the percent last shown; attempt
//!    2's answers say `attempt_changed` and hold `encoding_progress` at the previous value
//!    until `attempt_percent` passes it; the front end's bar (UPLOADED 10, PROCESSING
//!    `max(1, min(99, encoding_progress))`, READY 100, RETRY_WAIT unchanged) never goes
//!    back, over polls and over the event stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::harness::{Cluster, clip, eventually};
use crate::{figure, invariant};

// The small SSE client of the fleet test, as scenario 14 includes it.
use crate::s14_redis_failover::sse;

type Seen = Arc<Mutex<Vec<(Instant, Value)>>>;

/// Reads the stream into `seen` until the task ends.
fn read_stream(mut stream: sse::Sse) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let handle = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                match stream.next(Duration::from_secs(300)).await {
                    sse::Next::Event(e) => {
                        if let Ok(v) = e.json() {
                            seen.lock().await.push((Instant::now(), v));
                        }
                    }
                    _ => return,
                }
            }
        }
    });
    (seen, handle)
}

/// Polls `path` every 100 ms into `seen`.
fn poll_into(
    api: crate::harness::http::Api,
    path: String,
    token: String,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let handle = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                if let Ok(r) = api.get(&path, Some(&token)).await
                    && r.status == 200
                    && let Ok(v) = r.json()
                {
                    seen.lock().await.push((Instant::now(), v));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    (seen, handle)
}

/// The front end's bar for a video answer (docs/contract.md §2): unknown statuses leave it.
fn video_bar(body: &Value, last: u64) -> u64 {
    match body["status"].as_str() {
        Some("UPLOADED") => 10,
        Some("PROCESSING") => body["encoding_progress"]
            .as_u64()
            .map_or(last, |p| p.clamp(1, 99)),
        Some("READY") => 100,
        _ => last,
    }
}

fn bars(seen: &[(Instant, Value)]) -> Vec<u64> {
    let mut last = 0;
    seen.iter()
        .map(|(_, v)| {
            last = video_bar(v, last);
            last
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_shows_stalled_and_alive_again() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("alive").await?;
    let token = c.token(seed.tenant_id, "staff");
    let server = c.serve(&[("JOBPULSE_WORKER_STALLED_AFTER", "4s")]).await?;
    let api = server.api.clone();
    let clip = clip(c.dir.path(), 40.0, 1280, 720).await?;
    let worker = c
        .worker("video", &["--lease", "60s", "--ffmpeg-threads", "1"])
        .await?;
    let id = api.upload_video(&token, &clip).await?;
    let path = format!("/api/v1/media/videos/{id}/progress/");
    eventually(
        "the worker transcodes",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            let v = api.video_progress(&token, id).await?;
            Ok(v["encoding_step_index"].as_i64() == Some(4)
                && v["encoding_step_percent"].as_i64().unwrap_or(0) >= 2)
        },
    )
    .await?;
    let stream = sse::Sse::open(
        &api.url(&format!("/api/v1/progress/stream?videos={id}")),
        &token,
        None,
    )
    .await?;
    let (events, reader) = read_stream(stream);
    let alive = api.get(&path, Some(&token)).await?;
    let body = alive.json()?;
    invariant!(
        body["stalled"] == false,
        "a transcoding worker is alive: {body}"
    );
    let alive_tag = alive
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    worker.stop()?;
    let paused = Instant::now();
    let to_stalled = eventually(
        "polls say stalled",
        Duration::from_secs(7),
        Duration::from_millis(100),
        || async { Ok(api.video_progress(&token, id).await?["stalled"] == true) },
    )
    .await?;
    let r = api
        .send(
            api.client
                .get(api.url(&path))
                .bearer_auth(&token)
                .header("If-None-Match", &alive_tag),
        )
        .await?;
    invariant!(
        r.status == 200,
        "the stalled flip hid behind If-None-Match: {}",
        r.status
    );
    let stalled = r.json()?;
    let stalled_tag = r
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    invariant!(
        stalled_tag.ends_with("-s\"") && stalled["status"] == "PROCESSING",
        "{stalled_tag} {stalled}"
    );
    let ago = stalled["worker_seen_seconds_ago"].as_u64().unwrap_or(0);
    invariant!(
        ago >= 4,
        "stalled after {ago} s without a sign of the worker"
    );
    eventually(
        "the stream pushes stalled",
        Duration::from_secs(3),
        Duration::from_millis(50),
        || async {
            Ok(events
                .lock()
                .await
                .iter()
                .any(|(_, v)| v["stalled"] == true))
        },
    )
    .await?;
    let sse_stalled = paused.elapsed();

    worker.cont()?;
    let resumed = Instant::now();
    let to_alive = eventually(
        "polls say alive",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async { Ok(api.video_progress(&token, id).await?["stalled"] == false) },
    )
    .await?;
    eventually(
        "the stream says alive",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let e = events.lock().await;
            let flip = e.iter().position(|(_, v)| v["stalled"] == true);
            Ok(flip.is_some_and(|i| e[i..].iter().any(|(_, v)| v["stalled"] == false)))
        },
    )
    .await?;
    let sse_alive = resumed.elapsed();
    eventually(
        "READY",
        Duration::from_secs(240),
        Duration::from_millis(250),
        || async { Ok(api.video_progress(&token, id).await?["status"] == "READY") },
    )
    .await?;
    let end = api.video_progress(&token, id).await?;
    invariant!(
        end["attempt"] == 1,
        "the paused attempt finished itself: {end}"
    );
    let bars = bars(&events.lock().await);
    invariant!(
        bars.windows(2).all(|w| w[0] <= w[1]),
        "the stream's bar went back: {bars:?}"
    );
    reader.abort();
    figure!(
        "s15 liveness: stalled on polls {to_stalled:?} after SIGSTOP (threshold 4 s), on the stream by {sse_stalled:?}; alive again on polls {to_alive:?} after SIGCONT, on the stream by {sse_alive:?}; seen {ago} s ago when stalled"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_video_says_which_attempt_and_its_bar_holds() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("retry").await?;
    let token = c.token(seed.tenant_id, "staff");
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let clip = clip(c.dir.path(), 12.0, 1280, 720).await?;
    let mut a = c.worker("video", &["--lease", "4s"]).await?;
    let id = api.upload_video(&token, &clip).await?;
    let path = format!("/api/v1/media/videos/{id}/progress/");
    let stream = sse::Sse::open(
        &api.url(&format!("/api/v1/progress/stream?videos={id}")),
        &token,
        None,
    )
    .await?;
    let (events, reader) = read_stream(stream);
    let (polls, poller) = poll_into(api.clone(), path, token.clone());
    eventually(
        "A transcodes",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let v = api.video_progress(&token, id).await?;
            Ok(v["encoding_step_index"].as_i64() == Some(4)
                && v["encoding_step_percent"].as_i64().unwrap_or(0) >= 20)
        },
    )
    .await?;
    a.kill();
    let killed = Instant::now();
    let _b = c.worker("video", &["--lease", "4s"]).await?;
    eventually(
        "READY after a retry",
        Duration::from_secs(180),
        Duration::from_millis(250),
        || async { Ok(api.video_progress(&token, id).await?["status"] == "READY") },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.abort();
    reader.abort();
    let polls = polls.lock().await.clone();
    let events = events.lock().await.clone();

    for (what, seen) in [("polls", &polls), ("stream", &events)] {
        let bars = bars(seen);
        invariant!(
            bars.windows(2).all(|w| w[0] <= w[1]),
            "the front end's bar went back over {what}: {bars:?}"
        );
        let waits: Vec<&Value> = seen
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v["status"] == "RETRY_WAIT")
            .collect();
        anyhow::ensure!(!waits.is_empty(), "{what}: no RETRY_WAIT seen");
        // What attempt 1 last showed, as its last PROCESSING answer before RETRY_WAIT.
        let first_wait = seen
            .iter()
            .position(|(_, v)| v["status"] == "RETRY_WAIT")
            .unwrap_or(0);
        let last_shown = seen[..first_wait]
            .iter()
            .rev()
            .find(|(_, v)| v["status"] == "PROCESSING")
            .map(|(_, v)| v["encoding_progress"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        for w in &waits {
            invariant!(w["attempt"] == 1, "{what}: {w}");
            invariant!(w["max_attempts"].as_u64() >= Some(2), "{what}: {w}");
            invariant!(w["retry_at"].as_u64().is_some(), "{what}: {w}");
            let prev = &w["previous_attempt"];
            invariant!(prev["attempt"] == 1, "{what}: {w}");
            invariant!(
                prev["percent"].as_u64() >= Some(last_shown)
                    && prev["percent"] == w["encoding_progress"],
                "{what}: the previous attempt's percent {} (last shown {last_shown}), held {}",
                prev["percent"],
                w["encoding_progress"]
            );
            invariant!(prev["step_index"] == 4, "{what}: {w}");
        }
        let second: Vec<&Value> = seen
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v["status"] == "PROCESSING" && v["attempt"] == 2)
            .collect();
        anyhow::ensure!(!second.is_empty(), "{what}: attempt 2 not seen running");
        for v in &second {
            invariant!(v["attempt_changed"] == true, "{what}: {v}");
            invariant!(
                v["encoding_progress"].as_u64()
                    >= v["attempt_percent"]
                        .as_u64()
                        .max(v["previous_attempt"]["percent"].as_u64()),
                "{what}: not held: {v}"
            );
        }
        if what == "polls" {
            invariant!(
                second
                    .iter()
                    .any(|v| v["attempt_percent"].as_u64() < v["encoding_progress"].as_u64()),
                "polls never saw attempt 2 held below the previous attempt's percent"
            );
        }
    }
    let wait = polls
        .iter()
        .find(|(_, v)| v["status"] == "RETRY_WAIT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    figure!(
        "s15 retry: {} polls, {} events; RETRY_WAIT {:?} after the kill with attempt {} of {}, previous attempt at {} % (step {}), retry_at {}; attempt 2 held for {} polls; bar never went back",
        polls.len(),
        events.len(),
        polls
            .iter()
            .find(|(_, v)| v["status"] == "RETRY_WAIT")
            .map(|(t, _)| t.duration_since(killed)),
        wait["attempt"],
        wait["max_attempts"],
        wait["previous_attempt"]["percent"],
        wait["previous_attempt"]["step_index"],
        wait["retry_at"],
        polls
            .iter()
            .filter(|(_, v)| v["attempt_changed"] == true
                && v["attempt_percent"].as_u64() < v["encoding_progress"].as_u64())
            .count(),
    );
    Ok(())
}
