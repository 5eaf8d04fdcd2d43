//! The Redis store's costs against baselines measured in the same run, on the same connection:
//!
//! 1. a fenced `apply` of a PROCESSING progress write (Lua script: read, fence check, write,
//!    TTL, change log, publish) against a plain `SET` of the same JSON;
//! 2. `get_many` of 100 tasks (one pipelined round trip) against 100 sequential `get`s.
//!
//! Needs a Redis (JOBPULSE_TEST_REDIS_URL, default redis://127.0.0.1:6379); keys live under a
//! random `bench-…` prefix and are deleted at the end. Run: `cargo bench -p jobpulse-store
//! --bench store`. After criterion's report, one line gives the ratios, computed from the very
//! timings criterion measured (every `iter_custom` call, warm-up included).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{
    Fence, Percent, State, StepProgress, TaskId, TaskKey, TenantId, VideoId, VideoStatus, Write,
};
use jobpulse_store::{RedisStore, StatusStore, StoreConfig};

/// Total time and iterations per benchmark, as measured.
static TIMINGS: Mutex<Option<HashMap<&'static str, (Duration, u64)>>> = Mutex::new(None);

fn record(name: &'static str, elapsed: Duration, iters: u64) {
    let mut t = TIMINGS.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.get_or_insert_with(HashMap::new).entry(name).or_default();
    e.0 += elapsed;
    e.1 += iters;
}

fn mean(name: &str) -> Option<Duration> {
    let t = TIMINGS.lock().unwrap_or_else(|e| e.into_inner());
    let (total, iters) = *t.as_ref()?.get(name)?;
    (iters > 0).then(|| total / u32::try_from(iters).unwrap_or(u32::MAX))
}

fn progress_state(p: u8) -> State {
    let pct = Percent::new(p).expect("valid percent");
    let mut s = State::video(VideoStatus::Processing);
    s.percent = pct;
    s.step = StepProgress::new(4, 7, "transcoding", "인코딩", pct).ok();
    s.remaining_seconds = Some(84);
    s.attempt = Some(1);
    s
}

fn main() {
    let url = std::env::var("JOBPULSE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let prefix = format!("bench-{:016x}", rand::random::<u64>());
    let keys = KeySpace::new(&prefix).expect("valid prefix");
    let store = rt
        .block_on(RedisStore::connect(
            &url,
            keys.clone(),
            StoreConfig::default(),
        ))
        .unwrap_or_else(|e| panic!("the benchmark needs a Redis at {url}: {e}"));
    let tenant = TenantId::new(1).expect("valid");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    // 1. Fenced apply vs plain SET of the same payload.
    let key = TaskKey::video(tenant, VideoId::new(1).expect("valid"));
    let state = progress_state(57);
    let json = serde_json::to_string(&state).expect("serializes");
    let plain_key = format!("{prefix}:plain");
    let seq = AtomicU64::new(1);
    {
        let mut g = c.benchmark_group("write");
        g.bench_function("fenced_apply", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, key, state, seq) = (&store, &key, &state, &seq);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        let fence = Fence::new(1, 1, s).expect("valid fence");
                        let w = Write::set(key.clone(), fence, state.clone()).expect("valid");
                        let out = store.apply(&w).await.expect("Redis answers");
                        assert!(matches!(out, jobpulse_domain::Outcome::Applied { .. }));
                    }
                    let elapsed = start.elapsed();
                    record("fenced_apply", elapsed, iters);
                    elapsed
                }
            });
        });
        g.bench_function("plain_set", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (mut conn, plain_key, json) = (store.connection(), &plain_key, &json);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let _: () = redis::cmd("SET")
                            .arg(plain_key)
                            .arg(json)
                            .query_async(&mut conn)
                            .await
                            .expect("Redis answers");
                    }
                    let elapsed = start.elapsed();
                    record("plain_set", elapsed, iters);
                    elapsed
                }
            });
        });
        g.finish();
    }

    // 2. One get_many of 100 tasks vs 100 sequential gets.
    let ids: Vec<TaskId> = (1..=100)
        .map(|v| TaskId::Video(VideoId::new(100 + v).expect("valid")))
        .collect();
    let writes: Vec<Write> = ids
        .iter()
        .map(|t| {
            let key = TaskKey {
                tenant,
                task: t.clone(),
            };
            Write::set(key, Fence::new(1, 1, 1).expect("valid"), progress_state(33)).expect("valid")
        })
        .collect();
    rt.block_on(store.apply_many(&writes))
        .expect("seeds 100 records");
    {
        let mut g = c.benchmark_group("read_100");
        g.bench_function("get_many", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, ids) = (&store, &ids);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let got = store.get_many(tenant, ids).await.expect("Redis answers");
                        assert_eq!(got.iter().flatten().count(), 100);
                    }
                    let elapsed = start.elapsed();
                    record("get_many_100", elapsed, iters);
                    elapsed
                }
            });
        });
        g.bench_function("sequential_get", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, ids) = (&store, &ids);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for t in ids {
                            let key = TaskKey {
                                tenant,
                                task: t.clone(),
                            };
                            let got = store.get(&key).await.expect("Redis answers");
                            assert!(got.is_some());
                        }
                    }
                    let elapsed = start.elapsed();
                    record("sequential_get_100", elapsed, iters);
                    elapsed
                }
            });
        });
        g.finish();
    }
    c.final_summary();
    summary();
    cleanup(&url, &prefix);
}

#[allow(clippy::print_stdout)]
fn summary() {
    let (Some(apply), Some(set), Some(many), Some(seq)) = (
        mean("fenced_apply"),
        mean("plain_set"),
        mean("get_many_100"),
        mean("sequential_get_100"),
    ) else {
        // A filtered run (e.g. `cargo bench -- write`) measures only some of them.
        return;
    };
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "ratios: fenced apply {apply:?} vs plain SET {set:?} = {:.2}x; \
         100 sequential gets {seq:?} vs get_many(100) {many:?} = {:.2}x",
        ratio(apply, set),
        ratio(seq, many),
    );
}

fn cleanup(url: &str, prefix: &str) {
    let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut con);
    }
}
