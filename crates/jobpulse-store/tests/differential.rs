//! The Redis store against the reference model (the in-process store, which calls
//! `jobpulse_domain::decide` directly): the same writes must give the same observable results.
//!
//! These catch a Lua transcription that forgets terminal absorption, orders attempts wrongly,
//! does not clamp the percent or lets an external writer touch a database-owned record (each
//! was tried by breaking the script on purpose).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::TestSpace;
use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, Outcome, Percent, State, StepProgress, TaskId,
    TaskKey, TenantId, Text, VideoId, VideoStatus, Write, WriteKind,
};
use jobpulse_store::{MemoryStore, Snapshot, StatusStore, StoreConfig};
use proptest::prelude::*;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The tasks writes go to: the same ids in two tenants, videos and jobs.
fn tasks() -> Vec<TaskKey> {
    let mut out = Vec::new();
    for t in [1, 2] {
        let tenant = TenantId::new(t).expect("valid");
        out.push(TaskKey::video(tenant, VideoId::new(1).expect("valid")));
        out.push(TaskKey::video(tenant, VideoId::new(2).expect("valid")));
        out.push(TaskKey::job(tenant, JobId::parse("ja").expect("valid")));
    }
    out
}

fn pct(p: u8) -> Percent {
    Percent::new(p).expect("valid percent")
}

fn text(s: &str) -> Text {
    Text::parse(s, "text", 100).expect("valid text")
}

/// A valid state of the task's kind: `which` picks the status, `p` the percent.
fn state_for(task: &TaskId, which: u8, p: u8) -> State {
    match task {
        TaskId::Video(_) => {
            let p = p.min(99);
            match which % 5 {
                0 => State::video(VideoStatus::Uploaded),
                1 => {
                    let mut s = State::video(VideoStatus::Processing);
                    s.percent = pct(p);
                    s.step = StepProgress::new(4, 7, "transcoding", "인코딩", pct(p)).ok();
                    s.remaining_seconds = Some(u32::from(p) * 3);
                    s
                }
                2 => {
                    let mut s = State::video(VideoStatus::RetryWait);
                    s.percent = pct(p);
                    s.attempt = Some(2);
                    s
                }
                3 => {
                    let mut s = State::video(VideoStatus::Ready);
                    s.hls_path = Some(text("tenants/1/video/hls/1/master.m3u8"));
                    s.duration = Some(61);
                    s
                }
                _ => {
                    let mut s = State::video(VideoStatus::Failed);
                    s.percent = pct(p);
                    s.error = Some(text("ffmpeg exited with status 1"));
                    s
                }
            }
        }
        TaskId::Job(_) => {
            let jt = JobType::parse("excel_parsing").expect("valid");
            let p = p.min(100);
            let status = JobStatus::ALL[usize::from(which) % JobStatus::ALL.len()];
            let mut s = State::job(status, jt);
            match status {
                JobStatus::Done => {
                    s.result = JobResult::whole(serde_json::json!({"created": p})).ok();
                }
                JobStatus::Running => {
                    s.percent = pct(p);
                    s.step = StepProgress::new(3, 4, "enrolling", "등록", pct(p)).ok();
                }
                JobStatus::Pending | JobStatus::Retrying => s.percent = pct(p),
                _ => {
                    s.percent = pct(p);
                    s.error = Some(text("bad sheet"));
                }
            }
            s
        }
    }
}

#[derive(Debug, Clone)]
struct Spec {
    kind: u8,
    task: usize,
    g: u32,
    a: u32,
    s: u64,
    status: u8,
    percent: u8,
    /// Repeat an earlier write instead (a duplicate delivery).
    repeat: Option<usize>,
    /// Written by an external system (the ingest API) rather than by our database.
    external: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..12,
        0usize..6,
        1u32..=3,
        0u32..=3,
        0u64..=6,
        0u8..8,
        0u8..=100,
        proptest::option::weighted(0.1, any::<usize>()),
        proptest::bool::weighted(0.25),
    )
        .prop_map(
            |(kind, task, g, a, s, status, percent, repeat, external)| Spec {
                kind,
                task,
                g,
                a,
                s,
                status,
                percent,
                repeat,
                external,
            },
        )
}

fn build(specs: &[Spec]) -> Vec<Write> {
    let tasks = tasks();
    let mut out: Vec<Write> = Vec::with_capacity(specs.len());
    for sp in specs {
        if let Some(i) = sp.repeat
            && !out.is_empty()
        {
            let again = out[i % out.len()].clone();
            out.push(again);
            continue;
        }
        let key = tasks[sp.task].clone();
        let fence = Fence::new(sp.g, sp.a, sp.s).expect("valid fence");
        let w = match sp.kind {
            0 | 1 => Write::heartbeat(key, fence),
            2 => Write::delete(key, fence),
            _ => {
                let state = state_for(&key.task, sp.status, sp.percent);
                Write::set(key, fence, state).expect("valid state")
            }
        };
        out.push(if sp.external { w.external() } else { w });
    }
    out
}

