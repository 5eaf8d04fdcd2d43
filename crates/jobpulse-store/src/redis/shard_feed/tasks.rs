//! The shard feed's background tasks: reading the push messages, subscribing again after a
//! drop, and the keep-alive that notices a master which stopped answering.

use std::sync::Arc;
use std::time::Duration;

use ::redis::PushInfo;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use tokio::sync::mpsc;

use super::{Inner, MAX_BACKOFF, MIN_BACKOFF};

/// How often the feed checks that every master still answers on its connection.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Every [`PING_EVERY`] while tenants are followed: a `PING` to every master on the feed's
/// connection; no answer within the timeout counts as a dropped connection.
pub(super) async fn keep_alive(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if inner.lock_followed().is_empty() {
            continue;
        }
        let Ok(mut conn) = inner.connection().await else {
            continue;
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let answer = tokio::time::timeout(
            inner.timeout,
            conn.route_command(::redis::cmd("PING"), routing),
        )
        .await;
        let why = match answer {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", inner.timeout),
        };
        tracing::warn!(
            error = %why,
            "a Redis Cluster master did not answer the change feed's keep-alive PING; \
             subscribing again (changes until then are re-read from the change log)"
        );
        inner.stop_serving();
        // The cluster client only times such a node out, reconnecting to the same address: a
        // fresh connection reads the topology (after the failover) anew.
        *inner.conn.lock().await = None;
        inner.resync.notify_one();
    }
}

pub(super) async fn read_pushes(inner: Arc<Inner>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(msg) = pushes.recv().await {
        inner.forward(msg);
    }
}

pub(super) async fn resync_loop(inner: Arc<Inner>) {
    loop {
        inner.resync.notified().await;
        let mut backoff = MIN_BACKOFF;
        let mut failures = 0u32;
        loop {
            match inner.resubscribe_all().await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "change feed: subscribing again failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(cache) = &inner.cache {
            cache.connected();
        }
        inner.gaps.send_modify(|n| *n += 1);
        tracing::info!("change feed subscribed again");
    }
}
