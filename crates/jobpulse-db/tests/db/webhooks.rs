//! Webhook deliveries in the database: enqueued in the transaction of the state change they
//! announce (one per subscribed live endpoint of the tenant), claimed under a lease, settled
//! by compare-and-set on the claim, listed with their attempts; endpoint bounds and removal.

use std::time::{Duration, Instant};

use jobpulse_db::webhooks::{AttemptRecord, DeliveryState, MAX_ENDPOINTS_PER_TENANT, Settle};
use jobpulse_db::{Caps, Claim, Db, DbError, Queue, WebhookEvent, now_ms};

use crate::helpers::{Backend, both, test_db};

const LEASE: Duration = Duration::from_secs(30);

async fn claim_soon(db: &Db) -> anyhow::Result<Claim> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(c) = db.claim(Queue::Video, "w1", LEASE, Caps::default()).await? {
            return Ok(c);
        }
        anyhow::ensure!(Instant::now() < until, "nothing to claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(status: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        at_ms: now_ms(),
        status,
        error: error.map(str::to_owned),
        duration_ms: 3,
    }
}

async fn state_changes_enqueue_their_deliveries(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?.tenant_id;
    let other = t.db.create_tenant("b", "B").await?.tenant_id;
    let url = "https://hooks.example.com/in";
    use WebhookEvent::*;
    let all =
        t.db.create_webhook_endpoint(
            a,
            url,
            &[VideoReady, VideoFailed, VideoRetryWait, VideoReady],
        )
        .await?;
    assert!(
        all.secret.starts_with("whsec_") && all.secret.len() == 6 + 44,
        "{}",
        all.secret
    );
    assert_eq!(
        all.endpoint.events,
        [VideoReady, VideoFailed, VideoRetryWait],
        "deduplicated"
    );
    let ready =
        t.db.create_webhook_endpoint(a, url, &[VideoReady])
            .await?
            .endpoint;
    let jobs =
        t.db.create_webhook_endpoint(a, url, &[JobDone])
            .await?
            .endpoint;
    let theirs =
        t.db.create_webhook_endpoint(other, url, &[VideoReady])
            .await?
            .endpoint;

    let v = t.db.create_video(a, None, "one", "k1").await?.value;
    // RETRY_WAIT, then READY; a change refused afterwards enqueues nothing.
    let c1 = claim_soon(&t.db).await?;
    t.db.fail(&c1, "boom", true).await?;
    let c2 = claim_soon(&t.db).await?;
    t.db.complete_video(&c2, "hls/master.m3u8", 12, 9).await?;
    assert!(
        t.db.complete_video(&c2, "hls/again.m3u8", 1, 10)
            .await
            .is_err()
    );
    assert!(t.db.fail(&c1, "late", true).await.is_err());

    let page =
        t.db.webhook_deliveries(a, &all.endpoint.id, None, 100)
            .await?;
    let types: Vec<&str> = page.items.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(types, ["video.ready", "video.retry_wait"], "newest first");
    let ready_d = &page.items[0];
    assert_eq!(ready_d.state, DeliveryState::Pending);
    assert!(ready_d.id.starts_with("msg_"));
    assert_eq!(ready_d.payload["type"], "video.ready");
    assert_eq!(ready_d.payload["data"]["video_id"], v.id.get());
    assert_eq!(ready_d.payload["data"]["status"], "READY");
    assert_eq!(ready_d.payload["data"]["hls_path"], "hls/master.m3u8");
    assert_eq!(ready_d.payload["data"]["duration"], 12);
    assert_eq!(page.items[1].payload["data"]["error_reason"], "boom");
    assert_eq!(
        t.db.webhook_deliveries(a, &ready.id, None, 100)
            .await?
            .items
            .len(),
        1
    );
    assert!(
        t.db.webhook_deliveries(a, &jobs.id, None, 100)
            .await?
            .items
            .is_empty()
    );
    assert!(
        t.db.webhook_deliveries(other, &theirs.id, None, 100)
            .await?
            .items
            .is_empty()
    );
    // Tenant isolation.
    let wrong =
        t.db.webhook_deliveries(other, &all.endpoint.id, None, 100)
            .await;
    assert!(matches!(wrong, Err(DbError::NotFound(_))), "{wrong:?}");
    // Paging.
    let first =
        t.db.webhook_deliveries(a, &all.endpoint.id, None, 1)
            .await?;
    let cursor = first.next.clone().expect("a next page");
    let second =
        t.db.webhook_deliveries(a, &all.endpoint.id, Some(&cursor), 1)
            .await?;
    assert_eq!(second.items.len(), 1);
    assert_ne!(second.items[0].id, first.items[0].id);
    assert!(second.next.is_none());

    // Claims: three due, leased (a second claim gets none).
    let due = t.db.claim_webhook_deliveries(10, LEASE).await?;
    assert_eq!(due.len(), 3);
    assert!(t.db.claim_webhook_deliveries(10, LEASE).await?.is_empty());
    let d0 = &due[0];
    assert_eq!(d0.url, url);
    assert!(!d0.endpoint_removed && d0.attempts == 0 && d0.secret.starts_with("whsec_"));
    // A stale claim settles nothing.
    let mut stale = d0.clone();
    stale.lease_token = "someone-else".into();
    assert!(
        !t.db
            .settle_webhook_delivery(&stale, &record(Some(204), None), &Settle::Delivered)
            .await?
    );
    assert!(
        t.db.settle_webhook_delivery(d0, &record(Some(204), None), &Settle::Delivered)
            .await?
    );
    assert!(
        !t.db
            .settle_webhook_delivery(d0, &record(Some(204), None), &Settle::Delivered)
            .await?
    );
    // Retry: due again at once, the attempt counted and listed.
    let d1 = &due[1];
    let retry = Settle::Retry(now_ms() - 1);
    assert!(
        t.db.settle_webhook_delivery(d1, &record(Some(500), Some("HTTP 500")), &retry)
            .await?
    );
    let again = t.db.claim_webhook_deliveries(10, LEASE).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (d1.id.as_str(), 1)
    );
    assert_eq!(
        again[0].first_attempt_at_ms, d1.first_attempt_at_ms,
        "the window starts once"
    );
    let dead = Settle::Dead("gave up".into());
    assert!(
        t.db.settle_webhook_delivery(&again[0], &record(None, Some("refused")), &dead)
            .await?
    );
    let all_items = [
        t.db.webhook_deliveries(a, &all.endpoint.id, None, 100)
            .await?
            .items,
        t.db.webhook_deliveries(a, &ready.id, None, 100)
            .await?
            .items,
    ]
    .concat();
    let d1_now = all_items.iter().find(|d| d.id == d1.id).expect("listed");
    assert_eq!(d1_now.state, DeliveryState::Dead);
    assert_eq!(d1_now.last_error.as_deref(), Some("gave up"));
    assert_eq!(d1_now.attempts, 2);
    assert_eq!(d1_now.attempt_log.len(), 2);
    assert_eq!(d1_now.attempt_log[0].status, Some(500));
    assert_eq!(d1_now.attempt_log[1].error.as_deref(), Some("refused"));
    assert!(d1_now.next_attempt_at_ms.is_none());

    // Removing an endpoint: its pending deliveries go dead, it is gone for the tenant only.
    let wrong = t.db.remove_webhook_endpoint(other, &all.endpoint.id).await;
    assert!(matches!(wrong, Err(DbError::NotFound(_))), "{wrong:?}");
    let pending_owner = due[2].endpoint_id.clone();
    t.db.remove_webhook_endpoint(a, &pending_owner).await?;
    assert!(
        t.db.get_webhook_endpoint(a, &pending_owner)
            .await?
            .is_none()
    );
    assert!(
        !t.db
            .settle_webhook_delivery(&due[2], &record(Some(204), None), &Settle::Delivered)
            .await?
    );
    let listed = t.db.list_webhook_endpoints(a).await?;
    assert!(listed.iter().all(|e| e.id != pending_owner));

    // Bounds.
    let long = format!("https://x.example/{}", "a".repeat(3000));
    assert!(matches!(
        t.db.create_webhook_endpoint(a, &long, &[JobDone]).await,
        Err(DbError::Invalid(_))
    ));
    assert!(matches!(
        t.db.create_webhook_endpoint(a, url, &[]).await,
        Err(DbError::Invalid(_))
    ));
    let nobody = jobpulse_domain::TenantId::new(999)?;
    assert!(matches!(
        t.db.create_webhook_endpoint(nobody, url, &[JobDone]).await,
        Err(DbError::NotFound(_))
    ));
    let live = t.db.list_webhook_endpoints(a).await?.len() as i64;
    for _ in live..MAX_ENDPOINTS_PER_TENANT {
        t.db.create_webhook_endpoint(a, url, &[JobDone]).await?;
    }
    let over = t.db.create_webhook_endpoint(a, url, &[JobDone]).await;
    assert!(matches!(over, Err(DbError::Invalid(_))), "{over:?}");
    Ok(())
}
both!(state_changes_enqueue_their_deliveries);

