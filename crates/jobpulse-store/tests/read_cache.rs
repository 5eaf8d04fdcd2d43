//! The Redis store's read cache (`StoreConfig::read_cache`) against a real Redis: it serves
//! without a round trip, follows every write announced by any process, never keeps an answer
//! older than the newest announced write, gives a writing process its own writes at once, and
//! stops serving when the change feed is lost.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{OwnRedis, TestSpace};
use jobpulse_domain::{Fence, Percent, State, TaskKey, TenantId, VideoId, VideoStatus, Write};
use jobpulse_store::{ReadCacheConfig, RedisStore, Snapshot, StatusStore, StoreConfig};
use redis::AsyncCommands;

fn video(v: i64) -> TaskKey {
    TaskKey::video(
        TenantId::new(3).expect("valid tenant"),
        VideoId::new(v).expect("valid video"),
    )
}

fn progress(key: &TaskKey, seq: u64, pct: u8) -> Write {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(pct).expect("valid percent");
    Write::set(key.clone(), Fence::new(1, 1, seq).expect("fence"), s).expect("valid write")
}

fn cached(max_age: Duration) -> StoreConfig {
    StoreConfig {
        read_cache: Some(ReadCacheConfig {
            entries: 10_000,
            max_age,
        }),
        ..StoreConfig::default()
    }
}

/// A store with the cache on, returned once its change feed is subscribed.
async fn cached_store(space: &TestSpace, max_age: Duration) -> RedisStore {
    let store = space.store(cached(max_age)).await;
    store.subscribe_ready().await.expect("the feed subscribes");
    store
}

async fn get(store: &RedisStore, key: &TaskKey) -> Option<Snapshot> {
    store.get(key).await.expect("Redis answers")
}

/// Polls `store` until it answers what `truth` answers, for at most 10 s (announcements take
/// milliseconds; the rest is room for a loaded machine).
async fn converges(store: &RedisStore, truth: &RedisStore, key: &TaskKey) -> Option<Snapshot> {
    let start = Instant::now();
    loop {
        let want = get(truth, key).await;
        let got = get(store, key).await;
        if got == want {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cached store still answers {got:?} instead of {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn serves_from_memory_and_follows_other_processes() {
    let space = TestSpace::new();
    let reader = cached_store(&space, Duration::from_secs(600)).await;
    let writer = space.store(StoreConfig::default()).await;
    let k = video(1);
    assert_eq!(get(&reader, &k).await, None, "an unknown task");
    writer.apply(&progress(&k, 1, 10)).await.expect("applies");
    let first = converges(&reader, &writer, &k).await.expect("a snapshot");
    assert_eq!(first.state.percent.get(), 10);

    // Deleted behind the store's back (no announcement): the cached answer is still served,
    // which shows it does not come from Redis.
    let mut raw = space.raw().await;
    let _: i64 = raw.del(space.keys.record(&k)).await.expect("DEL");
    assert_eq!(get(&writer, &k).await, None);
    assert_eq!(get(&reader, &k).await, Some(first));

    // Announced writes of another process replace it, deletions too.
    writer.apply(&progress(&k, 2, 40)).await.expect("applies");
    let second = converges(&reader, &writer, &k).await.expect("a snapshot");
    assert_eq!(second.state.percent.get(), 40);
    writer
        .apply(&Write::delete(
            k.clone(),
            Fence::new(2, 1, 0).expect("fence"),
        ))
        .await
        .expect("applies");
    assert_eq!(converges(&reader, &writer, &k).await, None);
}

#[tokio::test]
async fn entries_age_out_after_max_age() {
    let space = TestSpace::new();
    // Long enough that the read right after the fill is surely inside it on a loaded machine;
    // the read after it can only be later.
    let max_age = Duration::from_secs(2);
    let reader = cached_store(&space, max_age).await;
    let writer = space.store(StoreConfig::default()).await;
    let k = video(2);
    writer.apply(&progress(&k, 1, 10)).await.expect("applies");
    converges(&reader, &writer, &k).await.expect("a snapshot");
    let filled = Instant::now();
    let mut raw = space.raw().await;
    let _: i64 = raw.del(space.keys.record(&k)).await.expect("DEL");
    let cached = get(&reader, &k).await;
    assert!(
        filled.elapsed() < max_age,
        "the machine stalled {:?}: nothing measured",
        filled.elapsed()
    );
    assert!(cached.is_some(), "served from memory");
    tokio::time::sleep(max_age + Duration::from_millis(100)).await;
    assert_eq!(get(&reader, &k).await, None, "read again from Redis");
}

#[tokio::test]
async fn a_writing_process_reads_its_own_writes_at_once() {
    let space = TestSpace::new();
    let store = cached_store(&space, Duration::from_secs(600)).await;
    let k = video(3);
    for seq in 1..=200u64 {
        let pct = u8::try_from(seq / 3).expect("small");
        store.apply(&progress(&k, seq, pct)).await.expect("applies");
        let snap = get(&store, &k).await.expect("a snapshot");
        assert_eq!(snap.fence.seq, seq, "read right after write {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_reads_and_writes_every_answer_ends_at_the_newest_write() {
    let space = TestSpace::new();
    // A cache far smaller than the tasks, so reads keep missing and filling while the writer
    // moves every task. (The exact interleaving where a fill loses to an announcement is too
    // narrow to hit reliably over loopback; `cache.rs`'s unit tests pin that rule.)
    let reader = space
        .store(StoreConfig {
            read_cache: Some(ReadCacheConfig {
                entries: 64,
                max_age: Duration::from_secs(600),
            }),
            ..StoreConfig::default()
        })
        .await;
    reader.subscribe_ready().await.expect("the feed subscribes");
    let reader = Arc::new(reader);
    let writer = space.store(StoreConfig::default()).await;
    let keys: Vec<TaskKey> = (100..300).map(video).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let (reader, keys, stop) = (reader.clone(), keys.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = &keys[(n * 7 + r * 50) % keys.len()];
                reader.get(k).await.expect("Redis answers");
                n += 1;
            }
            n
        }));
    }
    const ROUNDS: u64 = 100;
    for seq in 1..=ROUNDS {
        let writes: Vec<Write> = keys
            .iter()
            .map(|k| progress(k, seq, u8::try_from(seq / 2).expect("small")))
            .collect();
        writer.apply_many(&writes).await.expect("applies");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader ran");
    }
    assert!(reads > 1000, "the readers ran ({reads} reads)");
    // Every task ends at the newest write once the last announcements land (milliseconds; up
    // to 10 s allowed for a loaded machine — a cache entry stuck at an older write never does).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stale = Vec::new();
        for k in &keys {
            let seq = get(&reader, k).await.map(|s| s.fence.seq);
            if seq != Some(ROUNDS) {
                stale.push((k.task.clone(), seq));
            }
        }
        if stale.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "stale answers: {stale:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_lost_feed_stops_the_cache() {
    let own = OwnRedis::start();
    let space = TestSpace::on(&own.url());
    let reader = cached_store(&space, Duration::from_secs(600)).await;
    let writer = space.store(StoreConfig::default()).await;
    let k = video(4);
    writer.apply(&progress(&k, 1, 10)).await.expect("applies");
    converges(&reader, &writer, &k).await.expect("a snapshot");

    // Cut the feed's connection; changes from now until it is back are never announced to it.
    let mut raw = space.raw().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "the feed's connection was killed");
    let _: i64 = raw.del(space.keys.record(&k)).await.expect("DEL");
    // Only a cache that forgot everything on the loss can answer the truth (max_age is long).
    assert_eq!(converges(&reader, &writer, &k).await, None);
}
