//! The Redis store against a real Redis (JOBPULSE_TEST_REDIS_URL, default redis://127.0.0.1:6379).
//! Each test works in a key space of its own; tests that change server settings or stop the
//! server start their own throwaway `redis-server`.

mod common;

use std::time::{Duration, Instant};

use common::{OwnRedis, TestSpace};
use jobpulse_domain::keys::legacy_keys;
use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, Outcome, Percent, RejectReason, State, TaskId,
    TaskKey, TenantId, VideoId, VideoStatus, Write,
};
use jobpulse_store::{
    ChangesSince, Epoch, RedisOptions, RedisStore, StatusStore, StoreConfig, StoreError,
    TENANT_LOG_LEN,
};
use redis::AsyncCommands;

fn tenant(t: i64) -> TenantId {
    TenantId::new(t).expect("valid tenant")
}

fn video(t: i64, v: i64) -> TaskKey {
    TaskKey::video(tenant(t), VideoId::new(v).expect("valid video"))
}

fn job(t: i64, j: &str) -> TaskKey {
    TaskKey::job(tenant(t), JobId::parse(j).expect("valid job"))
}

fn fence(g: u32, a: u32, s: u64) -> Fence {
    Fence::new(g, a, s).expect("valid fence")
}

fn processing(pct: u8) -> State {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(pct).expect("valid percent");
    s
}

fn set(key: &TaskKey, f: Fence, state: State) -> Write {
    Write::set(key.clone(), f, state).expect("valid write")
}

fn applied_rev(out: Outcome) -> u64 {
    match out {
        Outcome::Applied { rev } => rev,
        other => panic!("expected applied, got {other:?}"),
    }
}

async fn apply(store: &RedisStore, w: &Write) -> Outcome {
    store.apply(w).await.expect("Redis answers")
}

async fn percent(store: &RedisStore, key: &TaskKey) -> Option<u8> {
    store
        .get(key)
        .await
        .expect("Redis answers")
        .map(|s| s.state.percent.get())
}

async fn pttl(space: &TestSpace, key: &TaskKey) -> i64 {
    let mut con = space.raw().await;
    con.pttl(space.keys.record(key)).await.expect("PTTL")
}

