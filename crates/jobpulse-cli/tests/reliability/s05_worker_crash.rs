//! Scenario 5 — a worker killed (SIGKILL) mid-transcode and mid-import.
//!
//! Video: a 45 s 720p clip transcodes on worker A (3 s lease); A is killed at step 4. Its ffmpeg runs
//! in a process group of its own and survives it: measured. A second worker B starts a little
//! after the lease ran out. Import: a 1 500-student sheet imports on AI worker A (3 s lease);
//! A is killed while enrolling; AI worker B starts. B runs with a 30 s lease in both halves.
//!
//! Pass: the task is reclaimed after the lease — the retry is visible to a poller
//! (RETRY_WAIT / RETRYING) — and ends in the right final state (READY at attempt 2; DONE with
//! every student once and the result counting every row once); no orphaned ffmpeg once B runs
//! (B kills what the dead worker left running); no orphaned temp files (the dead worker's work
//! directory is gone, and B's own is empty at the end; no spool files).

use std::time::{Duration, Instant};

use sqlx::Row;

use crate::figure;
use crate::harness::load::{self, Pollers, Task, Tenant};
use crate::harness::procs::{Proc, descendants, is_running};
use crate::harness::{Cluster, clip, eventually, files_under};

/// The job ended at `attempt`: B ran exactly one attempt — the last — to `done`; every earlier
/// one was A's: the one the kill cut short (no end logged), and before it any A gave up because
/// it could not confirm its 3 s lease in time (ended `lost`; a loaded machine's database does
/// that — it took a run to attempt 5). Any other way of getting there fails.
fn attempts_explained(
    a: &Proc,
    b: &Proc,
    ended: &str,
    done: &str,
    attempt: i64,
) -> anyhow::Result<()> {
    let (a_ended, b_ended) = (a.log_lines(ended), b.log_lines(ended));
    let last = format!("job.attempt={attempt}");
    let done = format!("outcome=\"{done}\"");
    anyhow::ensure!(
        attempt >= 2
            && b_ended.len() == 1
            && b_ended[0].contains(&last)
            && b_ended[0].contains(&done)
            && a_ended.len() as i64 == attempt - 2
            && a_ended.iter().all(|l| l.contains("outcome=\"lost\"")),
        "ended at attempt {attempt}; A's attempts that ended: {a_ended:?}; B's: {b_ended:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_transcode() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("crash").await?;
    let token = c.token(seed.tenant_id, "staff");
    let tenants = vec![Tenant {
        seed,
        token: token.clone(),
    }];
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    // Long enough that A's orphaned ffmpeg is still transcoding when B starts 4 s after the
    // kill, even on a quiet machine (a 20 s clip finished first there, so nothing was measured).
    let clip = clip(c.dir.path(), 45.0, 1280, 720).await?;
    let mut a = c.worker("video", &["--lease", "3s"]).await?;
    let a_dir = c.work_dir_of(a.pid());
    let pollers = Pollers::start(&api, &tenants, 2, Duration::from_millis(20));
    let id = api.upload_video(&token, &clip).await?;
    pollers.add(0, Task::Video(id)).await;
    eventually(
        "A transcodes",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let v = api.video_progress(&token, id).await?;
            Ok(v["encoding_step_index"].as_i64() == Some(4)
                && v["encoding_step_percent"].as_i64().unwrap_or(0) >= 10)
        },
    )
    .await?;
    let children: Vec<u32> = descendants(a.pid());
    anyhow::ensure!(!children.is_empty(), "A runs no ffmpeg");
    a.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let orphans_alive = children.iter().filter(|p| is_running(**p)).count();
    let a_files_before_b = files_under(&a_dir).len();

    // B's own lease is not what this scenario is about (A's is): long enough that a slow
    // database cannot make B give the job up too.
    let b = c.worker("video", &["--lease", "30s"]).await?;
    let b_started = killed.elapsed();
    let orphans_gone = eventually(
        "the dead worker's ffmpeg is gone",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { Ok(children.iter().all(|p| !is_running(*p))) },
    )
    .await
    .map(|_| killed.elapsed());
    let ready = eventually(
        "the video ends READY",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async { Ok(api.video_progress(&token, id).await?["status"] == "READY") },
    )
    .await;
    let seen = pollers.stop().await;
    let v = api.video_progress(&token, id).await?;
    let job = sqlx::query("SELECT state, attempt FROM video_jobs WHERE video_id = $1")
        .bind(id)
        .fetch_one(&c.pg())
        .await?;
    let (state, attempt): (String, i64) = (job.try_get("state")?, job.try_get("attempt")?);
    let history = seen
        .history
        .get(&Task::Video(id))
        .cloned()
        .unwrap_or_default();
    let b_dir = c.work_dir_of(b.pid());
    let b_left = files_under(&b_dir);

    figure!(
        "s05 video: A killed at step 4; its ffmpeg {} {:?} after the kill ({} of {} processes); A's directory held {a_files_before_b} files",
        if orphans_alive > 0 {
            "still ran"
        } else {
            "was gone"
        },
        Duration::from_secs(4),
        orphans_alive,
        children.len()
    );
    figure!(
        "s05 video: B started {b_started:?} after the kill; the orphaned ffmpeg gone {:?} after the kill; A's directory exists afterwards: {}",
        orphans_gone.as_ref().ok(),
        a_dir.exists()
    );
    figure!(
        "s05 video: statuses seen {history:?}; final {} attempt {}, job {state} attempt {attempt}; files left in B's directory {}",
        v["status"],
        v["attempt"],
        b_left.len()
    );

    ready?;
    let orphans_gone = orphans_gone?;
    anyhow::ensure!(
        orphans_alive > 0,
        "A's ffmpeg had ended by itself before B started: nothing was measured"
    );
    // B kills what A left running before it starts working (not: ffmpeg happens to die later).
    anyhow::ensure!(
        orphans_gone <= b_started + Duration::from_secs(1),
        "the orphaned ffmpeg lived until {orphans_gone:?}, B started at {b_started:?}"
    );
    anyhow::ensure!(
        history.iter().any(|s| s == "RETRY_WAIT"),
        "no poller saw RETRY_WAIT: {history:?}"
    );
    anyhow::ensure!(state == "SUCCEEDED", "job {state} at attempt {attempt}");
    attempts_explained(&a, &b, "transcode attempt ended", "ready", attempt)?;
    anyhow::ensure!(
        !a_dir.exists(),
        "the dead worker's directory is left: {:?}",
        files_under(&a_dir)
    );
    anyhow::ensure!(b_left.is_empty(), "B left files: {b_left:?}");
    seen.invariants(true)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_import() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("crash").await?;
    let token = c.token(seed.tenant_id, "staff");
    let tenants = vec![Tenant {
        seed,
        token: token.clone(),
    }];
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let pg = c.pg();
    let mut a = c
        .worker("ai", &["--concurrency", "1", "--lease", "3s"])
        .await?;
    let pollers = Pollers::start(&api, &tenants, 2, Duration::from_millis(20));
    let (xlsx, unique) = load::workbook(1500, 7)?;
    let id = api.submit_excel(&token, seed.lecture_id, xlsx).await?;
    pollers.add(0, Task::Job(id.clone())).await;
    eventually(
        "A enrols",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM import_rows WHERE job_id = $1")
                .bind(&id)
                .fetch_one(&pg)
                .await?;
            Ok(n >= 200)
        },
    )
    .await?;
    a.kill();
    let rows_at_kill: i64 =
        sqlx::query_scalar("SELECT count(*) FROM import_rows WHERE job_id = $1")
            .bind(&id)
            .fetch_one(&pg)
            .await?;
    let killed = Instant::now();
    // B's own lease is not what this scenario is about (A's is): long enough that a slow
    // database cannot make B give the job up as well.
    let b = c
        .worker("ai", &["--concurrency", "1", "--lease", "30s"])
        .await?;
    let done = eventually(
        "the import ends DONE",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async { Ok(api.job_progress(&token, &id).await?["status"] == "DONE") },
    )
    .await;
    let took = killed.elapsed();
    let seen = pollers.stop().await;
    let history = seen
        .history
        .get(&Task::Job(id.clone()))
        .cloned()
        .unwrap_or_default();
    let result = api
        .get(&format!("/api/v1/jobs/{id}/result/"), Some(&token))
        .await?;
    let result = result.json()?;
    let students = load::students(&pg).await?;
    let duplicates = load::duplicate_students(&pg).await?;
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM ai_jobs WHERE job_id = $1")
        .bind(&id)
        .fetch_one(&pg)
        .await?;
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM import_rows WHERE job_id = $1")
        .bind(&id)
        .fetch_one(&pg)
        .await?;
    let spool = files_under(&c.data_dir.join("spool"));

    figure!(
        "s05 import: A killed after {rows_at_kill} of {unique} rows; DONE {took:?} later at attempt {attempt}; statuses seen {history:?}"
    );
    // What A and B did with the job (claims, attempts, lost leases, failed heartbeats, reaps).
    for (who, p) in [("A", &a), ("B", &b)] {
        for line in p.log().lines().filter(|l| {
            [
                "job claimed",
                "job attempt",
                "lease",
                "heartbeat",
                "reaped",
                "failed",
            ]
            .iter()
            .any(|w| l.contains(w))
        }) {
            figure!("s05 import: {who}: {line}");
        }
    }
    figure!(
        "s05 import: students {students:?}, duplicates {duplicates}, ledger rows {ledger}, result created {} duplicates {}",
        result["created"],
        result["duplicates"].as_array().map(Vec::len).unwrap_or(0)
    );

    done?;
    anyhow::ensure!(
        history.iter().any(|s| s == "RETRYING"),
        "no poller saw RETRYING: {history:?}"
    );
    attempts_explained(&a, &b, "job attempt ended", "done", attempt)?;
    crate::invariant!(duplicates == 0, "{duplicates} duplicate students");
    crate::invariant!(
        students.get(&seed.tenant_id.get()).copied() == Some(unique as i64),
        "students {students:?}, expected {unique}"
    );
    crate::invariant!(
        ledger == unique as i64,
        "{ledger} ledger rows for {unique} students"
    );
    crate::invariant!(
        result["created"].as_i64() == Some(unique as i64),
        "result: {}",
        result["created"]
    );
    anyhow::ensure!(spool.is_empty(), "spool files left: {spool:?}");
    seen.invariants(true)?;
    Ok(())
}
