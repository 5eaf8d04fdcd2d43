//! Scenario 1 — stale and zombie writers.
//!
//! A 720p clip is uploaded and transcodes on video worker A (4 s lease). Mid-transcode A is
//! paused (SIGSTOP; its ffmpeg, in a process group of its own, runs on) for longer than its
//! lease; worker B starts, reaps the lease (RETRY_WAIT) and runs attempt 2 to READY. Then 16
//! writers send 1 000 stale writes for the video — half through the worker ingest API, half
//! straight into the read model through jobpulse-store — of every kind: progress and
//! transitions of both attempts at any seq (up to `u32::MAX`), a later attempt's retry and
//! failure, a READY with another playlist, heartbeats and deletes of the same generation. Then
//! A is resumed (SIGCONT): a zombie that believes it still transcodes.
//!
//! Pass: 0 of the stale writes applied — each refused as stale: 409 from the ingest API,
//! `Stale` from the store (another refusal, such as 401 or 404, would not test fencing); after
//! A resumes, the read model's fence and revision, the database's video and job rows and the
//! HLS files are exactly as at READY (0 zombie writes accepted); A stops its attempt (lease
//! lost) and its ffmpeg is gone; pollers never saw a terminal state regress, nor a percent go
//! down within an attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jobpulse_domain::{
    Fence, Outcome, Percent, State, StepProgress, TaskKey, Text, VideoId, VideoStatus, Write,
};
use jobpulse_store::StatusStore;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use sqlx::Row;

use crate::figure;
use crate::harness::load::{Pollers, Task, Tenant};
use crate::harness::procs::{descendants, is_running};
use crate::harness::{Cluster, clip, eventually, files_under};

