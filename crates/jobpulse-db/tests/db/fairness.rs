//! Fair claiming between tenants (issue 15 finding 9): a tenant with work waiting gets the next
//! free slot before a tenant that already runs jobs, and the default per-tenant caps keep one
//! tenant from taking every slot. Both queues, both databases.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use jobpulse_db::{Caps, Claim, Db, NewAiJob, Queue, TenantCaps};
use jobpulse_domain::{JobType, TenantId};

use crate::helpers::{Backend, both, test_db};

const LEASE: Duration = Duration::from_secs(30);

async fn enqueue(db: &Db, queue: Queue, tenant: TenantId, name: &str) -> anyhow::Result<()> {
    match queue {
        Queue::Video => {
            db.create_video(tenant, None, name, "k").await?;
        }
        Queue::Ai => {
            db.submit_ai_job(NewAiJob::new(tenant, JobType::parse("excel_parsing")?))
                .await?;
        }
    }
    Ok(())
}

/// The case: tenant 1 queued 8 imports and 2 workers run them; tenant 2 queues one
/// later. Each time a slot frees (the oldest running job ends), the next claim decides who runs.
/// Returns the position (1-based) of tenant 2's job in the claim order.
async fn position_of_the_late_tenant(
    db: &Db,
    queue: Queue,
    one: TenantId,
    two: TenantId,
) -> anyhow::Result<usize> {
    for i in 0..8 {
        enqueue(db, queue, one, &format!("one-{i}")).await?;
    }
    let caps = Caps::per_tenant(TenantCaps::default().of(queue));
    let mut running: VecDeque<Claim> = VecDeque::new();
    let mut order = Vec::new();
    for w in 0..2 {
        let c = db
            .claim(queue, &format!("w{w}"), LEASE, caps)
            .await?
            .context("a job for each of the 2 slots")?;
        order.push(c.tenant);
        running.push_back(c);
    }
    // Later (by at least a millisecond: AI jobs are ordered by creation time).
    tokio::time::sleep(Duration::from_millis(5)).await;
    enqueue(db, queue, two, "two-0").await?;
    while let Some(done) = running.pop_front() {
        db.fail(&done, "done here", false).await?;
        if let Some(c) = db.claim(queue, "w", LEASE, caps).await? {
            order.push(c.tenant);
            running.push_back(c);
        }
    }
    assert_eq!(order.len(), 9, "every job ran: {order:?}");
    let pos = order
        .iter()
        .position(|t| *t == two)
        .context("tenant 2's job ran")?;
    Ok(pos + 1)
}

async fn a_waiting_tenant_gets_the_next_free_slot(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let one = t.db.create_tenant("one", "One").await?.tenant_id;
    let two = t.db.create_tenant("two", "Two").await?.tenant_id;
    for queue in [Queue::Video, Queue::Ai] {
        let pos = position_of_the_late_tenant(&t.db, queue, one, two).await?;
        // Oldest first ran it 9th, after all of tenant 1's; fair claiming runs it in the first
        // slot that frees, the 3rd claim.
        assert_eq!(
            pos,
            3,
            "{}: tenant 2's job was claimed {pos}th",
            queue.as_str()
        );
    }
    Ok(())
}
both!(a_waiting_tenant_gets_the_next_free_slot);

async fn by_default_one_tenant_cannot_take_every_slot(b: Backend) -> anyhow::Result<()> {
    const SLOTS: usize = 8;
    let t = test_db(b).await?;
    let one = t.db.create_tenant("one", "One").await?;
    let two = t.db.create_tenant("two", "Two").await?;
    let defaults = TenantCaps::default();
    for queue in [Queue::Video, Queue::Ai] {
        for i in 0..SLOTS {
            enqueue(&t.db, queue, one.tenant_id, &format!("one-{i}")).await?;
        }
        let caps = Caps::per_tenant(defaults.of(queue));
        // Eight idle workers race for tenant 1's burst.
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..SLOTS {
            let db = t.db.clone();
            tasks.spawn(async move { db.claim(queue, &format!("w{w}"), LEASE, caps).await });
        }
        let mut taken = 0;
        while let Some(r) = tasks.join_next().await {
            if let Some(c) = r?? {
                assert_eq!(c.tenant, one.tenant_id);
                taken += 1;
            }
        }
        let cap = defaults.of(queue).context("a default cap")?;
        assert_eq!(
            taken,
            cap as usize,
            "{}: tenant 1 took {taken} of {SLOTS} slots",
            queue.as_str()
        );
        assert!(taken < SLOTS);
        // Tenant 2 arrives later and starts at once on a free slot.
        enqueue(&t.db, queue, two.tenant_id, "two-0").await?;
        let c =
            t.db.claim(queue, "late", LEASE, caps)
                .await?
                .context("a free slot for tenant 2")?;
        assert_eq!(c.tenant, two.tenant_id);
        assert!(
            t.db.claim(queue, "w", LEASE, caps).await?.is_none(),
            "tenant 1 is at its cap"
        );
    }
    Ok(())
}
both!(by_default_one_tenant_cannot_take_every_slot);
