//! The relay on a Redis Cluster whose replica does not acknowledge: a row stays until its write
//! is safe — a replica acknowledged it, or its master has nothing left to fail over to — and a
//! failover in between loses nothing. PostgreSQL and a cluster of the test's own (its master is
//! killed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::{Caps, Db, Queue};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{Status, TaskKey, TenantId, VideoStatus};
use jobpulse_store::{
    RedisOptions, RedisStore, RedisTarget, SharedStore, StatusStore, StoreConfig,
};
use jobpulse_sync::{Relay, RelayConfig};
use jobpulse_testkit::cluster::OwnCluster;
use jobpulse_testkit::{Backend, TestDatabase, unique_prefix};

const LEASE: Duration = Duration::from_secs(30);

async fn connect(cluster: &OwnCluster, keys: &KeySpace) -> anyhow::Result<Arc<RedisStore>> {
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        reconnect_retries: 1,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_to(
        &RedisTarget::Cluster(cluster.nodes()),
        keys.clone(),
        StoreConfig::default(),
        options,
    )
    .await?;
    Ok(Arc::new(store))
}

/// Relays until the outbox is empty (the first writes on a fresh cluster may wait for their
/// acknowledgement a little longer than the store's 50 ms).
async fn drain(relay: &Relay, db: &Db, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let _ = relay.relay_batch().await;
        if db.outbox_pending().await? == 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "the outbox did not drain in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tenant whose records live on a master other than `not`.
async fn tenant_away_from(
    db: &Db,
    cluster: &OwnCluster,
    keys: &KeySpace,
    not: u16,
) -> anyhow::Result<(TenantId, u16)> {
    for i in 0..64 {
        let t = db.create_tenant(&format!("other{i}"), "Other").await?;
        let probe = TaskKey::video(t.tenant_id, jobpulse_domain::VideoId::new(1)?);
        let master = cluster.master_of(&keys.record(&probe));
        if master != not {
            return Ok((t.tenant_id, master));
        }
    }
    anyhow::bail!("no tenant away from {not}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stay_until_their_writes_are_safe_and_a_failover_loses_none() -> anyhow::Result<()> {
    let mut cluster = OwnCluster::start();
    let database = TestDatabase::new(Backend::Postgres).await?;
    let db = database.db.clone();
    let keys = KeySpace::new(&unique_prefix())?;
    let store = connect(&cluster, &keys).await?;
    let relay = Relay::new(db.clone(), store.clone() as SharedStore);

    let a = db.create_tenant("a", "A").await?;
    let video = db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let key = video.key();
    drain(&relay, &db, Duration::from_secs(10)).await?;

    // The tenant's master loses its replication link: what it takes now, no replica has.
    let master = cluster.master_of(&keys.record(&key));
    cluster.cut_replication(master);
    let claim = db
        .claim(Queue::Video, "w", LEASE, Caps::default())
        .await?
        .context("a job")?;
    let report = relay.relay_batch().await?;
    assert_eq!(
        (report.applied, report.unreplicated),
        (1, 1),
        "PROCESSING applied but kept: {report:?}"
    );
    assert_eq!(db.outbox_pending().await?, 1, "the row stays");
    // A worker's own publishing of its final write keeps its row the same way.
    let done = db.complete_video(&claim, "hls/v.m3u8", 5, 3).await?;
    let report = relay.publish_now(&done.outbox).await?;
    assert_eq!(report.unreplicated, 1, "{report:?}");
    assert_eq!(db.outbox_pending().await?, 2, "both rows stay");
    let ready = store.get(&key).await?.context("a record")?;
    assert_eq!(ready.state.status, Status::Video(VideoStatus::Ready));

    // The master dies before its replica has READY; the replica is promoted without it. The
    // relay sends the kept rows again until the new master takes them; it has no standby (its
    // old master is dead), so they are safe there and deleted.
    cluster.kill(master);
    let drained = drain(&relay, &db, Duration::from_secs(30)).await?;
    let after = store
        .get(&key)
        .await?
        .context("a record after the failover")?;
    assert_eq!(
        after.state.status,
        Status::Video(VideoStatus::Ready),
        "READY survived the failover"
    );

    // A row whose write stays unacknowledged is given up after `unreplicated_retry_for`, with
    // the write standing on its master.
    let (other, other_master) = tenant_away_from(&db, &cluster, &keys, master).await?;
    let quick = Relay::new(db.clone(), store.clone() as SharedStore).with_config(RelayConfig {
        unreplicated_retry_for: Duration::ZERO,
        ..RelayConfig::default()
    });
    drain(&quick, &db, Duration::from_secs(10)).await?;
    cluster.cut_replication(other_master);
    let v2 = db.create_video(other, None, "v2", "k").await?.value;
    let report = quick.relay_batch().await?;
    assert_eq!(
        (
            report.applied,
            report.unreplicated,
            report.unreplicated_given_up
        ),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(db.outbox_pending().await?, 0);
    assert!(store.get(&v2.key()).await?.is_some(), "the write stands");

    eprintln!(
        "FIGURE relay on a cut replica: 2 rows kept (PROCESSING, READY); master killed; outbox \
         empty {:.1} s after the kill, READY on the promoted master",
        drained.as_secs_f64()
    );
    Ok(())
}