fn same_kind(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Outcome::Applied { .. }, Outcome::Applied { .. }) => true,
        (Outcome::Stale { current: x, .. }, Outcome::Stale { current: y, .. }) => x == y,
        (Outcome::Rejected { reason: x }, Outcome::Rejected { reason: y }) => x == y,
        _ => false,
    }
}

/// Revisions are time-based and differ between stores; what must hold for each store on its
/// own: an applied change grows the record's revision, a heartbeat or a stale answer reports
/// the current one.
fn check_rev(
    last: &mut HashMap<TaskKey, u64>,
    w: &Write,
    out: &Outcome,
) -> Result<(), TestCaseError> {
    match (out, &w.kind) {
        (Outcome::Applied { rev }, WriteKind::Heartbeat) | (Outcome::Stale { rev, .. }, _) => {
            prop_assert_eq!(Some(rev), last.get(&w.key), "reports the current revision")
        }
        (Outcome::Applied { rev }, _) => {
            if let Some(prev) = last.get(&w.key) {
                prop_assert!(rev > prev, "revision {} after {}", rev, prev);
            }
            last.insert(w.key.clone(), *rev);
        }
        (Outcome::Rejected { .. }, _) => {}
    }
    Ok(())
}

/// State and fence; the revision is the store's own.
fn visible(s: Option<Snapshot>) -> Option<(Fence, State)> {
    s.map(|s| (s.fence, s.state))
}

