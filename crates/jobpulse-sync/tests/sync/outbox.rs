//! The outbox and its relay: replays are harmless, an unavailable store loses nothing, several
//! relays may run at once.

use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{Caps, NewAiJob, Queue};
use jobpulse_domain::{JobType, Outcome, TaskKey};
use jobpulse_store::{MemoryStore, StatusStore};
use jobpulse_sync::{Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestDb, both, eventually, mismatches, test_db};

const LEASE: Duration = Duration::from_secs(30);

/// A mix of changes: uploads, claims, a success, a retry wait, a failure, a job.
async fn some_history(t: &TestDb) -> anyhow::Result<Vec<TaskKey>> {
    let a = t.db.create_tenant("a", "A").await?;
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(
            t.db.create_video(a.tenant_id, None, &format!("v{i}"), "k")
                .await?
                .value
                .key(),
        );
    }
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.complete_video(&c, "hls/a.m3u8", 5, 3).await?;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.fail(&c, "flaky", true).await?;
    let c =
        t.db.claim(Queue::Video, "w", LEASE, Caps::default())
            .await?
            .context("job")?;
    t.db.fail(&c, "broken", false).await?;
    t.db.claim(Queue::Video, "w", LEASE, Caps::default())
        .await?
        .context("job")?;
    let job =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, JobType::parse("excel_parsing")?))
            .await?;
    keys.push(job.value.job.key());
    Ok(keys)
}

async fn replaying_the_outbox_is_harmless(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let keys = some_history(&t).await?;
    let entries = t.db.outbox_entries(10_000).await?;
    assert!(entries.len() > keys.len(), "several changes per task");

    // Apply every row once, then all of them again: the second pass changes nothing.
    let once = MemoryStore::default();
    let writes: Vec<_> = entries.iter().map(|e| e.write.clone()).collect();
    once.apply_many(&writes).await?;
    let first: Vec<_> = {
        let mut v = Vec::new();
        for k in &keys {
            v.push(once.get(k).await?);
        }
        v
    };
    let again = once.apply_many(&writes).await?;
    assert!(
        again.iter().all(|o| matches!(o, Outcome::Stale { .. })),
        "a replayed write is stale: {again:?}"
    );
    for (k, before) in keys.iter().zip(&first) {
        assert_eq!(&once.get(k).await?, before, "{k}");
    }
    // Out of order (newest first) ends in the same states as written (what the store adds
    // across attempts depends on the order it saw them in, docs/contract.md §3b).
    let reversed = MemoryStore::default();
    let mut backwards = writes.clone();
    backwards.reverse();
    reversed.apply_many(&backwards).await?;
    for (k, before) in keys.iter().zip(&first) {
        let got = reversed.get(k).await?;
        assert_eq!(
            got.as_ref().map(|s| (s.fence, s.state.as_written())),
            before.as_ref().map(|s| (s.fence, s.state.as_written())),
            "{k}"
        );
    }
    // And the relay's result matches the database.
    t.drain().await?;
    assert_eq!(
        mismatches(&t.db, t.memory.as_ref(), &keys).await?,
        Vec::<String>::new()
    );
    Ok(())
}
both!(replaying_the_outbox_is_harmless);

