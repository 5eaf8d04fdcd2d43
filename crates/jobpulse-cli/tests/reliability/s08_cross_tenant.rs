//! Scenario 8 — cross-tenant probing: tenant A reads 10 000 random ids over the data of
//! tenants B and C (videos in the database and the read model, jobs in the read model).
//!
//! The baseline is taken first: A's answer for every probe id while *nothing* exists anywhere.
//! Then B and C get their data at those ids, and every probe must be answered byte-identically
//! to its baseline (status, body and every header except `Date` and `X-Request-Id`, which is
//! fresh and random for every request whatever the id) — on the progress routes, the
//! batch route and the database-backed detail routes. Latencies of foreign-existing and truly
//! unknown ids are compared (mean, p50, p99, Welch's t, Mann–Whitney U). The ids and the probe
//! order come from one seed, printed with the command that replays it (`JOBPULSE_TEST_SEED`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, Percent, State, StepProgress, TaskKey, TenantId,
    VideoId, VideoStatus, Write, steps,
};
use jobpulse_store::StatusStore;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::figure;
use crate::harness::http::{Api, Resp};
use crate::harness::stats::{Summary, mann_whitney, welch};
use crate::harness::{Cluster, eventually, scaled};

/// An answer without the headers that differ on every request (`Date`, `X-Request-Id`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn answer(r: &Resp) -> Answer {
    let mut headers: Vec<(String, Vec<u8>)> = r
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    Answer {
        status: r.status,
        headers,
        body: r.body.to_vec(),
    }
}

/// A probe: one route, one id, and whether the id exists for another tenant.
#[derive(Debug, Clone)]
struct Probe {
    path: String,
    route: &'static str,
    foreign: bool,
}

fn job_id(rng: &mut impl rand::Rng) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let len = rng.random_range(8..=32);
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn probes(videos: &[(i64, bool)], jobs: &[(String, bool)]) -> Vec<Probe> {
    let mut out = Vec::new();
    for (id, foreign) in videos {
        out.push(Probe {
            path: format!("/api/v1/media/videos/{id}/progress/"),
            route: "video progress",
            foreign: *foreign,
        });
        out.push(Probe {
            path: format!("/api/v1/media/videos/{id}/"),
            route: "video detail (db)",
            foreign: *foreign,
        });
        out.push(Probe {
            path: format!("/api/v1/progress/?videos={id}"),
            route: "batch",
            foreign: *foreign,
        });
    }
    for (id, foreign) in jobs {
        out.push(Probe {
            path: format!("/api/v1/jobs/{id}/progress/"),
            route: "job progress",
            foreign: *foreign,
        });
        out.push(Probe {
            path: format!("/api/v1/jobs/{id}/"),
            route: "job detail (db)",
            foreign: *foreign,
        });
        out.push(Probe {
            path: format!("/api/v1/progress/?jobs={id}"),
            route: "batch",
            foreign: *foreign,
        });
    }
    out
}

