//! The Redis store on a real Redis Cluster (3 masters + 3 replicas, started by `scripts/test`;
//! `JOBPULSE_TEST_REDIS_CLUSTER_NODES`): writes of many tenants in one call, the sharded change
//! feed (a process hears the tenants it follows, and only those), the read cache kept exact on
//! it, `legacy_read` refused, and what a change costs on the cluster bus (`SPUBLISH` against
//! `PUBLISH`). The differential test (`differential.rs`) also runs on the cluster. One test
//! starts a cluster of its own and kills a master: the store and its cache ride the failover.

mod common;

use std::time::{Duration, Instant};

use common::TestSpace;
use jobpulse_domain::{Fence, Percent, State, TaskId, TaskKey, TenantId, VideoId, VideoStatus};
use jobpulse_domain::{Outcome, Write};
use jobpulse_store::{
    ChangesSince, ReadCacheConfig, RedisOptions, RedisStore, RedisTarget, Snapshot, StatusStore,
    StoreConfig, StoreError,
};
use jobpulse_testkit::cluster::OwnCluster;

fn video(tenant: i64, v: i64) -> TaskKey {
    TaskKey::video(
        TenantId::new(tenant).expect("valid tenant"),
        VideoId::new(v).expect("valid video"),
    )
}

fn progress(key: &TaskKey, seq: u64, pct: u8) -> Write {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(pct).expect("valid percent");
    Write::set(key.clone(), Fence::new(1, 1, seq).expect("fence"), s).expect("valid write")
}

fn cached() -> StoreConfig {
    StoreConfig {
        read_cache: Some(ReadCacheConfig {
            entries: 10_000,
            max_age: Duration::from_secs(600),
        }),
        ..StoreConfig::default()
    }
}

async fn get(store: &RedisStore, key: &TaskKey) -> Option<Snapshot> {
    store.get(key).await.expect("the cluster answers")
}

#[tokio::test]
async fn one_call_writes_and_reads_many_tenants_slots() {
    let Some(space) = TestSpace::cluster() else {
        return;
    };
    let store = space.store(StoreConfig::default()).await;
    // 40 tenants hash to many slots on all three masters; one apply_many takes them all.
    let keys: Vec<TaskKey> = (1..=40).map(|t| video(t, 7)).collect();
    let writes: Vec<Write> = keys.iter().map(|k| progress(k, 1, 30)).collect();
    let waits_before = command_calls(&space, "wait");
    let outcomes = store
        .apply_many(&writes)
        .await
        .expect("the cluster answers");
    // Each tenant's pipeline ended with WAIT 1: acknowledged by a replica before returning.
    let waits = command_calls(&space, "wait") - waits_before;
    assert!(waits >= 40, "{waits} WAITs for 40 tenants' pipelines");
    assert_eq!(outcomes.len(), keys.len());
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Applied { .. })),
        "{outcomes:?}"
    );
    // Two writes of one task in one call keep their order: the older one is stale.
    let again = store
        .apply_many(&[
            progress(&keys[0], 3, 60),
            progress(&keys[1], 2, 50),
            progress(&keys[0], 2, 40),
        ])
        .await
        .expect("the cluster answers");
    assert!(matches!(again[0], Outcome::Applied { .. }), "{again:?}");
    assert!(matches!(again[1], Outcome::Applied { .. }), "{again:?}");
    assert!(matches!(again[2], Outcome::Stale { .. }), "{again:?}");
    for (i, k) in keys.iter().enumerate() {
        let snap = get(&store, k).await.expect("written");
        let want = match i {
            0 => 60,
            1 => 50,
            _ => 30,
        };
        assert_eq!(snap.state.percent.get(), want, "{k}");
        let many = store
            .get_many(
                k.tenant,
                &[k.task.clone(), TaskId::Video(VideoId::new(8).expect("id"))],
            )
            .await
            .expect("the cluster answers");
        assert_eq!(many[0].as_ref().map(|s| s.rev), Some(snap.rev));
        assert_eq!(many[1], None);
        match store
            .changes_since(k.tenant, "0-0", 10)
            .await
            .expect("the cluster answers")
        {
            ChangesSince::Changes(c) => assert!(c.iter().all(|(_, t)| *t == k.task)),
            ChangesSince::Expired => panic!("the change log of tenant {} is missing", k.tenant),
        }
    }
}