async fn an_unavailable_store_loses_nothing(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    t.store.set_down(true);
    let keys = some_history(&t).await?;
    let pending = t.db.outbox_pending().await?;
    assert!(pending > 0);
    assert!(t.relay.relay_batch().await.is_err(), "the store is down");
    assert_eq!(t.db.outbox_pending().await?, pending, "rows stay");
    let attempts = t.raw_int("SELECT MIN(attempts) FROM outbox").await?;
    assert_eq!(attempts, 1, "the failed attempt is recorded on the rows");

    // The background relay keeps retrying and drains once the store is back.
    let token = CancellationToken::new();
    let relay = tokio::spawn(
        t.relay
            .clone()
            .with_config(RelayConfig {
                max_backoff: Duration::from_millis(100),
                ..RelayConfig::default()
            })
            .run(token.clone()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.db.outbox_pending().await?,
        pending,
        "still down, still kept"
    );
    t.store.set_down(false);
    eventually(Duration::from_secs(5), "the outbox to drain", || async {
        Ok(t.db.outbox_pending().await? == 0)
    })
    .await?;
    assert_eq!(
        mismatches(&t.db, t.memory.as_ref(), &keys).await?,
        Vec::<String>::new()
    );

    // While running, a new commit is published promptly (woken, not polled).
    let a = t.db.get_tenant_by_code("a").await?.context("tenant")?;
    let v = t.db.create_video(a.id, None, "late", "k").await?.value;
    eventually(
        Duration::from_millis(800),
        "the new video to be published",
        || async { Ok(t.memory.get(&v.key()).await?.is_some()) },
    )
    .await?;
    token.cancel();
    relay.await?;
    Ok(())
}
both!(an_unavailable_store_loses_nothing);

async fn several_relays_at_once(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let mut keys = Vec::new();
    for i in 0..300 {
        keys.push(
            t.db.create_video(a.tenant_id, None, &format!("v{i}"), "k")
                .await?
                .value
                .key(),
        );
    }
    let other = Relay::new(t.second_handle().await?, t.shared_store()).with_config(RelayConfig {
        batch_size: 50,
        ..RelayConfig::default()
    });
    let mine = t.relay.clone().with_config(RelayConfig {
        batch_size: 50,
        ..RelayConfig::default()
    });
    let (x, y) = tokio::join!(mine.drain(), other.drain());
    let (x, y) = (x?, y?);
    assert_eq!(t.db.outbox_pending().await?, 0);
    assert!(x.fetched + y.fetched >= 300);
    if b == Backend::Postgres {
        assert_eq!(
            x.fetched + y.fetched,
            300,
            "SKIP LOCKED: no row is published by both relays"
        );
    }
    assert_eq!(
        mismatches(&t.db, t.memory.as_ref(), &keys).await?,
        Vec::<String>::new()
    );
    Ok(())
}
both!(several_relays_at_once);

async fn undecodable_rows_do_not_block_the_relay(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    t.raw("INSERT INTO outbox (tenant_id, write_json, created_at) VALUES (1, '{\"nope\":1}', 0)")
        .await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?;
    let report = t.relay.drain().await?;
    assert_eq!((report.undecodable, report.applied), (1, 1));
    assert_eq!(t.db.outbox_pending().await?, 0);
    assert!(t.snapshot(&v.value.key()).await?.is_some());

    // publish_ids: a caller that kept only ids.
    let w = t.db.create_video(a.tenant_id, None, "w", "k").await?;
    let ids: Vec<i64> = w.outbox.iter().map(|e| e.id).collect();
    let r = t.relay.publish_ids(&ids).await?;
    assert_eq!(r.applied, 1);
    assert_eq!(t.db.outbox_pending().await?, 0);
    Ok(())
}
both!(undecodable_rows_do_not_block_the_relay);

/// Rows the relay keeps retrying (here: three failed attempts each, more than a batch) do not
/// hold back a newer row: the batch takes the rows that failed fewest times first.
async fn rows_that_keep_failing_do_not_starve_newer_rows(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    for i in 0..5 {
        t.db.create_video(a.tenant_id, None, &format!("old{i}"), "k")
            .await?;
    }
    t.raw("UPDATE outbox SET attempts = 3, last_error = 'not replicated'")
        .await?;
    let fresh = t.db.create_video(a.tenant_id, None, "fresh", "k").await?;
    let fresh_ids: Vec<i64> = fresh.outbox.iter().map(|e| e.id).collect();
    let batch = t.db.outbox_batch(fresh_ids.len()).await?;
    let taken: Vec<i64> = batch.rows().iter().map(|r| r.id).collect();
    batch.fail("not now").await?;
    assert_eq!(taken, fresh_ids, "the fresh rows first");
    // Now failed once, the fresh rows still come before the thrice-failed ones; among equals,
    // the oldest first; nothing is lost.
    let batch = t.db.outbox_batch(100).await?;
    let ids: Vec<i64> = batch.rows().iter().map(|r| r.id).collect();
    let (head, rest) = ids.split_at(fresh_ids.len());
    assert_eq!(head, fresh_ids.as_slice());
    assert!(rest.windows(2).all(|w| w[0] < w[1]), "{rest:?}");
    assert!(rest.iter().all(|id| id < &fresh_ids[0]));
    batch.fail("still not now").await?;
    assert_eq!(ids.len() as u64, t.db.outbox_pending().await?);
    Ok(())
}
both!(rows_that_keep_failing_do_not_starve_newer_rows);

/// A worker can claim a job and publish RUNNING before the submitter publishes the job's
/// PENDING (the API publishes after its commit; a waiting worker is woken by that commit). The
/// late PENDING is refused as stale — the read model never goes back — and its row is done:
/// a client subscribed before the submit sees RUNNING first. (This race made
/// `ai_worker import::issue_2000_sheet` flaky while it expected PENDING first.)
async fn a_claim_published_before_its_submit_wins(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let submitted =
        t.db.submit_ai_job(NewAiJob::new(a.tenant_id, JobType::parse("excel_parsing")?))
            .await?;
    let key = submitted.value.job.key();
    let claim =
        t.db.claim(Queue::Ai, "w", LEASE, Caps::default())
            .await?
            .context("the job is claimable at once")?;
    let running = t
        .relay
        .publish_now(std::slice::from_ref(&claim.outbox))
        .await?;
    assert_eq!(running.applied, 1, "{running:?}");
    let pending = t.relay.publish_now(&submitted.outbox).await?;
    assert_eq!(
        (pending.applied, pending.stale),
        (0, submitted.outbox.len() as u64),
        "{pending:?}"
    );
    let snap = t.snapshot(&key).await?.context("published")?;
    assert_eq!(snap.state.status.as_str(), "RUNNING");
    assert_eq!(t.db.outbox_pending().await?, 0, "both rows are done");
    Ok(())
}
both!(a_claim_published_before_its_submit_wins);
