//! Several API replicas on one Redis, each with its own read cache, polled round-robin the way a
//! load balancer spreads a browser's polls: a client that sends its last `ETag` is never shown
//! an older revision than one it holds, nor a running state after a terminal one — a replica
//! whose cache is behind the client reads Redis instead, and when Redis itself is behind (writes
//! lost in a failover) the answer is 304 (docs/contract.md §3).

use std::time::Duration;

use jobpulse_domain::{State, VideoStatus, Write};
use jobpulse_store::{ReadCacheConfig, SharedStore, StatusStore, StoreConfig};
use jobpulse_testkit::TestRedis;
use reqwest::StatusCode;

use crate::helpers::{TestApp, fence, processing, video_key};

fn cached() -> StoreConfig {
    StoreConfig {
        read_cache: Some(ReadCacheConfig {
            entries: 1000,
            max_age: Duration::from_secs(600),
        }),
        ..StoreConfig::default()
    }
}

async fn poll(app: &TestApp, token: &str, etag: Option<&str>) -> (StatusCode, String, u64) {
    let mut req = app
        .client
        .get(format!("{}/api/v1/media/videos/77/progress/", app.base))
        .bearer_auth(token);
    if let Some(tag) = etag {
        req = req.header("If-None-Match", tag);
    }
    let res = req.send().await.expect("answered");
    let status = res.status();
    let tag = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let rev = tag
        .trim_matches('"')
        .strip_prefix('r')
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    (status, tag, rev)
}

#[tokio::test]
async fn a_replica_whose_cache_is_behind_the_client_reads_redis() -> anyhow::Result<()> {
    let behind = TestRedis::new(cached()).await?;
    let fresh = TestRedis::with_keys(behind.keys.clone(), StoreConfig::default()).await?;
    let a = TestApp::spawn_with(behind.store.clone() as SharedStore, Default::default()).await;
    let b = TestApp::spawn_with(fresh.store.clone() as SharedStore, Default::default()).await;
    behind.store.subscribe_ready().await?;
    let token = a.token(1, "teacher");
    let key = video_key(1, 77);
    fresh
        .store
        .apply(&Write::set(
            key.clone(),
            fence(1, 1, 1),
            processing(10, None, None),
        )?)
        .await?;
    // Replica A caches revision 1 (its feed announced it; it may take a moment).
    let mut first = poll(&a, &token, None).await;
    for _ in 0..100 {
        if first.2 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = poll(&a, &token, None).await;
    }
    assert_eq!(first.0, StatusCode::OK);
    // A newer revision lands in Redis without an announcement (as if A's feed had not yet
    // delivered it), so A's cache is behind; replica B (no cache) shows it to the client.
    let record = behind.keys.record(&key);
    let mut raw = behind.store.connection();
    let newer = first.2 + 1000;
    let state = processing(60, None, None);
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg("r")
        .arg(newer)
        .arg("s")
        .arg(2)
        .arg("p")
        .arg(60)
        .arg("j")
        .arg(serde_json::to_string::<State>(&state)?)
        .query_async(&mut raw)
        .await?;
    assert_eq!(
        poll(&a, &token, None).await.2,
        first.2,
        "A answers from its cache"
    );
    let (status, tag, rev) = poll(&b, &token, None).await;
    assert_eq!((status, rev), (StatusCode::OK, newer));
    // The client polls A next with the ETag it holds: A must not answer revision 1.
    let (status, again, rev) = poll(&a, &token, Some(&tag)).await;
    assert_eq!(
        (status, rev),
        (StatusCode::NOT_MODIFIED, newer),
        "A read Redis instead of its stale cache ({again})"
    );
    // Redis moves on again (still unannounced): A, asked with the client's tag, reads it —
    // not merely "nothing newer than what you hold".
    let newest = newer + 10;
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg("r")
        .arg(newest)
        .query_async(&mut raw)
        .await?;
    let (status, _, rev) = poll(&a, &token, Some(&tag)).await;
    assert_eq!(
        (status, rev),
        (StatusCode::OK, newest),
        "A read through to Redis"
    );
    // A client holding a revision newer than Redis has (a write lost in a failover) keeps it.
    let held = format!("\"r{}\"", newest + 5);
    let (status, tag, _) = poll(&a, &token, Some(&held)).await;
    assert_eq!((status, tag), (StatusCode::NOT_MODIFIED, held));
    Ok(())
}

/// Three cached replicas, a writer streaming progress to READY, and a client polling them in
/// turn with its last ETag: revisions never go back and nothing follows READY but READY.
#[tokio::test]
async fn round_robin_polls_with_etags_never_go_back() -> anyhow::Result<()> {
    let writer = TestRedis::new(StoreConfig::default()).await?;
    let mut replicas = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let r = TestRedis::with_keys(writer.keys.clone(), cached()).await?;
        r.store.subscribe_ready().await?;
        replicas
            .push(TestApp::spawn_with(r.store.clone() as SharedStore, Default::default()).await);
        stores.push(r);
    }
    let token = replicas[0].token(1, "teacher");
    let key = video_key(1, 77);
    let store = writer.store.clone();
    let writes = tokio::spawn(async move {
        for seq in 1..=150u64 {
            let pct = u8::try_from(seq * 99 / 150).unwrap_or(99);
            let w = Write::set(key.clone(), fence(1, 1, seq), processing(pct, None, None))
                .expect("valid");
            store.apply(&w).await.expect("applies");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let w = Write::set(
            key.clone(),
            fence(1, 1, 151),
            State::video(VideoStatus::Ready),
        )
        .expect("valid");
        store.apply(&w).await.expect("applies");
    });
    let (mut held, mut held_rev, mut polls, mut ready) = (None::<String>, 0u64, 0u32, false);
    loop {
        let app = &replicas[polls as usize % replicas.len()];
        polls += 1;
        let res = app
            .client
            .get(format!("{}/api/v1/media/videos/77/progress/", app.base))
            .bearer_auth(&token)
            .header("If-None-Match", held.clone().unwrap_or_default())
            .send()
            .await?;
        let status = res.status();
        let tag = res
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let rev: u64 = tag
            .trim_matches('"')
            .trim_start_matches('r')
            .parse()
            .unwrap_or(0);
        assert!(
            rev >= held_rev,
            "revision went back: {rev} after {held_rev} (poll {polls})"
        );
        if status == StatusCode::OK {
            let body: serde_json::Value = res.json().await?;
            let now_ready = body["status"] == "READY";
            assert!(!ready || now_ready, "{body} after READY (poll {polls})");
            ready |= now_ready;
        }
        held_rev = rev;
        held = Some(tag);
        if ready && writes.is_finished() {
            break;
        }
        assert!(polls < 20_000, "never saw READY");
    }
    writes.await?;
    eprintln!("FIGURE round-robin polls with ETags over 3 replicas: {polls} polls, none went back");
    Ok(())
}