#[tokio::test]
async fn every_outcome_of_the_fence_rule() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let k = video(1, 7);

    // A heartbeat cannot create a record.
    assert_eq!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 1, 0))).await,
        Outcome::Rejected {
            reason: RejectReason::Missing
        }
    );
    let r1 = applied_rev(
        apply(
            &store,
            &set(&k, fence(1, 0, 1), State::video(VideoStatus::Uploaded)),
        )
        .await,
    );
    let r2 = applied_rev(apply(&store, &set(&k, fence(1, 1, 1), processing(60))).await);
    assert!(r2 > r1, "revisions grow");

    // Same (attempt, seq) again and an older seq: stale, with what the store holds.
    let stale = Outcome::Stale {
        current: fence(1, 1, 1),
        rev: r2,
    };
    assert_eq!(
        apply(&store, &set(&k, fence(1, 1, 1), processing(70))).await,
        stale
    );
    assert_eq!(
        apply(&store, &set(&k, fence(1, 1, 0), processing(70))).await,
        stale
    );
    assert_eq!(
        apply(&store, &set(&k, fence(1, 0, 9), processing(70))).await,
        stale
    );

    // Within an attempt the percent never goes back; readers see the clamped value.
    let r3 = applied_rev(apply(&store, &set(&k, fence(1, 1, 2), processing(40))).await);
    assert!(r3 > r2);
    assert_eq!(percent(&store, &k).await, Some(60));
    // ... except for an initial state, stored as sent.
    applied_rev(
        apply(
            &store,
            &set(&k, fence(1, 1, 3), State::video(VideoStatus::Uploaded)),
        )
        .await,
    );
    assert_eq!(percent(&store, &k).await, Some(0));
    // A new attempt starts over.
    applied_rev(apply(&store, &set(&k, fence(1, 2, 1), processing(15))).await);
    assert_eq!(percent(&store, &k).await, Some(15));

    // Heartbeats: same attempt refreshes (rev unchanged), older attempt is stale, a newer
    // attempt or generation is unknown.
    let current = store.get(&k).await.expect("reads").expect("present");
    assert_eq!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 2, 0))).await,
        Outcome::Applied { rev: current.rev }
    );
    assert!(matches!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 1, 5))).await,
        Outcome::Stale { .. }
    ));
    for f in [fence(1, 3, 0), fence(2, 0, 0)] {
        assert_eq!(
            apply(&store, &Write::heartbeat(k.clone(), f)).await,
            Outcome::Rejected {
                reason: RejectReason::UnknownAttempt
            }
        );
    }

    // Terminal absorbs its generation; a new generation is the way out.
    let ready = Fence::between_attempts(1, 2);
    applied_rev(apply(&store, &set(&k, ready, State::video(VideoStatus::Ready))).await);
    let late = apply(&store, &set(&k, fence(1, 9, 9), processing(99))).await;
    assert!(
        matches!(late, Outcome::Stale { current, .. } if current == ready),
        "{late:?}"
    );
    assert!(matches!(
        apply(&store, &Write::heartbeat(k.clone(), ready)).await,
        Outcome::Stale { .. }
    ));
    assert!(matches!(
        apply(&store, &Write::delete(k.clone(), fence(1, 9, 9))).await,
        Outcome::Stale { .. }
    ));
    assert_eq!(percent(&store, &k).await, Some(100));
    applied_rev(
        apply(
            &store,
            &set(&k, fence(2, 0, 1), State::video(VideoStatus::Uploaded)),
        )
        .await,
    );

    // Deletion: readers see nothing, older writes stay refused, a newer generation revives.
    applied_rev(apply(&store, &Write::delete(k.clone(), fence(2, 1, 0))).await);
    assert_eq!(store.get(&k).await.expect("reads"), None);
    assert!(matches!(
        apply(
            &store,
            &set(&k, fence(2, 0, 2), State::video(VideoStatus::Uploaded))
        )
        .await,
        Outcome::Stale { .. }
    ));
    assert!(
        matches!(
            apply(&store, &set(&k, fence(2, 5, 5), processing(5))).await,
            Outcome::Stale { .. }
        ),
        "a tombstone absorbs its generation"
    );
    applied_rev(
        apply(
            &store,
            &set(&k, fence(3, 0, 1), State::video(VideoStatus::Uploaded)),
        )
        .await,
    );
    assert!(store.get(&k).await.expect("reads").is_some());
    // Deleting something never written leaves a tombstone too.
    let other = video(1, 8);
    applied_rev(apply(&store, &Write::delete(other.clone(), fence(1, 0, 0))).await);
    assert!(matches!(
        apply(
            &store,
            &set(&other, fence(1, 0, 0), State::video(VideoStatus::Uploaded))
        )
        .await,
        Outcome::Stale { .. }
    ));
    assert_eq!(store.backend(), "redis");
    store.ping().await.expect("pings");
}

#[tokio::test]
async fn apply_many_is_fenced_per_write() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let (a, b) = (video(1, 1), job(1, "x1"));
    let jt = JobType::parse("excel_parsing").expect("valid");
    let writes = [
        set(&a, fence(1, 1, 2), processing(50)),
        set(&a, fence(1, 1, 1), processing(60)),
        Write::heartbeat(b.clone(), fence(1, 1, 0)),
        set(&b, fence(1, 0, 1), State::job(JobStatus::Pending, jt)),
        Write::heartbeat(a.clone(), fence(1, 1, 0)),
    ];
    let out = store.apply_many(&writes).await.expect("applies");
    assert!(matches!(out[0], Outcome::Applied { .. }));
    assert!(matches!(out[1], Outcome::Stale { current, .. } if current == fence(1, 1, 2)));
    assert_eq!(
        out[2],
        Outcome::Rejected {
            reason: RejectReason::Missing
        }
    );
    assert!(matches!(out[3], Outcome::Applied { .. }));
    assert_eq!(
        out[4],
        Outcome::Applied {
            rev: applied_rev(out[0])
        }
    );
    assert_eq!(store.apply_many(&[]).await.expect("nothing to do"), vec![]);
}