/// The database's view of a video: its row and its jobs' rows, as text.
async fn db_rows(pg: &sqlx::PgPool, id: i64) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let v = sqlx::query(
        "SELECT status, attempt, generation, fence_attempt, fence_seq, hls_path, duration_secs, updated_at \
         FROM videos WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pg)
    .await?;
    out.push(format!(
        "video {} a{} g{} f{}.{} {:?} {:?} {}",
        v.try_get::<String, _>("status")?,
        v.try_get::<i64, _>("attempt")?,
        v.try_get::<i64, _>("generation")?,
        v.try_get::<i64, _>("fence_attempt")?,
        v.try_get::<i64, _>("fence_seq")?,
        v.try_get::<Option<String>, _>("hls_path")?,
        v.try_get::<Option<i64>, _>("duration_secs")?,
        v.try_get::<i64, _>("updated_at")?,
    ));
    for j in sqlx::query("SELECT id, state, attempt, lease_owner, updated_at FROM video_jobs WHERE video_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(pg)
        .await?
    {
        out.push(format!(
            "job {} {} a{} {:?} {}",
            j.try_get::<i64, _>("id")?,
            j.try_get::<String, _>("state")?,
            j.try_get::<i64, _>("attempt")?,
            j.try_get::<Option<String>, _>("lease_owner")?,
            j.try_get::<i64, _>("updated_at")?,
        ));
    }
    Ok(out)
}

/// Every HLS file of the video with its size and modification time.
fn hls_files(dir: &std::path::Path) -> BTreeMap<String, (u64, SystemTime)> {
    files_under(dir)
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p.display().to_string(), (m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// One stale write: a JSON body for the ingest API, or a write for the store.
fn stale(rng: &mut StdRng, key: &TaskKey) -> (String, serde_json::Value, Write) {
    let attempt = rng.random_range(0..=3u32);
    let seq = match rng.random_range(0..4) {
        0 => rng.random_range(0..10),
        1 => rng.random_range(10..10_000),
        2 => u64::from(u32::MAX),
        _ => rng.random_range(0..3),
    };
    let fence = Fence {
        generation: 1,
        attempt,
        seq,
    };
    let fence_json = json!({"generation": 1, "attempt": attempt, "seq": seq});
    let percent = rng.random_range(0..=99u8);
    let mut processing = State::video(VideoStatus::Processing);
    processing.percent = Percent::new(percent).expect("percent");
    processing.step = Some(
        StepProgress::new(
            4,
            7,
            "transcoding",
            "인코딩",
            Percent::new(percent).expect("p"),
        )
        .expect("step"),
    );
    match rng.random_range(0..7) {
        0 | 1 => (
            "progress".into(),
            json!({"fence": fence_json, "status": "PROCESSING", "percent": percent,
                   "step": {"index": 4, "total": 7, "name": "transcoding", "display": "인코딩", "percent": percent}}),
            Write::set(key.clone(), fence, processing).expect("write"),
        ),
        2 => (
            "transition".into(),
            json!({"fence": fence_json, "status": "RETRY_WAIT", "attempt": attempt}),
            Write::set(key.clone(), fence, State::video(VideoStatus::RetryWait)).expect("write"),
        ),
        3 => {
            let mut failed = State::video(VideoStatus::Failed);
            failed.error = Some(Text::parse("zombie says no", "error", 500).expect("text"));
            (
                "transition".into(),
                json!({"fence": fence_json, "status": "FAILED", "error": "zombie says no"}),
                Write::set(key.clone(), fence, failed).expect("write"),
            )
        }
        4 => {
            // A playlist of the writer's own tenant, so only ownership and fencing refuse it.
            let other = format!("tenants/{}/video/hls/999/master.m3u8", key.tenant);
            let mut ready = State::video(VideoStatus::Ready);
            ready.hls_path = Some(Text::parse(&other, "hls", 1024).expect("text"));
            ready.duration = Some(1);
            (
                "transition".into(),
                json!({"fence": fence_json, "status": "READY", "hls_path": other, "duration": 1}),
                Write::set(key.clone(), fence, ready).expect("write"),
            )
        }
        5 => (
            "heartbeat".into(),
            json!({"fence": fence_json}),
            Write::heartbeat(key.clone(), fence),
        ),
        _ => (
            "transition".into(),
            json!({"fence": fence_json, "status": "UPLOADED"}),
            Write::delete(key.clone(), fence),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_zombie_writers_change_nothing() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("zombie").await?;
    let token = c.token(seed.tenant_id, "staff");
    let worker_token = c.worker_token(seed.tenant_id);
    let tenants = vec![Tenant {
        seed,
        token: token.clone(),
    }];
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let pg = c.pg();
    let clip = clip(c.dir.path(), 12.0, 1280, 720).await?;
    let a = c.worker("video", &["--lease", "4s"]).await?;
    let pollers = Pollers::start(&api, &tenants, 3, Duration::from_millis(15));
    let id = api.upload_video(&token, &clip).await?;
    pollers.add(0, Task::Video(id)).await;
    let key = TaskKey::video(seed.tenant_id, VideoId::new(id)?);
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
    let a_ffmpeg = descendants(a.pid());
    anyhow::ensure!(
        !a_ffmpeg.is_empty(),
        "A runs no ffmpeg at step 4: its orphan could not be checked"
    );
    a.stop()?;
    let paused = Instant::now();
    // Past the lease, then a second worker.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = c.worker("video", &["--lease", "4s"]).await?;
    eventually(
        "B finishes attempt 2",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async { Ok(api.video_progress(&token, id).await?["status"] == "READY") },
    )
    .await?;
    let store = Arc::new(c.store().await?);
    let at_ready = store
        .get(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no record at READY"))?;
    let db_at_ready = db_rows(&pg, id).await?;
    let hls_dir = c
        .data_dir
        .join("media")
        .join(format!("tenants/{}/video/hls/{id}", seed.tenant_id.get()));
    let hls_at_ready = hls_files(&hls_dir);
    anyhow::ensure!(
        !hls_at_ready.is_empty(),
        "no HLS files under {}",
        hls_dir.display()
    );

    // 16 stale writers, 1 000 writes.
    let total = 1000usize;
    let writers = 16usize;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (api, store, key, token) = (
            api.clone(),
            store.clone(),
            key.clone(),
            worker_token.clone(),
        );
        let n = total / writers + usize::from(w < total % writers);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut applied = Vec::new();
            let mut answers: BTreeMap<String, u64> = BTreeMap::new();
            for i in 0..n {
                let (action, body, write) = stale(&mut rng, &key);
                if i % 2 == 0 {
                    let path = format!("/internal/v1/videos/{id}/{action}");
                    let r = api.post_json(&path, &token, &body).await?;
                    *answers.entry(format!("ingest {}", r.status)).or_default() += 1;
                    // The video is our database's: the ingest API refuses every write to it
                    // (422, `rejected`, the ownership reason) before fencing — not for another
                    // reason (401, 404, 400), which would say nothing about it.
                    if r.status != 422 || !r.text().contains("belongs to jobpulse's database") {
                        applied.push(format!("ingest {action} {body} → {}", r.status));
                    }
                } else {
                    let o = store.apply(&write).await?;
                    let name = match o {
                        Outcome::Applied { .. } => "applied",
                        Outcome::Stale { .. } => "stale",
                        Outcome::Rejected { .. } => "rejected",
                    };
                    *answers.entry(format!("store {name}")).or_default() += 1;
                    if !matches!(o, Outcome::Stale { .. }) {
                        applied.push(format!("store {write:?} → {o:?}"));
                    }
                }
            }
            anyhow::Ok((applied, answers))
        });
    }
    let mut applied = Vec::new();
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (a, n) = r??;
        applied.extend(a);
        for (k, v) in n {
            *answers.entry(k).or_default() += v;
        }
    }
    let after_stale = store.get(&key).await?;

    // The zombie wakes.
    a.cont()?;
    let resumed = Instant::now();
    let mut a = a;
    let stopped = a
        .wait_for_log("transcode attempt ended", Duration::from_secs(30))
        .await
        .map(|_| resumed.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_zombie = store.get(&key).await?;
    let db_after = db_rows(&pg, id).await?;
    let hls_after = hls_files(&hls_dir);
    let seen = pollers.stop().await;
    let ffmpeg_left = a_ffmpeg.iter().filter(|p| is_running(**p)).count();
    let zombie_log: Vec<String> = a
        .log_lines("video_attempt")
        .into_iter()
        .filter(|l| l.contains("lease") || l.contains("ended") || l.contains("stale"))
        .collect();

    figure!(
        "s01 stale writes: {total} from {writers} writers, {} not refused as stale; answers {answers:?}",
        applied.len()
    );
    figure!(
        "s01 zombie: paused {:?}, B took over and finished; A resumed and stopped its attempt {:?} later",
        resumed - paused,
        stopped.as_ref().ok()
    );
    figure!(
        "s01 read model at READY {}.{}.{} rev {}; after the stale writes {:?}; after the zombie {:?}",
        at_ready.fence.generation,
        at_ready.fence.attempt,
        at_ready.fence.seq,
        at_ready.rev,
        after_stale.as_ref().map(|s| (s.fence, s.rev)),
        after_zombie.as_ref().map(|s| (s.fence, s.rev))
    );
    figure!(
        "s01 database unchanged: {}; HLS files unchanged: {} ({} files); A's ffmpeg left running: {ffmpeg_left}",
        db_after == db_at_ready,
        hls_after == hls_at_ready,
        hls_after.len()
    );
    figure!(
        "s01 pollers: {} polls, statuses {:?}, {} terminal regressions, {} backwards percents",
        seen.codes.values().sum::<u64>(),
        seen.history.get(&Task::Video(id)),
        seen.regressions.len(),
        seen.backwards.len()
    );
    for l in &zombie_log {
        eprintln!("  A: {l}");
    }

    let refused: u64 = answers.values().sum();
    crate::invariant!(
        applied.is_empty() && refused == total as u64,
        "{} of {refused} stale writes not refused as stale (409 / Stale):\n{}",
        applied.len(),
        applied.join("\n")
    );
    anyhow::ensure!(
        after_stale.as_ref() == Some(&at_ready),
        "the stale writes changed the record: {after_stale:?}"
    );
    anyhow::ensure!(
        after_zombie.as_ref() == Some(&at_ready),
        "the zombie changed the record: {after_zombie:?}"
    );
    anyhow::ensure!(
        db_after == db_at_ready,
        "the database changed:\n{db_at_ready:?}\n{db_after:?}"
    );
    anyhow::ensure!(hls_after == hls_at_ready, "the HLS files changed");
    stopped?;
    anyhow::ensure!(
        a.log().contains("outcome=\"lost\""),
        "A's attempt did not end as lost:\n{}",
        a.log_tail(20)
    );
    anyhow::ensure!(ffmpeg_left == 0, "A's ffmpeg still runs");
    seen.invariants(true)?;
    let history = seen
        .history
        .get(&Task::Video(id))
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        history.last().map(String::as_str) == Some("READY"),
        "pollers last saw {history:?}"
    );
    drop(b);
    Ok(())
}
