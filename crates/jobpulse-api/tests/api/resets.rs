//! Explicit resets on SSE resume: a client whose `Last-Event-ID` is older than what the tenant's
//! change log still holds first gets a `reset` event ("what follows is a full snapshot, not a
//! diff"), then the current state of every watched task — its terminal state included although
//! the change that made it terminal was trimmed from the log — and can resume from the reset's
//! id afterwards without another reset. On the in-process store and on Redis.

use jobpulse_domain::{State, VideoStatus, Write};
use jobpulse_store::{SharedStore, StoreConfig, TENANT_LOG_LEN};
use jobpulse_testkit::TestRedis;

use crate::helpers::{TestApp, fence, processing, text, video_key};
use crate::push::Sse;

async fn trimmed_log_resume_starts_with_a_reset(app: &TestApp) {
    let token = app.token(1, "teacher");
    let mut sse = Sse::new(Sse::open(app, "videos=5,6,404", &token, None).await);
    for _ in 0..3 {
        let _ = sse.next_event().await; // the three snapshot bodies (UNKNOWN)
    }
    app.put(video_key(1, 5), fence(1, 1, 1), processing(15, None, None))
        .await;
    let (f, v) = sse.next_event().await;
    assert_eq!(v["status"], "PROCESSING");
    let last = f.id.expect("a live event has an id");
    drop(sse);

    // While the client is away: video 5 ends, then so much else happens in the tenant that the
    // log no longer holds the position the client has, nor the READY change (Redis trims its
    // stream approximately, a node of 100 entries at a time: twice the length is sure).
    let mut ready = State::video(VideoStatus::Ready);
    ready.hls_path = Some(text("a/master.m3u8"));
    ready.duration = Some(3);
    app.put(video_key(1, 5), fence(1, 1, 2), ready).await;
    let filler: Vec<Write> = (1..=(2 * TENANT_LOG_LEN as u64))
        .map(|seq| {
            Write::set(
                video_key(1, 6),
                fence(1, 1, seq),
                processing((10 + seq % 80) as u8, None, None),
            )
            .expect("valid write")
        })
        .collect();
    for chunk in filler.chunks(256) {
        app.store.apply_many(chunk).await.expect("store reachable");
    }
    let head_before = app
        .store
        .log_head(jobpulse_domain::TenantId::new(1).expect("tenant"))
        .await
        .expect("head")
        .expect("the tenant has a log");

    let mut sse = Sse::new(Sse::open(app, "videos=5,6,404", &token, Some(&last)).await);
    let (reset, info) = sse.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    assert_eq!(info["reason"], "history_expired");
    assert_eq!(info["snapshot"], true);
    assert_eq!(info["tasks"], 3);
    let reset_id = reset.id.expect("the reset carries the log head as its id");
    assert_eq!(reset_id, head_before, "nothing was written since");
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let (f, v) = sse.next_event().await;
        assert_eq!(f.event.as_deref(), Some("video"));
        assert_eq!(f.id.as_deref(), Some(reset_id.as_str()));
        seen.insert(v["id"].as_u64().expect("id"), v["status"].clone());
    }
    assert_eq!(
        seen[&5], "READY",
        "the trimmed terminal state is in the snapshot"
    );
    assert_eq!(seen[&6], "PROCESSING");
    assert_eq!(
        seen[&404], "UNKNOWN",
        "an unknown id is part of the snapshot too"
    );
    // Live changes follow the snapshot as usual.
    app.put(
        video_key(1, 6),
        fence(1, 1, 2 * TENANT_LOG_LEN as u64 + 10),
        processing(95, None, None),
    )
    .await;
    let (f, v) = sse.next_event().await;
    assert_eq!(
        (f.event.as_deref(), v["id"].as_u64()),
        (Some("video"), Some(6))
    );
    drop(sse);

    // Resuming from the reset's id is an ordinary catch-up: no reset, only what changed.
    let mut sse = Sse::new(Sse::open(app, "videos=5,6,404", &token, Some(&reset_id)).await);
    let (f, v) = sse.next_event().await;
    assert_eq!(f.event.as_deref(), Some("video"), "no second reset: {f:?}");
    assert_eq!(
        (v["id"].as_u64(), v["encoding_progress"].as_u64()),
        (Some(6), Some(95))
    );
    // …and nothing else is replayed (video 5 did not change): the next frame is a heartbeat
    // or a later change, never video 5 again.
    app.put(
        video_key(1, 404),
        fence(1, 1, 1),
        processing(20, None, None),
    )
    .await;
    let (_, v) = sse.next_event().await;
    assert_eq!(v["id"].as_u64(), Some(404));
}

#[tokio::test]
async fn a_resume_older_than_the_log_gets_a_reset_then_a_full_snapshot() {
    let app = TestApp::spawn().await;
    trimmed_log_resume_starts_with_a_reset(&app).await;
}

#[tokio::test]
async fn a_resume_older_than_the_log_gets_a_reset_then_a_full_snapshot_on_redis()
-> anyhow::Result<()> {
    let redis = TestRedis::new(StoreConfig::default()).await?;
    let app = TestApp::spawn_with(redis.store.clone() as SharedStore, Default::default()).await;
    redis.store.subscribe_ready().await?;
    trimmed_log_resume_starts_with_a_reset(&app).await;
    Ok(())
}

#[tokio::test]
async fn a_tenant_wide_stream_whose_history_expired_is_told_to_reload() {
    // `all=true` has no snapshot to send (the work box hydrates its list from the database):
    // its form of the reset is the `resync` event, unchanged.
    let app = TestApp::spawn().await;
    for seq in 1..=(TENANT_LOG_LEN as u64 + 10) {
        app.put(
            video_key(1, 9),
            fence(1, 1, seq),
            processing(20, None, None),
        )
        .await;
    }
    let mut sse = Sse::new(Sse::open(&app, "all=true", &app.token(1, "admin"), Some("1")).await);
    let (f, v) = sse.next_event().await;
    assert_eq!(f.event.as_deref(), Some("resync"), "{f:?}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("expired")));
}
