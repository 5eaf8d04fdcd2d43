//! The fleet test's phases (see the crate docs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::figure;
use crate::fleet::Fleet;
use crate::harness::procs::descendants;
use crate::harness::{clip, eventually, load};
use crate::sse::{Next, Sse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_nginx_finishes_work_across_replica_and_worker_crashes() -> anyhow::Result<()>
{
    let fleet = Fleet::start().await?;
    figure!(
        "fleet: nginx + 3 serve replicas + 2 video + 2 AI workers; redis {}; storage {}",
        fleet.redis,
        fleet.storage
    );
    let clips = tempfile::tempdir()?;
    let run = async {
        flows_and_polls(&fleet, clips.path()).await?;
        sse_resume(&fleet, clips.path()).await?;
        worker_crash(&fleet, clips.path()).await?;
        ai_worker_crash(&fleet).await
    };
    match run.await {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e:#}\n{}", fleet.logs_tail()),
    }
}

/// Samples of `name` after minus before, per replica.
fn deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// Phase 1: an upload → READY and an import → DONE through the balancer; polls on every replica.
async fn flows_and_polls(fleet: &Fleet, dir: &std::path::Path) -> anyhow::Result<()> {
    let (lb, token) = (&fleet.lb, fleet.token.as_str());
    let before = fleet
        .per_replica("jobpulse_progress_requests_total", &[])
        .await;
    let clip = clip(dir, 6.0, 640, 360).await?;
    let video = lb.upload_video(token, &clip).await?;
    let (xlsx, students) = load::workbook(20, 14)?;
    let job = lb.submit_excel(token, fleet.lecture_id, xlsx).await?;
    let started = Instant::now();
    let (mut polls, mut ready, mut done) = (0u64, None::<Value>, None::<Value>);
    while ready.is_none() || done.is_none() {
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "not READY/DONE within 180 s: {ready:?} {done:?}"
        );
        if ready.is_none() {
            let v = lb.video_progress(token, video).await?;
            polls += 1;
            match v["status"].as_str() {
                Some("READY") => ready = Some(v),
                Some("UPLOADED" | "PROCESSING" | "RETRY_WAIT") => {}
                _ => bail!("video {video}: {v}"),
            }
        }
        if done.is_none() {
            let v = lb.job_progress(token, &job).await?;
            polls += 1;
            match v["status"].as_str() {
                Some("DONE") => done = Some(v),
                Some("PENDING" | "RUNNING" | "RETRYING") => {}
                _ => bail!("job {job}: {v}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.context("DONE")?;
    ensure!(
        done["result"]["created"].as_u64() == Some(students as u64),
        "the import created {} students, not {students}: {done}",
        done["result"]["created"]
    );
    let after = fleet
        .per_replica("jobpulse_progress_requests_total", &[])
        .await;
    let per = deltas(&before, &after);
    figure!(
        "fleet: upload → READY and import of {students} students → DONE in {:.1} s; {polls} polls \
         through nginx, per replica: {per:?}",
        started.elapsed().as_secs_f64()
    );
    ensure!(per.len() == 3, "metrics of {} replicas", per.len());
    for (replica, n) in &per {
        ensure!(*n > 0.0, "no poll reached {replica}: {per:?}");
    }

    // The HLS URL (signed by whichever replica answered) plays through every replica: one
    // media secret, one storage.
    let rec = lb
        .get(&format!("/api/v1/media/videos/{video}/"), Some(token))
        .await?
        .json()?;
    let hls = rec["hls_url"]
        .as_str()
        .context("hls_url on READY")?
        .to_owned();
    let media = ["route=\"/media/s/", "status=\"200\""];
    let before = fleet
        .per_replica("jobpulse_http_requests_total", &media)
        .await;
    for _ in 0..6 {
        let r = lb.send(lb.client.get(&hls)).await?;
        ensure!(
            r.status == 200 && r.text().contains("#EXTM3U"),
            "{hls} answered {}: {}",
            r.status,
            r.text()
        );
    }
    let after = fleet
        .per_replica("jobpulse_http_requests_total", &media)
        .await;
    let per = deltas(&before, &after);
    figure!("fleet: 6 fetches of the signed master playlist through nginx, per replica: {per:?}");
    for (replica, n) in &per {
        ensure!(*n > 0.0, "{replica} served no playlist: {per:?}");
    }
    Ok(())
}

/// The replica holding the one open SSE stream (its gauge counts it once registered).
async fn stream_holder(fleet: &Fleet) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let streams = fleet.per_replica("jobpulse_sse_streams", &[]).await;
        let holders: Vec<_> = streams
            .iter()
            .filter(|(_, n)| **n >= 1.0)
            .map(|(r, _)| r.clone())
            .collect();
        if holders.len() == 1 {
            return Ok(holders[0].clone());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(5),
            "open streams per replica: {streams:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `video` event of video `id` (its body), with the id of the last event read.
async fn next_of(
    sse: &mut Sse,
    id: i64,
    last: &mut Option<String>,
    within: Duration,
) -> anyhow::Result<Option<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sse.next(left).await {
            Next::Event(ev) => {
                if ev.id.is_some() {
                    last.clone_from(&ev.id);
                }
                if ev.event == "video" {
                    let v = ev.json()?;
                    if v["id"].as_i64() == Some(id) {
                        return Ok(Some(v));
                    }
                }
            }
            Next::Closed(why) => bail!("the stream closed: {why}"),
            Next::Timeout => return Ok(None),
        }
    }
}

/// Phase 2: an SSE stream cut by its replica's death; the resume through the balancer gets the
/// terminal state that happened meanwhile.
async fn sse_resume(fleet: &Fleet, dir: &std::path::Path) -> anyhow::Result<()> {
    let (lb, token) = (&fleet.lb, fleet.token.as_str());
    let url = lb.url("/api/v1/progress/stream?all=true");
    let mut sse = Sse::open(&url, token, None).await?;
    let holder = stream_holder(fleet).await?;
    let clip = clip(dir, 20.0, 640, 360).await?;
    let video = lb.upload_video(token, &clip).await?;
    let mut last = None;
    let first = next_of(&mut sse, video, &mut last, Duration::from_secs(30))
        .await?
        .context("no event of the new video on the stream")?;
    ensure!(first["status"] != "READY", "READY before the cut: {first}");
    let last_id = last.clone().context("events without an id")?;

    // The replica serving the stream dies: the balancer's connection to it, and so the
    // client's, is cut.
    fleet.kill(&holder)?;
    let cut = Instant::now();
    let closed = loop {
        match sse.next(Duration::from_secs(20)).await {
            Next::Closed(why) => break why,
            Next::Timeout => bail!("the stream was not cut within 20 s of killing {holder}"),
            Next::Event(ev) => {
                if ev.id.is_some() {
                    last.clone_from(&ev.id);
                }
                ensure!(
                    !(ev.event == "video" && ev.data.contains("\"READY\"")),
                    "READY arrived before the cut"
                );
            }
        }
    };
    let cut_seen = cut.elapsed();
    let last_id = last.unwrap_or(last_id);
    drop(sse);

    // The video finishes while the client is away (polls through the balancer meanwhile).
    eventually(
        "the video ends READY",
        Duration::from_secs(180),
        Duration::from_millis(200),
        || async { Ok(lb.video_progress(token, video).await?["status"] == "READY") },
    )
    .await?;

    // Without Last-Event-ID, a tenant stream carries changes only: the READY that happened
    // meanwhile is not sent (what the resume below gets comes from the position it sends).
    let mut fresh = Sse::open(&url, token, None).await?;
    let mut ignored = None;
    let unresumed = next_of(&mut fresh, video, &mut ignored, Duration::from_secs(2)).await?;
    ensure!(
        unresumed.is_none(),
        "a stream without Last-Event-ID sent an event of the video: {unresumed:?}"
    );
    drop(fresh);

    // Resume through the balancer with the last id seen: another replica answers, and the
    // READY missed meanwhile comes.
    let streams = ["route=\"/api/v1/progress/stream\""];
    let before = fleet
        .per_replica("jobpulse_http_requests_total", &streams)
        .await;
    let resumed = Instant::now();
    let mut sse = Sse::open(&url, token, Some(&last_id)).await?;
    let after = fleet
        .per_replica("jobpulse_http_requests_total", &streams)
        .await;
    let opened = deltas(&before, &after);
    let on: Vec<_> = opened.iter().filter(|(_, n)| **n > 0.0).collect();
    ensure!(on.len() == 1, "stream requests per replica: {opened:?}");
    let new_holder = on[0].0.clone();
    let mut seen = None;
    let got = loop {
        let v = next_of(&mut sse, video, &mut seen, Duration::from_secs(30))
            .await?
            .context("no event of the video after the resume within 30 s")?;
        if v["status"] == "READY" {
            break resumed.elapsed();
        }
    };
    ensure!(
        new_holder != holder,
        "the resumed stream is on {new_holder}, the killed replica"
    );
    figure!(
        "fleet: SSE stream on {holder} cut {:.0} ms after the kill ({closed}); resumed with \
         Last-Event-ID {last_id} on {new_holder}: the missed READY in {:.0} ms",
        cut_seen.as_secs_f64() * 1e3,
        got.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Phase 3: the video worker transcoding is killed; the other one finishes the job.
async fn worker_crash(fleet: &Fleet, dir: &std::path::Path) -> anyhow::Result<()> {
    let (lb, token) = (&fleet.lb, fleet.token.as_str());
    let clip = clip(dir, 30.0, 960, 540).await?;
    let video = lb.upload_video(token, &clip).await?;
    let attempt_seen = std::cell::Cell::new(0);
    eventually(
        "a video worker transcodes",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            let v = lb.video_progress(token, video).await?;
            ensure!(v["status"] != "READY", "READY before the kill: {v}");
            attempt_seen.set(v["attempt"].as_i64().unwrap_or(0));
            Ok(v["encoding_step_index"].as_i64() == Some(4)
                && v["encoding_step_percent"].as_i64().unwrap_or(0) >= 10)
        },
    )
    .await?;
    let attempt = attempt_seen.get();
    let mut busy = Vec::new();
    for w in ["video-1", "video-2"] {
        if !descendants(fleet.pid(w)?).is_empty() {
            busy.push(w);
        }
    }
    ensure!(busy.len() == 1, "video workers running ffmpeg: {busy:?}");
    let (victim, survivor) = match busy[0] {
        "video-1" => ("video-1", "video-2"),
        _ => ("video-2", "video-1"),
    };
    fleet.kill(victim)?;
    let killed = Instant::now();
    let (mut retried, mut ready) = (None, None);
    while ready.is_none() {
        ensure!(
            killed.elapsed() < Duration::from_secs(240),
            "not READY within 240 s of the kill"
        );
        let v = lb.video_progress(token, video).await?;
        let a = v["attempt"].as_i64().unwrap_or(0);
        if retried.is_none() && a > attempt && v["status"] == "PROCESSING" {
            retried = Some(killed.elapsed());
        }
        match v["status"].as_str() {
            Some("READY") => ready = Some((killed.elapsed(), a)),
            Some("PROCESSING" | "RETRY_WAIT") => {}
            _ => bail!("video {video} after the kill: {v}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ready_after, final_attempt) = ready.context("READY")?;
    ensure!(
        final_attempt > attempt,
        "READY at attempt {final_attempt}, the killed one was {attempt}"
    );
    let row: (String, i64) =
        sqlx::query_as("SELECT state, attempt FROM video_jobs WHERE video_id = $1")
            .bind(video)
            .fetch_one(&fleet.pg())
            .await?;
    ensure!(row.0 == "SUCCEEDED", "video_jobs: {row:?}");
    let transcoded = |w: &str| {
        fleet
            .log(w)
            .lines()
            .any(|l| l.contains("video transcoded") && l.contains(&format!("video.id={video}")))
    };
    ensure!(
        transcoded(survivor) && !transcoded(victim),
        "the video was not transcoded by {survivor} alone"
    );
    figure!(
        "fleet: {victim} killed mid-transcode at attempt {attempt}; {survivor} took it over: \
         PROCESSING again (attempt > {attempt}) after {} s, READY at attempt {final_attempt} \
         after {:.1} s (lease 5 s)",
        retried.map_or("?".into(), |d| format!("{:.1}", d.as_secs_f64())),
        ready_after.as_secs_f64()
    );
    Ok(())
}

/// Phase 4: the AI worker running an import is killed while enrolling; the other one finishes
/// it, every student once.
async fn ai_worker_crash(fleet: &Fleet) -> anyhow::Result<()> {
    // A tenant of its own: the generated students' names repeat across workbooks.
    let (tenant, lecture, token) = fleet.tenant("crash")?;
    let (lb, token) = (&fleet.lb, token.as_str());
    let pg = fleet.pg();
    let (xlsx, unique) = load::workbook(1500, 41)?;
    let job = lb.submit_excel(token, lecture, xlsx).await?;
    eventually(
        "an AI worker enrols",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM import_rows WHERE job_id = $1")
                .bind(&job)
                .fetch_one(&pg)
                .await?;
            Ok(n >= 200)
        },
    )
    .await?;
    let (owner, attempt): (Option<String>, i64) =
        sqlx::query_as("SELECT lease_owner, attempt FROM ai_jobs WHERE job_id = $1")
            .bind(&job)
            .fetch_one(&pg)
            .await?;
    // Lease owners are `<hostname>-<pid>`.
    let owner_pid: u32 = owner
        .as_deref()
        .and_then(|o| o.rsplit('-').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("lease owner {owner:?}"))?;
    let victim = ["ai-1", "ai-2"]
        .into_iter()
        .find(|w| fleet.pid(w).is_ok_and(|p| p == owner_pid))
        .with_context(|| format!("no AI worker has pid {owner_pid}"))?;
    let survivor = if victim == "ai-1" { "ai-2" } else { "ai-1" };
    let rows_at_kill: i64 =
        sqlx::query_scalar("SELECT count(*) FROM import_rows WHERE job_id = $1")
            .bind(&job)
            .fetch_one(&pg)
            .await?;
    fleet.kill(victim)?;
    let killed = Instant::now();
    let done = loop {
        ensure!(
            killed.elapsed() < Duration::from_secs(240),
            "the import is not DONE within 240 s of the kill"
        );
        let v = lb.job_progress(token, &job).await?;
        match v["status"].as_str() {
            Some("DONE") => break v,
            Some("PENDING" | "RUNNING" | "RETRYING") => {}
            _ => bail!("job {job} after the kill: {v}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = killed.elapsed();
    let (owner_after, final_attempt): (Option<String>, i64) =
        sqlx::query_as("SELECT lease_owner, attempt FROM ai_jobs WHERE job_id = $1")
            .bind(&job)
            .fetch_one(&pg)
            .await?;
    let students = load::students(&pg).await?.get(&tenant).copied();
    let duplicates = load::duplicate_students(&pg).await?;
    ensure!(
        final_attempt > attempt,
        "DONE at attempt {final_attempt} (killed: {attempt})"
    );
    crate::invariant!(duplicates == 0, "{duplicates} duplicate students");
    crate::invariant!(
        students == Some(unique as i64),
        "{students:?} students enrolled for {unique} rows"
    );
    crate::invariant!(
        done["result"]["created"].as_i64() == Some(unique as i64),
        "result: created {}",
        done["result"]["created"]
    );
    let ended_done = |w: &str| {
        fleet.log(w).lines().any(|l| {
            l.contains("job attempt ended")
                && l.contains(&format!("job.id={job}"))
                && l.contains("outcome=\"done\"")
        })
    };
    ensure!(
        ended_done(survivor) && !ended_done(victim),
        "the import was not finished by {survivor} (lease owner at the end: {owner_after:?})"
    );
    figure!(
        "fleet: {victim} killed after {rows_at_kill} of {unique} rows at attempt {attempt}; \
         {survivor} finished it: DONE at attempt {final_attempt} {:.1} s after the kill, \
         {unique} students once each",
        took.as_secs_f64()
    );
    Ok(())
}