/// Senders in several processes claim different deliveries (PostgreSQL: `SKIP LOCKED`; SQLite:
/// one writer at a time), and every due delivery is claimed once.
async fn concurrent_senders_never_share_a_delivery(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?.tenant_id;
    for _ in 0..12 {
        t.db.create_webhook_endpoint(a, "https://hooks.example.com/", &[WebhookEvent::VideoReady])
            .await?;
    }
    t.db.create_video(a, None, "one", "k1").await?;
    let c = claim_soon(&t.db).await?;
    t.db.complete_video(&c, "hls/master.m3u8", 1, 2).await?;
    let other = t.second_handle().await?;
    let take = |db: Db| async move {
        let mut got = Vec::new();
        loop {
            let batch = db.claim_webhook_deliveries(2, LEASE).await?;
            if batch.is_empty() {
                return Ok::<_, DbError>(got);
            }
            got.extend(batch.into_iter().map(|d| d.id));
        }
    };
    let (x, y) = tokio::join!(take(t.db.clone()), take(other.clone()));
    let (x, y) = (x?, y?);
    let mut all: Vec<String> = x.iter().chain(y.iter()).cloned().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (12, 12), "{x:?} {y:?}");
    other.close().await;
    Ok(())
}
both!(concurrent_senders_never_share_a_delivery);