#[tokio::test]
async fn a_process_hears_the_tenants_it_follows_and_only_those() {
    let Some(space) = TestSpace::cluster() else {
        return;
    };
    let reader = space.store(StoreConfig::default()).await;
    let writer = space.store(StoreConfig::default()).await;
    let mut feed = reader.subscribe_ready().await.expect("the feed connects");
    let (a, b) = (video(101, 1), video(202, 1));
    reader.follow(a.tenant).await.expect("follows tenant 101");
    // B first: were it delivered, it would come before A's change.
    writer.apply(&progress(&b, 1, 10)).await.expect("applies");
    writer.apply(&progress(&a, 1, 20)).await.expect("applies");
    let got = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("a change arrives")
        .expect("the feed is open");
    assert_eq!(
        got.key, a,
        "the first change heard is the followed tenant's"
    );
    assert_eq!(got.snapshot.map(|s| s.state.percent.get()), Some(20));
    reader.follow(b.tenant).await.expect("follows tenant 202");
    writer.apply(&progress(&b, 2, 30)).await.expect("applies");
    let got = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("a change arrives")
        .expect("the feed is open");
    assert_eq!(got.key, b);
    assert_eq!(got.snapshot.map(|s| s.state.percent.get()), Some(30));
    assert!(feed.try_recv().is_err(), "nothing else was announced");
}