/// Writes a varied state for a task of B or C: in progress, ready/done, failed.
fn state_for(key: &TaskKey, n: usize) -> (Fence, State) {
    let fence = Fence::new(1, 1, 5 + n as u64).expect("fence");
    let state = match (&key.task, n % 3) {
        (jobpulse_domain::TaskId::Video(_), 0) => {
            let mut s = State::video(VideoStatus::Processing);
            s.percent = Percent::new(40).expect("percent");
            s.step = Some(
                StepProgress::new(4, 7, "transcoding", "인코딩", Percent::new(30).expect("p"))
                    .expect("step"),
            );
            s.remaining_seconds = Some(30);
            s.attempt = Some(1);
            s
        }
        (jobpulse_domain::TaskId::Video(_), 1) => {
            let mut s = State::video(VideoStatus::Ready);
            s.hls_path = Some(
                jobpulse_domain::Text::parse("tenants/2/video/hls/1/master.m3u8", "hls", 1024)
                    .expect("text"),
            );
            s.duration = Some(12);
            s
        }
        (jobpulse_domain::TaskId::Video(_), _) => {
            let mut s = State::video(VideoStatus::Failed);
            s.error =
                Some(jobpulse_domain::Text::parse("broken input", "error", 500).expect("text"));
            s
        }
        (jobpulse_domain::TaskId::Job(_), 0) => {
            let mut s = State::job(
                JobStatus::Running,
                JobType::parse("excel_parsing").expect("type"),
            );
            s.percent = Percent::new(55).expect("percent");
            s.step = Some(
                StepProgress::new(3, 4, "enrolling", "등록", Percent::new(20).expect("p"))
                    .expect("step"),
            );
            let _ = steps::EXCEL_IMPORT;
            s
        }
        (jobpulse_domain::TaskId::Job(_), 1) => {
            let mut s = State::job(
                JobStatus::Done,
                JobType::parse("ppt_generation").expect("type"),
            );
            s.result = Some(
                JobResult::whole(serde_json::json!({"slide_count": 12, "filename": "deck.pptx"}))
                    .expect("result"),
            );
            s
        }
        (jobpulse_domain::TaskId::Job(_), _) => {
            let mut s = State::job(
                JobStatus::Failed,
                JobType::parse("ppt_generation").expect("type"),
            );
            s.error = Some(
                jobpulse_domain::Text::parse("model unavailable", "error", 500).expect("text"),
            );
            s
        }
    };
    (fence, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ids_answer_exactly_like_unknown_ones() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let a = c.tenant("prober").await?;
    let b = c.tenant("victim-b").await?;
    let cc = c.tenant("victim-c").await?;
    let server = c.serve(&[]).await?;
    let api = Api::new(server.port);
    let token_a = c.token(a.tenant_id, "owner");

    // Ids: videos 1..=2N will be created (B, C alternating; the identity sequence is shared),
    // jobs are chosen here; unknown ones exist nowhere.
    let n_videos = 150usize;
    let n_jobs = 150usize;
    // Every random choice (ids, probe order) comes from one printed, replayable seed.
    let seed = jobpulse_testkit::seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut videos: Vec<(i64, bool)> = (1..=2 * n_videos as i64).map(|id| (id, true)).collect();
    for _ in 0..2 * n_videos {
        videos.push((rng.random_range(1_000_000..i64::from(i32::MAX)), false));
    }
    let mut jobs: Vec<(String, bool)> = (0..2 * n_jobs).map(|_| (job_id(&mut rng), true)).collect();
    for _ in 0..2 * n_jobs {
        jobs.push((job_id(&mut rng), false));
    }
    let probes = probes(&videos, &jobs);

    // The baseline: nothing exists yet.
    let mut baseline: HashMap<String, Answer> = HashMap::new();
    for p in &probes {
        let r = api.get(&p.path, Some(&token_a)).await?;
        baseline.insert(p.path.clone(), answer(&r));
    }

    // B's and C's data.
    let store = c.store().await?;
    for (i, _) in videos.iter().filter(|v| v.1).enumerate() {
        let owner = if i.is_multiple_of(2) {
            b.tenant_id
        } else {
            cc.tenant_id
        };
        let made =
            c.db.db
                .create_video(
                    owner,
                    None,
                    "victim",
                    &format!("tenants/{}/video/src/{i}.mp4", owner.get()),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            made.value.id.get() == i as i64 + 1,
            "video ids are not sequential"
        );
    }
    // The relay of `serve` publishes the UPLOADED rows; then most go further.
    let owner_of = |i: usize| {
        if i.is_multiple_of(2) {
            b.tenant_id
        } else {
            cc.tenant_id
        }
    };
    let mut writes = Vec::new();
    for (i, (id, _)) in videos.iter().filter(|v| v.1).enumerate() {
        let key = TaskKey::video(owner_of(i), VideoId::new(*id)?);
        let (fence, state) = state_for(&key, i);
        writes.push(Write::set(key, fence, state)?);
    }
    for (i, (id, _)) in jobs.iter().filter(|j| j.1).enumerate() {
        let key = TaskKey::job(owner_of(i), JobId::parse(id)?);
        let (fence, state) = state_for(&key, i);
        writes.push(Write::set(key, fence, state)?);
    }
    for chunk in writes.chunks(100) {
        store.apply_many(chunk).await?;
    }
    // Control: the owners see their data.
    let token_b = c.token(b.tenant_id, "owner");
    eventually(
        "B sees its videos",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let v = api.video_progress(&token_b, 1).await?;
            let j = api.job_progress(&token_b, &jobs[0].0).await?;
            Ok(v["status"] != "UNKNOWN" && v["status"] != "UPLOADED" && j["status"] != "UNKNOWN")
        },
    )
    .await?;
    let r = api.get("/api/v1/media/videos/1/", Some(&token_b)).await?;
    anyhow::ensure!(
        r.status == 200,
        "B cannot read its own video detail: {}",
        r.status
    );

    // The probe: N requests over random probes, 4 at a time.
    let total = scaled(10_000, 10_000);
    let probes = Arc::new(probes);
    let baseline = Arc::new(baseline);
    let mut tasks = tokio::task::JoinSet::new();
    let clients = 4;
    for client in 0..clients {
        let (api, token, probes, baseline) = (
            api.clone(),
            token_a.clone(),
            probes.clone(),
            baseline.clone(),
        );
        tasks.spawn(async move {
            let mut out: Vec<(&'static str, bool, Duration, Option<String>)> = Vec::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(1 + client as u64));
            for _ in 0..total / clients {
                let p = probes.choose(&mut rng).expect("probes");
                let r = api.get(&p.path, Some(&token)).await?;
                let got = answer(&r);
                let diff = (Some(&got) != baseline.get(&p.path)).then(|| {
                    format!(
                        "{} → {} {}",
                        p.path,
                        got.status,
                        String::from_utf8_lossy(&got.body)
                    )
                });
                out.push((p.route, p.foreign, r.elapsed, diff));
            }
            anyhow::Ok(out)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.extend(r??);
    }
    let mismatches: Vec<&String> = results.iter().filter_map(|r| r.3.as_ref()).collect();
    let foreign_n = results.iter().filter(|r| r.1).count();
    figure!(
        "s08 probes: {} requests ({} foreign-existing, {} unknown), {} answers differing from the baseline",
        results.len(),
        foreign_n,
        results.len() - foreign_n,
        mismatches.len()
    );
    for route in [
        "video progress",
        "job progress",
        "batch",
        "video detail (db)",
        "job detail (db)",
    ] {
        let pick = |foreign: bool| -> Vec<Duration> {
            results
                .iter()
                .filter(|r| r.0 == route && r.1 == foreign)
                .map(|r| r.2)
                .collect()
        };
        let (f, u) = (pick(true), pick(false));
        let (t, df) = welch(&f, &u);
        let (z, p_slower) = mann_whitney(&f, &u);
        figure!("s08 {route}: foreign {}", Summary::of(&f));
        figure!("s08 {route}: unknown {}", Summary::of(&u));
        figure!(
            "s08 {route}: Welch t={t:.2} (df {df:.0}), Mann-Whitney z={z:.2}, P(foreign slower)={p_slower:.3}"
        );
    }
    anyhow::ensure!(
        mismatches.is_empty(),
        "{} answers to foreign ids differ from the unknown answer, e.g.:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A's own tenant is untouched, and nothing in Redis belongs to A.
    let own = TaskKey::video(a.tenant_id, VideoId::new(1)?);
    anyhow::ensure!(store.get(&own).await?.is_none(), "tenant A got a record");
    let _: TenantId = a.tenant_id;
    anyhow::ensure!(!server.proc.log().contains("panicked"), "serve panicked");
    Ok(())
}