#[tokio::test]
async fn ttls_follow_the_config() {
    let space = TestSpace::new();
    let config = StoreConfig {
        live_ttl: Duration::from_secs(60),
        tombstone_ttl: Duration::from_secs(30),
        ..StoreConfig::default()
    };
    let store = space.store(config.clone()).await;
    let k = video(1, 1);
    apply(&store, &set(&k, fence(1, 1, 1), processing(10))).await;
    let live = pttl(&space, &k).await;
    assert!((55_000..=60_000).contains(&live), "in progress: {live}");
    apply(
        &store,
        &set(&k, fence(1, 2, 0), State::video(VideoStatus::Failed)),
    )
    .await;
    assert_eq!(pttl(&space, &k).await, -1, "terminal records are kept");
    apply(&store, &Write::delete(k.clone(), fence(2, 0, 0))).await;
    let tomb = pttl(&space, &k).await;
    assert!((25_000..=30_000).contains(&tomb), "tombstone: {tomb}");

    let retained = space
        .store(StoreConfig {
            terminal_retention: Some(Duration::from_secs(120)),
            ..config
        })
        .await;
    let k2 = video(1, 2);
    apply(&retained, &set(&k2, fence(1, 1, 1), processing(10))).await;
    apply(
        &retained,
        &set(&k2, fence(1, 2, 0), State::video(VideoStatus::Ready)),
    )
    .await;
    let kept = pttl(&space, &k2).await;
    assert!((115_000..=120_000).contains(&kept), "retention: {kept}");
}

#[tokio::test]
async fn heartbeats_slide_the_ttl() {
    let space = TestSpace::new();
    let store = space
        .store(StoreConfig {
            live_ttl: Duration::from_secs(60),
            ..StoreConfig::default()
        })
        .await;
    let k = video(1, 1);
    apply(&store, &set(&k, fence(1, 2, 1), processing(10))).await;
    let mut con = space.raw().await;
    let record = space.keys.record(&k);
    // Pretend most of the TTL has passed.
    let _: bool = con.pexpire(&record, 500).await.expect("PEXPIRE");
    assert!(matches!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 1, 0))).await,
        Outcome::Stale { .. }
    ));
    assert!(
        pttl(&space, &k).await <= 500,
        "a stale heartbeat keeps nothing alive"
    );
    assert!(matches!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 2, 0))).await,
        Outcome::Applied { .. }
    ));
    let slid = pttl(&space, &k).await;
    assert!(slid > 55_000, "heartbeat slid the TTL: {slid}");
    // Expiry makes the record unknown, as if never written.
    let _: bool = con.pexpire(&record, 1).await.expect("PEXPIRE");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.get(&k).await.expect("reads"), None);
    assert_eq!(
        apply(&store, &Write::heartbeat(k.clone(), fence(1, 2, 0))).await,
        Outcome::Rejected {
            reason: RejectReason::Missing
        }
    );
}

