//! Scenario 12 — issue 15 finding 10: a worker token writing tasks our database owns.
//!
//! The finding: a tenant's worker token sent the ingest API a `transition` for a video our
//! database owns (generation 9, READY, another tenant's `hls_path`); it was applied and the read
//! model kept it. Here, against a real `serve` (PostgreSQL, its own redis-server): the same
//! write is refused (422) for its path, then — with a path of its own tenant — for ownership,
//! leaving the record untouched; an external task cannot point at another tenant's files; and
//! when the write wins a race to a record the read model does not hold (deleted from Redis
//! here, as after an expiry), read-repair takes the task back from the database.

use std::time::{Duration, Instant};

use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{TaskKey, VideoId};
use jobpulse_store::StatusStore;
use serde_json::json;

use crate::figure;
use crate::harness::{Cluster, clip, eventually};

fn ready(hls_path: &str) -> serde_json::Value {
    json!({"fence": {"generation": 9, "attempt": 1, "seq": 1}, "status": "READY",
           "hls_path": hls_path, "duration": 6})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_tokens_cannot_write_database_owned_tasks() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let a = c.tenant("owner-a").await?;
    let b = c.tenant("owner-b").await?;
    let staff = c.token(a.tenant_id, "staff");
    let worker = c.worker_token(a.tenant_id);
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let file = clip(c.dir.path(), 2.0, 320, 240).await?;
    // No video worker: the upload stays UPLOADED, a record our database owns (via the outbox).
    let id = api.upload_video(&staff, &file).await?;
    let key = TaskKey::video(a.tenant_id, VideoId::new(id)?);
    let store = c.store().await?;
    eventually(
        "the upload is in the read model",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { Ok(store.get(&key).await?.is_some()) },
    )
    .await?;
    let before = store
        .get(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no record"))?;
    let path = format!("/internal/v1/videos/{id}/transition");
    let foreign = format!("tenants/{}/video/hls/1/master.m3u8", b.tenant_id);
    let own = format!("tenants/{}/video/hls/{id}/master.m3u8", a.tenant_id);

    // The finding's write: another tenant's playlist.
    let r = api.post_json(&path, &worker, &ready(&foreign)).await?;
    anyhow::ensure!(
        r.status == 422 && r.text().contains("hls_path must be a storage key under"),
        "another tenant's hls_path: {} {}",
        r.status,
        r.text()
    );
    // The same with a path of its own: refused for ownership, whatever the fence.
    for (action, body) in [
        ("transition", ready(&own)),
        (
            "progress",
            json!({"fence": {"generation": 99, "attempt": 99, "seq": 99}, "status": "PROCESSING", "percent": 50}),
        ),
        (
            "heartbeat",
            json!({"fence": {"generation": 1, "attempt": 0, "seq": 0}}),
        ),
    ] {
        let r = api
            .post_json(
                &format!("/internal/v1/videos/{id}/{action}"),
                &worker,
                &body,
            )
            .await?;
        anyhow::ensure!(
            r.status == 422 && r.text().contains("belongs to jobpulse's database"),
            "{action} on a database-owned video: {} {}",
            r.status,
            r.text()
        );
    }
    let after = store
        .get(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("record gone"))?;
    anyhow::ensure!(
        (after.fence, after.rev, &after.state) == (before.fence, before.rev, &before.state),
        "INVARIANT VIOLATED: the refused writes changed the record: {before:?} → {after:?}"
    );
    anyhow::ensure!(
        !server
            .proc
            .log_lines("ingest write refused: the task belongs to our database")
            .is_empty(),
        "no log line for the refusal:\n{}",
        server.proc.log_tail(20)
    );

    // An external task (an id our database does not have) may not point at another tenant.
    let external = format!("/internal/v1/videos/{}/transition", id + 100_000);
    let r = api.post_json(&external, &worker, &ready(&foreign)).await?;
    anyhow::ensure!(r.status == 422, "external, foreign path: {}", r.status);
    let mine = format!("tenants/{}/ext/master.m3u8", a.tenant_id);
    let r = api.post_json(&external, &worker, &ready(&mine)).await?;
    anyhow::ensure!(
        r.status == 200,
        "external, own path: {} {}",
        r.status,
        r.text()
    );

    // The race: the read model lost the record (an expiry; deleted here). The forged READY
    // creates it — and read-repair gives the task back to the database.
    let record = KeySpace::new(&c.prefix)?.record(&key);
    let mut conn = redis::Client::open(c.redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let deleted: i64 = redis::cmd("DEL")
        .arg(&record)
        .query_async(&mut conn)
        .await?;
    anyhow::ensure!(deleted == 1, "the record {record} was not there to delete");
    let r = api.post_json(&path, &worker, &ready(&own)).await?;
    anyhow::ensure!(
        r.status == 200,
        "forged write on a missing record: {}",
        r.status
    );
    let forged_at = Instant::now();
    eventually(
        "read-repair takes the video back",
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async {
            let v = api.video_progress(&staff, id).await?;
            Ok(v["status"] == "UPLOADED")
        },
    )
    .await?;
    let repaired_in = forged_at.elapsed();
    let now = store
        .get(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("record gone after repair"))?;
    anyhow::ensure!(
        now.fence == before.fence && now.rev > before.rev,
        "INVARIANT VIOLATED: repaired record {now:?}, before {before:?}"
    );
    // And it is the database's again: the forged write's successor is refused.
    let r = api.post_json(&path, &worker, &ready(&own)).await?;
    anyhow::ensure!(r.status == 422, "after the repair: {}", r.status);
    figure!(
        "s12 ingest owner: 4 writes to a database-owned video refused (422), record unchanged; \
         a forged READY on a missing record taken back by read-repair in {} ms",
        repaired_in.as_millis()
    );
    Ok(())
}
