//! The background services every long-running process with a database runs: the outbox relay,
//! the reconciler (repairs a read model that lost its data) and read-repair for misses.

use std::sync::Arc;

use jobpulse_api::MissHook;
use jobpulse_db::{Db, ReadRepairConfig, Reconciler, Relay};
use jobpulse_store::SharedStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// Handles to what [`start`] spawned.
pub struct Background {
    pub relay: Relay,
    pub on_miss: MissHook,
    pub tasks: JoinSet<()>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

/// Spawns relay, reconciler and read-repair; they stop with `shutdown`.
pub fn start(
    settings: &Settings,
    db: &Db,
    store: &SharedStore,
    shutdown: &CancellationToken,
) -> Background {
    log_tenant_caps(settings);
    let mut tasks = JoinSet::new();
    let relay = Relay::new(db.clone(), store.clone());
    tasks.spawn(relay.clone().run(shutdown.clone()));
    tasks.spawn(
        Reconciler::new(db.clone(), store.clone())
            .retention(settings.terminal_retention.map(|d| d.0))
            .run(shutdown.clone()),
    );
    let (handle, task) =
        jobpulse_db::read_repair(db.clone(), store.clone(), ReadRepairConfig::default());
    tasks.spawn(task.run(shutdown.clone()));
    let on_miss: MissHook = Arc::new(move |key| {
        handle.request(key.clone());
    });
    Background {
        relay,
        on_miss,
        tasks,
    }
}

/// Waits (bounded) for the background tasks after `shutdown` was cancelled.
pub async fn drain(mut tasks: JoinSet<()>) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), all)
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 10 s");
    }
}

/// States the per-tenant caps in effect (the workers' claims and the API's
/// `jobpulse_queue_tenant_capped` use them), and that `tenant_concurrency` is deprecated.
fn log_tenant_caps(settings: &Settings) {
    let caps = settings.tenant_caps();
    let show = |c: Option<u32>| c.map_or_else(|| "off".to_owned(), |n| n.to_string());
    if settings.tenant_concurrency.is_some() {
        tracing::warn!(
            "tenant_concurrency (JOBPULSE_TENANT_CONCURRENCY) is deprecated: it sets both \
             queues' caps where tenant_video_concurrency / tenant_job_concurrency are not given"
        );
    }
    tracing::info!(
        video = %show(caps.video),
        ai = %show(caps.ai),
        "per-tenant concurrency caps (jobs of one tenant running at once, all workers)"
    );
}