#[tokio::test]
async fn get_many_keeps_order_and_tenants_apart() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let jt = JobType::parse("ppt_generation").expect("valid");
    apply(&store, &set(&video(1, 1), fence(1, 1, 1), processing(11))).await;
    apply(&store, &set(&video(1, 3), fence(1, 1, 1), processing(33))).await;
    apply(
        &store,
        &set(
            &job(1, "j1"),
            fence(1, 0, 1),
            State::job(JobStatus::Pending, jt),
        ),
    )
    .await;
    apply(&store, &set(&video(2, 2), fence(1, 1, 1), processing(22))).await;
    apply(&store, &Write::delete(video(1, 4), fence(1, 0, 0))).await;

    let asked = [
        video(1, 3).task,
        video(1, 2).task, // tenant 2's video: a miss for tenant 1
        job(1, "j1").task,
        video(1, 9).task, // never written
        video(1, 4).task, // deleted
        video(1, 1).task,
    ];
    let got = store.get_many(tenant(1), &asked).await.expect("reads");
    let seen: Vec<Option<u8>> = got
        .iter()
        .map(|s| s.as_ref().map(|s| s.state.percent.get()))
        .collect();
    assert_eq!(seen, [Some(33), None, Some(0), None, None, Some(11)]);
    assert_eq!(
        got[2].as_ref().map(|s| s.state.status.as_str()),
        Some("PENDING")
    );
    assert_eq!(
        store
            .get(&video(2, 2))
            .await
            .expect("reads")
            .map(|s| s.state.percent.get()),
        Some(22)
    );
    assert_eq!(store.get_many(tenant(1), &[]).await.expect("reads"), vec![]);
}

#[tokio::test]
async fn a_large_result_is_held_as_a_reference() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let k = job(1, "big");
    let jt = JobType::parse("excel_parsing").expect("valid");
    let rows: Vec<_> = (0..2000)
        .map(
            |i| serde_json::json!({"row": i, "name": format!("student {i}"), "error": "duplicate"}),
        )
        .collect();
    let mut done = State::job(JobStatus::Done, jt);
    done.result =
        Some(JobResult::whole(serde_json::json!({"created": 0, "failed": rows})).expect("object"));
    apply(&store, &set(&k, fence(1, 2, 0), done)).await;
    let got = store.get(&k).await.expect("reads").expect("present");
    let result = got.state.result.expect("a result");
    assert!(result.full_available && result.inline.is_none());
    let mut con = space.raw().await;
    let len: usize = redis::cmd("HSTRLEN")
        .arg(space.keys.record(&k))
        .arg("j")
        .query_async(&mut con)
        .await
        .expect("HSTRLEN");
    assert!(len < 512, "the stored state stays small: {len} bytes");
}

/// Tenants far from every other test's, so the old system's un-prefixed keys do not collide.
fn legacy_tenant() -> i64 {
    1_000_000_000 + (rand::random::<u32>() as i64)
}