/// Settled deliveries are purged with their attempts once old enough; pending ones never.
async fn settled_deliveries_are_purged(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?.tenant_id;
    let ep =
        t.db.create_webhook_endpoint(a, "https://hooks.example.com/", &[WebhookEvent::VideoReady])
            .await?
            .endpoint;
    for k in ["k1", "k2"] {
        t.db.create_video(a, None, k, k).await?;
        let c = claim_soon(&t.db).await?;
        t.db.complete_video(&c, "hls/master.m3u8", 1, 2).await?;
    }
    let due = t.db.claim_webhook_deliveries(1, LEASE).await?;
    assert_eq!(due.len(), 1);
    assert!(
        t.db.settle_webhook_delivery(&due[0], &record(Some(204), None), &Settle::Delivered)
            .await?
    );
    assert_eq!(
        t.db.purge_webhook_deliveries(now_ms() - 60_000, 10).await?,
        0
    );
    assert_eq!(
        t.db.purge_webhook_deliveries(now_ms() + 1_000, 10).await?,
        1
    );
    let left = t.db.webhook_deliveries(a, &ep.id, None, 10).await?.items;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Pending);
    assert_eq!(t.raw_int("SELECT COUNT(*) FROM webhook_attempts").await?, 0);
    Ok(())
}
both!(settled_deliveries_are_purged);