#[tokio::test]
async fn the_read_cache_follows_writes_of_other_processes_on_the_cluster() {
    let Some(space) = TestSpace::cluster() else {
        return;
    };
    let reader = space.store(cached()).await;
    let writer = space.store(StoreConfig::default()).await;
    let k = video(303, 5);
    writer.apply(&progress(&k, 1, 10)).await.expect("applies");
    // The first read starts following the tenant; reads are cached once it is followed.
    reader.follow(k.tenant).await.expect("follows");
    assert_eq!(
        get(&reader, &k).await.map(|s| s.state.percent.get()),
        Some(10)
    );
    let cluster = redis::cluster::ClusterClient::new(match &space.target {
        RedisTarget::Cluster(nodes) => nodes.clone(),
        RedisTarget::Single(_) => unreachable!("a cluster space"),
    })
    .expect("valid nodes");
    let mut raw = cluster
        .get_async_connection()
        .await
        .expect("the cluster answers");
    // Deleted behind the store's back (no announcement): still served, so from memory.
    let _: i64 = redis::cmd("DEL")
        .arg(space.keys.record(&k))
        .query_async(&mut raw)
        .await
        .expect("deleted");
    assert_eq!(
        get(&reader, &k).await.map(|s| s.state.percent.get()),
        Some(10),
        "the cached answer is served without a round trip"
    );
    // A write of another process is announced on the tenant's shard channel and followed.
    writer.apply(&progress(&k, 2, 55)).await.expect("applies");
    let start = Instant::now();
    loop {
        let got = get(&reader, &k).await.map(|s| s.state.percent.get());
        if got == Some(55) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cache still answers {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn legacy_read_is_refused_on_a_cluster() {
    let Some(space) = TestSpace::cluster() else {
        return;
    };
    let config = StoreConfig {
        legacy_read: true,
        ..StoreConfig::default()
    };
    let err = RedisStore::connect_to(
        &space.target,
        space.keys.clone(),
        config,
        RedisOptions::default(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(&err, StoreError::Config(m) if m.contains("legacy_read") && m.contains("slot")),
        "{err}"
    );
}

/// Sums a counter of `CLUSTER INFO` over every node.
fn cluster_stat(space: &TestSpace, name: &str) -> u64 {
    let mut total = 0;
    for node in all_nodes(&space.url) {
        let mut con = redis::Client::open(node.as_str())
            .and_then(|c| c.get_connection())
            .expect("a node answers");
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut con)
            .expect("CLUSTER INFO");
        total += info
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// Calls of one command (`INFO commandstats`) summed over every node.
fn command_calls(space: &TestSpace, command: &str) -> u64 {
    let mut total = 0;
    for node in all_nodes(&space.url) {
        let mut con = redis::Client::open(node.as_str())
            .and_then(|c| c.get_connection())
            .expect("a node answers");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut con)
            .expect("INFO");
        total += info
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn all_nodes(seed: &str) -> Vec<String> {
    let mut con = redis::Client::open(seed)
        .and_then(|c| c.get_connection())
        .expect("the seed answers");
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut con)
        .expect("CLUSTER NODES");
    nodes
        .lines()
        .filter(|l| !l.contains("fail"))
        .filter_map(|l| l.split(' ').nth(1))
        .filter_map(|a| a.split('@').next())
        .map(|a| format!("redis://{a}"))
        .collect()
}

/// What one change costs the cluster bus: `SPUBLISH` reaches the shard's replicas only,
/// `PUBLISH` every other node. Measured from `CLUSTER INFO`'s message counters over all nodes.
#[tokio::test]
async fn a_change_is_published_to_its_shard_not_to_every_node() {
    let Some(space) = TestSpace::cluster() else {
        return;
    };
    let store = space.store(StoreConfig::default()).await;
    let nodes = all_nodes(&space.url).len() as u64;
    const N: u64 = 200;
    let writes: Vec<Write> = (0..N)
        .map(|i| progress(&video(500 + (i % 20) as i64, 1), i / 20 + 1, 1))
        .collect();
    let shard_before = cluster_stat(&space, "cluster_stats_messages_publishshard_sent");
    let applied = store
        .apply_many(&writes)
        .await
        .expect("the cluster answers");
    assert!(applied.iter().all(|o| matches!(o, Outcome::Applied { .. })));
    let shard_after = cluster_stat(&space, "cluster_stats_messages_publishshard_sent");
    // The same number of plain PUBLISHes, as the single-node design would send on a cluster.
    let mut con = redis::Client::open(space.url.as_str())
        .and_then(|c| c.get_connection())
        .expect("the seed answers");
    let publish_before = cluster_stat(&space, "cluster_stats_messages_publish_sent");
    for _ in 0..N {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{}:changes", space.keys.prefix()))
            .arg("x")
            .query(&mut con)
            .expect("published");
    }
    let publish_after = cluster_stat(&space, "cluster_stats_messages_publish_sent");
    let sharded = (shard_after - shard_before) as f64 / N as f64;
    let plain = (publish_after - publish_before) as f64 / N as f64;
    eprintln!(
        "FIGURE cluster bus messages per change: SPUBLISH {sharded:.2}, PUBLISH {plain:.2} \
         ({nodes} nodes; other tests may add to the first)"
    );
    assert!(
        plain >= (nodes - 1) as f64,
        "PUBLISH reaches every other node"
    );
    // Each shard has one replica; parallel tests on the cluster may add some messages.
    assert!(
        sharded < plain / 2.0,
        "SPUBLISH should reach the shard's replicas only: {sharded} vs {plain} per change"
    );
}

/// A master is SIGKILLed; its replica is promoted (`cluster-node-timeout` 1 s). Writes fail
/// (`Unavailable`) until then and succeed after; the cached reader's feed notices the dropped
/// connection, empties its cache, subscribes again on the new master and counts a gap; it never
/// serves the value from before the failover once a newer one is written.
#[tokio::test]
async fn a_master_failover_is_ridden_out_and_the_cache_stays_exact() {
    let mut cluster = OwnCluster::start();
    let space = TestSpace::on_cluster(cluster.nodes());
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        reconnect_retries: 1,
        ..RedisOptions::default()
    };
    let connect = |config: StoreConfig| {
        RedisStore::connect_to(&space.target, space.keys.clone(), config, options.clone())
    };
    let reader = connect(cached()).await.expect("connects");
    let writer = connect(StoreConfig::default()).await.expect("connects");
    let mut feed = reader.subscribe_ready().await.expect("the feed connects");
    let mut gaps = reader.feed_gaps();
    let k = video(404, 9);
    reader.follow(k.tenant).await.expect("follows");
    writer.apply(&progress(&k, 1, 10)).await.expect("applies");
    let start = Instant::now();
    while get(&reader, &k).await.map(|s| s.state.percent.get()) != Some(10) {
        assert!(start.elapsed() < Duration::from_secs(10), "never read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while feed.try_recv().is_ok() {}

    let master = cluster.master_of(&space.keys.record(&k));
    let killed = Instant::now();
    cluster.kill(master);
    // Write until the promoted replica takes it.
    let mut seq = 2;
    let mut failures = 0;
    loop {
        match writer.apply(&progress(&k, seq, 50)).await {
            Ok(Outcome::Applied { .. }) => break,
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(StoreError::Unavailable(_) | StoreError::Protocol(_)) => failures += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
        // While the shard is down the reader must never answer 50's predecessor from memory
        // as if nothing happened for long: it reads through (and fails) or answers 10.
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = killed.elapsed();
    // From here the reader must converge to 50 and never go back to 10.
    let mut seen_50 = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match reader.get(&k).await {
            Ok(Some(s)) if s.state.percent.get() == 50 => {
                seen_50.get_or_insert(killed.elapsed());
            }
            Ok(other) => assert!(
                seen_50.is_none(),
                "after answering 50 the reader answered {other:?}"
            ),
            Err(_) => assert!(seen_50.is_none(), "failed after recovering"),
        }
        if seen_50.is_some() && *gaps.borrow_and_update() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_50 = seen_50.expect("the reader converged to the write after the failover");
    assert!(*gaps.borrow() > 0, "the feed reported the gap");
    // After the resync the tenant's changes are heard again, from the new master.
    let resynced = Instant::now();
    let mut pct = 60;
    let got = loop {
        seq += 1;
        writer
            .apply(&progress(&k, seq, pct))
            .await
            .expect("applies");
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), feed.recv()).await
            && c.key == k
            && c.snapshot.as_ref().map(|s| s.state.percent.get()) == Some(pct)
        {
            break c;
        }
        assert!(
            resynced.elapsed() < Duration::from_secs(15),
            "the feed never came back"
        );
        pct = (pct + 1).min(99);
    };
    assert_eq!(got.key, k);
    eprintln!(
        "FIGURE cluster failover: writes failed for {:.1} s ({failures} attempts) until the \
         replica was promoted; the cached reader answered the new value {:.1} s after the kill",
        promoted.as_secs_f64(),
        seen_50.as_secs_f64()
    );
}

/// A write that no replica acknowledged is reported as not replicated while its master has a
/// standby, and the danger is real: with the replication link cut, a failover loses it. After
/// the failover (the old master failed, so the new one has no standby) the same write, sent
/// again as the outbox relay does, is applied and reported replicated.
#[tokio::test]
async fn a_write_no_replica_acknowledged_is_reported_until_it_is_safe() {
    let mut cluster = OwnCluster::start();
    let space = TestSpace::on_cluster(cluster.nodes());
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        reconnect_retries: 1,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_to(
        &space.target,
        space.keys.clone(),
        StoreConfig::default(),
        options,
    )
    .await
    .expect("connects");
    let k = video(405, 1);
    // A healthy replica acknowledges (on a loaded machine maybe not within the first 50 ms:
    // the same write is sent again, as the relay would).
    let healthy = Instant::now();
    loop {
        let d = store
            .apply_many_durable(&[progress(&k, 1, 10)])
            .await
            .expect("applies");
        if d[0].replicated {
            break;
        }
        assert!(
            healthy.elapsed() < Duration::from_secs(10),
            "a healthy replica never acknowledged: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let master = cluster.master_of(&space.keys.record(&k));
    cluster.cut_replication(master);
    let lost = progress(&k, 2, 20);
    let started = Instant::now();
    let second = store
        .apply_many_durable(std::slice::from_ref(&lost))
        .await
        .expect("applies");
    let waited = started.elapsed();
    assert!(
        matches!(second[0].outcome, Outcome::Applied { .. }),
        "{second:?}"
    );
    assert!(
        !second[0].replicated,
        "no replica acknowledged, and the replica could still be promoted: {second:?}"
    );

    let killed = Instant::now();
    cluster.kill(master);
    // Until the replica is promoted the write fails; then the promoted replica does not hold
    // it: sending it again applies it (and nothing is left to fail over to).
    let again = loop {
        match store.apply_many_durable(std::slice::from_ref(&lost)).await {
            Ok(d) => break d,
            Err(StoreError::Unavailable(_) | StoreError::Protocol(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let promoted = killed.elapsed();
    assert!(
        matches!(again[0].outcome, Outcome::Applied { .. }),
        "the promoted replica lost the unacknowledged write, so it applies again: {again:?}"
    );
    // The old master may be reported failed a moment after the promotion: until then the
    // answer is still "not replicated" (safe side); within seconds it is replicated.
    let safe = Instant::now();
    loop {
        let d = store
            .apply_many_durable(std::slice::from_ref(&lost))
            .await
            .expect("applies");
        assert!(matches!(d[0].outcome, Outcome::Stale { .. }), "{d:?}");
        if d[0].replicated {
            break;
        }
        assert!(
            safe.elapsed() < Duration::from_secs(10),
            "a master without a standby still reported unreplicated writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read = store.get(&k).await.expect("reads").expect("a record");
    assert_eq!(read.state.percent.get(), 20);
    eprintln!(
        "FIGURE unreplicated write: WAIT gave up after {} ms; the failover {:.1} s after the kill \
         lost it; sent again it applied, and was reported replicated {:.1} s after the promotion",
        waited.as_millis(),
        promoted.as_secs_f64(),
        safe.elapsed().as_secs_f64()
    );
}