#[tokio::test]
async fn legacy_keys_are_read_only_when_asked_and_only_on_a_miss() {
    let space = TestSpace::new();
    let t = legacy_tenant();
    let (old, garbage, deleted, fresh) = (video(t, 1), video(t, 2), video(t, 3), job(t, "legacy1"));
    let mut con = space.raw().await;
    let mut written = Vec::new();
    let mut put = |key: &TaskKey, status: &str, progress: Option<&str>| {
        let (s, p) = legacy_keys(key);
        let mut pipe = redis::pipe();
        pipe.set(&s, status).ignore();
        if let Some(p_val) = progress {
            pipe.set(&p, p_val).ignore();
        }
        written.push(s);
        written.push(p);
        pipe
    };
    let pipes = [
        put(
            &old,
            "PROCESSING",
            Some(
                r#"{"percent":57,"step_index":4,"step_total":7,"step_name":"transcoding","step_name_display":"인코딩","step_percent":40,"remaining_seconds":84}"#,
            ),
        ),
        put(&garbage, "PROCESSING", Some("{not json")),
        put(&deleted, "READY", None),
        put(
            &fresh,
            "RUNNING",
            Some(r#"{"percent":12,"job_type":"excel_parsing"}"#),
        ),
    ];
    for p in pipes {
        p.exec_async(&mut con).await.expect("writes legacy keys");
    }

    let off = space.store(StoreConfig::default()).await;
    assert_eq!(off.get(&old).await.expect("reads"), None, "off by default");

    let on = space
        .store(StoreConfig {
            legacy_read: true,
            ..StoreConfig::default()
        })
        .await;
    let got = on.get(&old).await.expect("reads").expect("mapped");
    assert_eq!(
        got.fence,
        Fence {
            generation: 0,
            attempt: 0,
            seq: 0
        }
    );
    assert_eq!(got.rev, 0);
    assert_eq!(got.state.percent.get(), 57);
    assert_eq!(got.state.step.as_ref().map(|s| s.index), Some(4));
    assert_eq!(
        on.get(&garbage).await.expect("reads"),
        None,
        "garbage is a miss"
    );

    // A tombstone is not a miss: the task was deleted.
    apply(&on, &Write::delete(deleted.clone(), fence(1, 0, 0))).await;
    // A real write takes over from the legacy record.
    apply(
        &on,
        &set(
            &fresh,
            fence(1, 1, 1),
            State::job(
                JobStatus::Running,
                JobType::parse("excel_parsing").expect("valid"),
            ),
        ),
    )
    .await;
    let many = on
        .get_many(
            tenant(t),
            &[
                old.task.clone(),
                garbage.task.clone(),
                deleted.task.clone(),
                fresh.task.clone(),
                video(t, 99).task,
            ],
        )
        .await
        .expect("reads");
    assert_eq!(many[0].as_ref().map(|s| s.state.percent.get()), Some(57));
    assert!(many[1].is_none() && many[2].is_none() && many[4].is_none());
    assert_eq!(many[3].as_ref().map(|s| s.fence), Some(fence(1, 1, 1)));

    let _: i64 = con.del(&written).await.expect("cleans up");
}

async fn next_change(sub: &mut jobpulse_store::Subscription) -> jobpulse_store::Change {
    tokio::time::timeout(Duration::from_secs(15), sub.recv())
        .await
        .expect("a change arrives")
        .expect("no lag")
}

#[tokio::test]
async fn subscribers_see_changes_applied_by_another_process() {
    let space = TestSpace::new();
    let watcher = space.store(StoreConfig::default()).await;
    let writer = space.store(StoreConfig::default()).await;
    let mut sub = watcher
        .subscribe_ready()
        .await
        .expect("the feed subscribes");
    let k = video(4, 2);
    apply(&writer, &set(&k, fence(1, 1, 1), processing(60))).await;
    let out = apply(&writer, &set(&k, fence(1, 1, 2), processing(30))).await;
    apply(&writer, &Write::delete(k.clone(), fence(1, 2, 0))).await;
    // A refused write announces nothing.
    apply(&writer, &set(&k, fence(1, 1, 3), processing(30))).await;

    let first = next_change(&mut sub).await;
    let second = next_change(&mut sub).await;
    let third = next_change(&mut sub).await;
    assert_eq!(first.key, k);
    let snap = second.snapshot.as_ref().expect("a state");
    assert_eq!(second.rev, applied_rev(out));
    assert_eq!(snap.rev, second.rev);
    assert_eq!(snap.fence, fence(1, 1, 2));
    assert_eq!(
        snap.state.percent.get(),
        60,
        "the announced percent is the clamped one"
    );
    assert!(third.snapshot.is_none(), "a deletion announces no state");
    assert!(third.rev > second.rev);
    // The announced cursors resume the change log.
    let got = watcher
        .changes_since(tenant(4), &first.cursor, 10)
        .await
        .expect("reads");
    assert_eq!(
        got,
        ChangesSince::Changes(vec![
            (second.cursor.clone(), k.task.clone()),
            (third.cursor.clone(), k.task.clone())
        ])
    );
    // Not announced — shown by order, not by waiting: a write applied after the stale one is
    // the next change on the feed (one connection's writes are announced in order), however
    // late the feed delivers.
    let marker = video(4, 3);
    apply(&writer, &set(&marker, fence(1, 1, 1), processing(5))).await;
    let next = next_change(&mut sub).await;
    assert_eq!(next.key, marker, "the stale write was announced: {next:?}");
}

#[tokio::test]
async fn changes_since_resumes_and_expires_after_trimming() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let t = tenant(1);
    let mut sub = store.subscribe_ready().await.expect("subscribes");
    assert_eq!(
        store.changes_since(t, "0-0", 10).await.expect("reads"),
        ChangesSince::Expired,
        "a tenant without a change log cannot vouch for anything"
    );
    apply(&store, &set(&video(1, 1), fence(1, 1, 1), processing(1))).await;
    let first = sub.recv().await.expect("announced").cursor;
    for v in 2..=4 {
        apply(&store, &set(&video(1, v), fence(1, 1, 1), processing(1))).await;
    }
    let ChangesSince::Changes(after_first) =
        store.changes_since(t, &first, 10).await.expect("reads")
    else {
        panic!("nothing was trimmed yet");
    };
    let tasks: Vec<TaskId> = after_first.iter().map(|(_, task)| task.clone()).collect();
    assert_eq!(
        tasks,
        [video(1, 2).task, video(1, 3).task, video(1, 4).task]
    );
    let limited = store.changes_since(t, &first, 2).await.expect("reads");
    assert_eq!(limited, ChangesSince::Changes(after_first[..2].to_vec()));
    let last = &after_first[2].0;
    assert_eq!(
        store.changes_since(t, last, 10).await.expect("reads"),
        ChangesSince::Changes(vec![])
    );
    assert_eq!(
        store.changes_since(t, "0-0", 1).await.expect("reads"),
        ChangesSince::Changes(vec![(first.clone(), video(1, 1).task)])
    );
    for bad in ["garbage", "999", "", "1-x", "99999999999999-0"] {
        assert_eq!(
            store.changes_since(t, bad, 10).await.expect("reads"),
            ChangesSince::Expired,
            "{bad:?}"
        );
    }

    // Another tenant's writes do not touch this log.
    apply(&store, &set(&video(2, 1), fence(1, 1, 1), processing(1))).await;
    assert_eq!(
        store.changes_since(t, last, 10).await.expect("reads"),
        ChangesSince::Changes(vec![])
    );

    // Overflow the log: the first cursor can no longer vouch for what followed it.
    let k = video(1, 1);
    let writes: Vec<Write> = (2..(TENANT_LOG_LEN as u64 + 300))
        .map(|seq| set(&k, fence(1, 1, seq), processing(1)))
        .collect();
    for chunk in writes.chunks(200) {
        store.apply_many(chunk).await.expect("applies");
    }
    assert_eq!(
        store.changes_since(t, &first, 10).await.expect("reads"),
        ChangesSince::Expired,
        "trimmed changes cannot be replayed"
    );
    // A recent cursor still resumes.
    let mut recent = None;
    while let Ok(c) = sub.try_recv() {
        if c.key.tenant == t {
            recent = Some(c.cursor);
        }
    }
    let recent = recent.expect("changes were announced");
    assert_eq!(
        store.changes_since(t, &recent, 10).await.expect("reads"),
        ChangesSince::Changes(vec![])
    );
}