async fn run_case(space: TestSpace, writes: Vec<Write>, batch: usize) -> Result<(), TestCaseError> {
    let redis = space.store(StoreConfig::default()).await;
    let memory = MemoryStore::default();
    let (mut last_r, mut last_m) = (HashMap::new(), HashMap::new());
    for chunk in writes.chunks(batch) {
        let (out_r, out_m) = if chunk.len() == 1 {
            (
                vec![redis.apply(&chunk[0]).await.expect("Redis answers")],
                vec![memory.apply(&chunk[0]).await.expect("memory answers")],
            )
        } else {
            (
                redis.apply_many(chunk).await.expect("Redis answers"),
                memory.apply_many(chunk).await.expect("memory answers"),
            )
        };
        prop_assert_eq!(out_r.len(), chunk.len());
        for ((w, r), m) in chunk.iter().zip(&out_r).zip(&out_m) {
            prop_assert!(same_kind(r, m), "{:?}: redis {:?}, memory {:?}", w, r, m);
            check_rev(&mut last_r, w, r)?;
            check_rev(&mut last_m, w, m)?;
            let (got_r, got_m) = (
                redis.get(&w.key).await.expect("Redis answers"),
                memory.get(&w.key).await.expect("memory answers"),
            );
            prop_assert_eq!(visible(got_r), visible(got_m), "after {:?}", w);
        }
    }
    let all = tasks();
    for key in &all {
        prop_assert_eq!(
            visible(redis.get(key).await.expect("reads")),
            visible(memory.get(key).await.expect("reads"))
        );
    }
    for tenant in [1, 2] {
        let tenant = TenantId::new(tenant).expect("valid");
        let ids: Vec<TaskId> = all.iter().rev().map(|k| k.task.clone()).collect();
        let r = redis.get_many(tenant, &ids).await.expect("reads");
        let m = memory.get_many(tenant, &ids).await.expect("reads");
        prop_assert_eq!(
            r.into_iter().map(visible).collect::<Vec<_>>(),
            m.into_iter().map(visible).collect::<Vec<_>>()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(jobpulse_testkit::proptest_config(48))]

    #[test]
    fn redis_answers_like_the_reference_model(
        specs in proptest::collection::vec(spec(), 1..150),
        batch in prop_oneof![3 => Just(1usize), 1 => 2usize..6],
    ) {
        runtime().block_on(run_case(TestSpace::new(), build(&specs), batch))?;
    }

    /// The same on a Redis Cluster (`apply_many` of both tenants is split per slot there).
    #[test]
    fn a_cluster_answers_like_the_reference_model(
        specs in proptest::collection::vec(spec(), 1..150),
        batch in prop_oneof![1 => Just(1usize), 3 => 2usize..12],
    ) {
        if let Some(space) = TestSpace::cluster() {
            runtime().block_on(run_case(space, build(&specs), batch))?;
        }
    }
}

/// A well-formed history of one task (as in the domain's fence_rules test): generations,
/// attempts, seq within attempts, percent non-decreasing within an attempt, and sometimes a
/// terminal write ending a generation.
fn history(key: TaskKey) -> impl Strategy<Value = Vec<Write>> {
    let attempt = proptest::collection::vec(0u8..=99, 1..6);
    let generation = (proptest::collection::vec(attempt, 1..4), 0u8..3);
    proptest::collection::vec(generation, 1..4).prop_map(move |gens| {
        let mut writes = Vec::new();
        for (gi, (attempts, ending)) in gens.into_iter().enumerate() {
            let g = gi as u32 + 1;
            let fence = |a, s| Fence::new(g, a, s).expect("valid fence");
            writes.push(
                Write::set(
                    key.clone(),
                    fence(0, 1),
                    State::video(VideoStatus::Uploaded),
                )
                .expect("valid"),
            );
            let n = attempts.len() as u32;
            for (ai, mut pcts) in attempts.into_iter().enumerate() {
                pcts.sort_unstable();
                for (si, p) in pcts.into_iter().enumerate() {
                    let mut s = State::video(VideoStatus::Processing);
                    s.percent = pct(p);
                    writes.push(
                        Write::set(key.clone(), fence(ai as u32 + 1, si as u64 + 1), s)
                            .expect("valid"),
                    );
                }
            }
            let end = match ending {
                0 => None,
                1 => Some(State::video(VideoStatus::Ready)),
                _ => Some(State::video(VideoStatus::Failed)),
            };
            if let Some(end) = end {
                writes.push(
                    Write::set(key.clone(), Fence::between_attempts(g, n), end).expect("valid"),
                );
            }
        }
        writes
    })
}

const WRITERS: usize = 4;

fn keys3() -> Vec<TaskKey> {
    let t = TenantId::new(5).expect("valid");
    (1..=3)
        .map(|v| TaskKey::video(t, VideoId::new(v).expect("valid")))
        .collect()
}

async fn run_concurrently(histories: Vec<Vec<Write>>) -> Result<(), TestCaseError> {
    let space = TestSpace::new();
    let store = Arc::new(space.store(StoreConfig::default()).await);
    let keys = keys3();
    // Writer i sends every WRITERS-th write of every history, in order; the writers race.
    let mut lanes: Vec<Vec<Write>> = vec![Vec::new(); WRITERS];
    for h in &histories {
        for (i, w) in h.iter().enumerate() {
            lanes[i % WRITERS].push(w.clone());
        }
    }
    let done = Arc::new(tokio::sync::Notify::new());
    let poller = {
        let (store, keys, done) = (store.clone(), keys.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Vec<Snapshot>> = vec![Vec::new(); keys.len()];
            let tenant = keys[0].tenant;
            let ids: Vec<TaskId> = keys.iter().map(|k| k.task.clone()).collect();
            loop {
                let finished = done.notified();
                let got = store.get_many(tenant, &ids).await.expect("Redis answers");
                for (i, s) in got.into_iter().enumerate() {
                    if let Some(s) = s {
                        seen[i].push(s);
                    }
                }
                tokio::select! {
                    _ = finished => break,
                    _ = tokio::time::sleep(Duration::from_micros(200)) => {}
                }
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for lane in lanes {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for w in lane {
                store.apply(&w).await.expect("Redis answers");
                tokio::task::yield_now().await;
            }
        }));
    }
    for w in writers {
        w.await.expect("writer finished");
    }
    done.notify_one();
    let seen = poller.await.expect("poller finished");

    for (i, (key, h)) in keys.iter().zip(&histories).enumerate() {
        let newest = h.iter().max_by_key(|w| w.fence).expect("non-empty history");
        let WriteKind::Set(expected) = &newest.kind else {
            unreachable!("histories hold state writes only")
        };
        let got = store.get(key).await.expect("reads").expect("present");
        prop_assert_eq!(got.fence, newest.fence);
        // What the store adds (the held percent, the previous attempt) depends on the order it
        // saw the writes in; the state as written converges.
        prop_assert_eq!(&got.state.as_written(), &expected.as_written());
        for pair in seen[i].windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            prop_assert!(after.fence >= before.fence, "fences never go back");
            prop_assert!(after.rev >= before.rev, "revisions never go back");
            // Within a generation, across attempts too (docs/contract.md §3b).
            let same_generation = before.fence.generation == after.fence.generation;
            if same_generation && !after.state.status.is_initial() {
                prop_assert!(
                    after.state.percent >= before.state.percent,
                    "percent went back from {:?} to {:?}",
                    before,
                    after
                );
            }
            if before.fence.generation == after.fence.generation
                && before.state.status.is_terminal()
            {
                prop_assert_eq!(before, after, "terminal absorbs its generation");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(jobpulse_testkit::proptest_config(8))]

    #[test]
    fn concurrent_writers_converge_and_readers_never_see_regressions(
        histories in keys3().into_iter().map(history).collect::<Vec<_>>()
    ) {
        runtime().block_on(run_concurrently(histories))?;
    }
}