#[tokio::test]
async fn check_epoch_notices_a_lost_sentinel() {
    let space = TestSpace::new();
    let store = space.store(StoreConfig::default()).await;
    let Epoch::Lost(first) = store.check_epoch().await.expect("checks") else {
        panic!("a fresh key space has no sentinel");
    };
    assert_eq!(
        store.check_epoch().await.expect("checks"),
        Epoch::Intact(first.clone())
    );
    let mut con = space.raw().await;
    let _: i64 = con.del(space.keys.sentinel()).await.expect("DEL");
    let Epoch::Lost(second) = store.check_epoch().await.expect("checks") else {
        panic!("the sentinel was deleted");
    };
    assert_ne!(first, second);
    assert_eq!(
        store.check_epoch().await.expect("checks"),
        Epoch::Intact(second)
    );
}

async fn set_policy(url: &str, policy: &str) {
    let mut con = common::raw(url).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg(policy)
        .query_async(&mut con)
        .await
        .expect("CONFIG SET on our own server");
}

/// Captures what the store logs during a (current-thread) test.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::WARN)
                .with_writer(move || me.clone())
                .finish(),
        )
    }

    fn take(&self) -> String {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *buf)).into_owned()
    }
}

#[tokio::test]
async fn eviction_policies_that_lose_records_are_refused() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    let logs = Logs::default();
    let _guard = logs.install();
    for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
        set_policy(&own.url(), policy).await;
        let err = RedisStore::connect(&own.url(), space.keys.clone(), StoreConfig::default())
            .await
            .expect_err("refused");
        let StoreError::Config(msg) = err else {
            panic!("expected a configuration error, got {err:?}");
        };
        assert!(msg.contains(policy) && msg.contains("noeviction"), "{msg}");
    }
    for (policy, warns) in [
        ("volatile-lru", true),
        ("volatile-ttl", true),
        ("noeviction", false),
    ] {
        set_policy(&own.url(), policy).await;
        logs.take();
        RedisStore::connect(&own.url(), space.keys.clone(), StoreConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{policy} is accepted: {e}"));
        let logged = logs.take();
        assert_eq!(
            logged.contains("WARN") && logged.contains(policy),
            warns,
            "{policy}: {logged:?}"
        );
    }
}

#[tokio::test]
async fn a_redis_without_config_is_accepted_with_a_warning() {
    let own = OwnRedis::start_with(&["--rename-command", "CONFIG", ""]);
    let space = TestSpace::on(&own.url());
    let logs = Logs::default();
    let _guard = logs.install();
    let store = RedisStore::connect(&own.url(), space.keys.clone(), StoreConfig::default())
        .await
        .expect("CONFIG disabled is not fatal");
    let logged = logs.take();
    assert!(
        logged.contains("WARN") && logged.contains("noeviction"),
        "{logged:?}"
    );
    let k = video(1, 1);
    assert!(matches!(
        apply(&store, &set(&k, fence(1, 1, 1), processing(3))).await,
        Outcome::Applied { .. }
    ));
}

#[tokio::test]
async fn writes_survive_a_flushed_script_cache() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    let store = RedisStore::connect(&own.url(), space.keys.clone(), StoreConfig::default())
        .await
        .expect("connects");
    let mut con = common::raw(&own.url()).await;
    let k = video(1, 1);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .expect("flushes");
    applied_rev(apply(&store, &set(&k, fence(1, 1, 1), processing(3))).await);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .expect("flushes");
    let out = store
        .apply_many(&[
            set(&k, fence(1, 1, 2), processing(4)),
            Write::heartbeat(k.clone(), fence(1, 1, 0)),
            set(&k, fence(1, 1, 2), processing(5)),
            Write::delete(k.clone(), fence(1, 2, 0)),
        ])
        .await
        .expect("applies");
    assert!(matches!(out[0], Outcome::Applied { .. }));
    assert!(matches!(out[1], Outcome::Applied { .. }));
    assert!(matches!(out[2], Outcome::Stale { .. }), "{:?}", out[2]);
    assert!(matches!(out[3], Outcome::Applied { .. }));
    assert_eq!(store.get(&k).await.expect("reads"), None);
}

#[tokio::test]
async fn a_blackholed_redis_fails_fast_and_recovers() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        reconnect_retries: 1,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with(
        &own.url(),
        space.keys.clone(),
        StoreConfig::default(),
        options,
    )
    .await
    .expect("connects");
    let k = video(1, 1);
    apply(&store, &set(&k, fence(1, 1, 1), processing(5))).await;

    own.signal("STOP");
    // Each call is bounded by connect + response timeout (1 s here); without them a call to a
    // stopped server never returns. The bound leaves room for a loaded 2-core machine.
    let start = Instant::now();
    let err = store
        .get(&k)
        .await
        .expect_err("a stopped server does not answer");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "get took {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err = store
        .apply(&set(&k, fence(1, 1, 2), processing(6)))
        .await
        .expect_err("no answer");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "apply took {:?}",
        start.elapsed()
    );
    own.signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get(&k).await {
            Ok(Some(s)) => {
                assert!(s.fence >= fence(1, 1, 1));
                break;
            }
            Ok(None) => panic!("the record survived the pause"),
            Err(e) => assert!(Instant::now() < deadline, "did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unreachable = RedisStore::connect_with(
        "redis://127.0.0.1:1",
        space.keys.clone(),
        StoreConfig::default(),
        RedisOptions::default(),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(
        matches!(unreachable, StoreError::Unavailable(_)),
        "{unreachable:?}"
    );
}

/// Found by reliability scenario 3 (docs/reliability.md, "How intermittent failures get
/// caught"): the breaker's probe slot was released by a step at the end of the call, so a probe
/// dropped mid-way — `/readyz` bounds its ping by 2 s, less than the store's deadline — kept it
/// taken for good. Once the breaker was open, every later call was rejected without reaching
/// Redis: the API answered UNKNOWN and `/readyz` 503, and the relay kept the outbox, long after
/// Redis answered again. Also checks that the replies a blackhole held back (the server was
/// stopped, not disconnected) do not get matched to later requests.
#[tokio::test]
async fn a_cancelled_probe_does_not_keep_the_breaker_open() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    // Slow failures take 1 s here, so a caller's 100 ms bound surely ends the probe first.
    let options = RedisOptions {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        reconnect_retries: 1,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with(
        &own.url(),
        space.keys.clone(),
        StoreConfig::default(),
        options,
    )
    .await
    .expect("connects");
    let k = video(1, 1);
    apply(&store, &set(&k, fence(1, 1, 1), processing(5))).await;

    own.signal("STOP");
    // A call that waits out the response timeout opens the breaker.
    let start = Instant::now();
    let err = store
        .ping()
        .await
        .expect_err("a stopped server does not answer");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "not a slow failure: {:?}",
        start.elapsed()
    );
    let rejected = store.ping().await.expect_err("the breaker is open");
    assert!(
        matches!(rejected, StoreError::Unavailable(_)),
        "{rejected:?}"
    );
    // After the cooldown (1 s) the next call probes; its caller gives up before it ends. That
    // it is still running after 100 ms shows it was let through (a rejected call ends at once).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probe = tokio::time::timeout(Duration::from_millis(100), store.ping()).await;
    assert!(
        probe.is_err(),
        "the probe should still wait for the stopped server: {probe:?}"
    );
    own.signal("CONT");

    // Redis answers again: a later call probes, gets an answer and closes the breaker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "Redis answers again, yet the store still fails 20 s later: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The replies held back during the pause went to their (abandoned) requests, not to these.
    let found = store.get(&k).await.expect("reads").expect("the record");
    assert_eq!(found.fence, fence(1, 1, 1));
    assert_eq!(found.state, processing(5));
}

async fn pubsub_clients(url: &str) -> usize {
    let mut con = common::raw(url).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .expect("CLIENT LIST");
    list.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test]
async fn the_change_feed_reconnects_and_stops_with_the_store() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    let store = RedisStore::connect(&own.url(), space.keys.clone(), StoreConfig::default())
        .await
        .expect("connects");
    assert_eq!(
        pubsub_clients(&own.url()).await,
        0,
        "the feed starts on first subscribe"
    );
    let mut sub = store.subscribe_ready().await.expect("subscribes");
    assert_eq!(pubsub_clients(&own.url()).await, 1);
    let gaps = store.feed_gaps();
    assert_eq!(*gaps.borrow(), 0, "no gap on the first subscription");

    let mut con = common::raw(&own.url()).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);

    // Keep writing until the feed is back and delivers.
    let k = video(1, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 1;
    let got = loop {
        apply(&store, &set(&k, fence(1, 1, seq), processing(1))).await;
        seq += 1;
        if let Ok(Ok(change)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
            break change;
        }
        assert!(Instant::now() < deadline, "the feed did not come back");
    };
    assert_eq!(got.key, k);
    assert_eq!(
        *gaps.borrow(),
        1,
        "the reconnect is announced, so watchers can resync what they missed"
    );

    drop(store);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pubsub_clients(&own.url()).await != 0 {
        assert!(Instant::now() < deadline, "the feed outlived its store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
