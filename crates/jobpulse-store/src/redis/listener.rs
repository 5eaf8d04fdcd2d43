//! The change feed: one background task per store that holds a dedicated pub/sub connection to
//! the changes channel and forwards every announced change into the store's broadcast channel.
//!
//! It starts lazily, on the first `subscribe` (a worker that only writes never opens it), and
//! is aborted when the store is dropped. After a drop of the connection (or a failed keep-alive
//! PING) it reconnects with exponential backoff (100 ms to 5 s), logging a warning once per
//! failure streak and an info line when it is back. Changes announced while it is disconnected
//! are missed: pub/sub keeps nothing, so SSE clients resume with `changes_since` and their last
//! cursor, which covers the gap.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::PubSub;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::cache::ReadCache;
use super::record::parse_change;
use crate::{Change, Subscription};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A blackholed connection sends nothing; a periodic PING is how we notice.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Aborts the task when the store goes away.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) struct Listener {
    client: ::redis::Client,
    channel: String,
    changes: broadcast::Sender<Change>,
    ready: Arc<watch::Sender<bool>>,
    gaps: Arc<watch::Sender<u64>>,
    task: OnceLock<AbortOnDrop>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    cache: Option<Arc<ReadCache>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL and its password: leave it out.
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .field("started", &self.task.get().is_some())
            .field("ready", &*self.ready.borrow())
            .finish()
    }
}

impl Listener {
    /// `timeout` bounds connecting, subscribing and each keep-alive PING. The feed is spawned on
    /// `runtime` (later, from `subscribe`, which may be called outside any runtime).
    pub(super) fn new(
        client: ::redis::Client,
        channel: String,
        changes: broadcast::Sender<Change>,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
        cache: Option<Arc<ReadCache>>,
    ) -> Self {
        Self {
            client,
            channel,
            changes,
            ready: Arc::new(watch::channel(false).0),
            gaps: Arc::new(watch::channel(0).0),
            task: OnceLock::new(),
            runtime,
            timeout,
            cache,
        }
    }

    pub(super) fn subscribe(&self) -> Subscription {
        let rx = self.changes.subscribe();
        self.task.get_or_init(|| {
            AbortOnDrop(self.runtime.spawn(run(
                self.client.clone(),
                self.channel.clone(),
                self.changes.clone(),
                self.ready.clone(),
                self.gaps.clone(),
                self.timeout,
                self.cache.clone(),
            )))
        });
        rx
    }

    /// Counts re-subscriptions after a loss: each may have missed changes.
    pub(super) fn gaps(&self) -> watch::Receiver<u64> {
        self.gaps.subscribe()
    }

    /// Waits until the feed is subscribed (at most `within`); `false` if it is not.
    pub(super) async fn wait_ready(&self, within: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }
}

async fn connect(client: &::redis::Client, channel: &str) -> Result<PubSub, ::redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

async fn run(
    client: ::redis::Client,
    channel: String,
    changes: broadcast::Sender<Change>,
    ready: Arc<watch::Sender<bool>>,
    gaps: Arc<watch::Sender<u64>>,
    timeout: Duration,
    cache: Option<Arc<ReadCache>>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    let mut was_subscribed = false;
    loop {
        let why = match tokio::time::timeout(timeout, connect(&client, &channel)).await {
            Ok(Ok(pubsub)) => {
                if failing {
                    tracing::info!(redis.channel = %channel, "change feed subscribed again");
                }
                failing = false;
                backoff = MIN_BACKOFF;
                if let Some(cache) = &cache {
                    cache.connected();
                }
                ready.send_replace(true);
                if was_subscribed {
                    // Changes published while we were away are gone: tell watchers to resync.
                    gaps.send_modify(|n| *n += 1);
                }
                was_subscribed = true;
                let why = forward(pubsub, &changes, timeout, cache.as_deref()).await;
                if let Some(cache) = &cache {
                    cache.lost();
                }
                ready.send_replace(false);
                why
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        if failing {
            tracing::debug!(redis.channel = %channel, error = %why, "change feed still down");
        } else {
            tracing::warn!(
                redis.channel = %channel,
                error = %why,
                "change feed lost; reconnecting (changes until then are missed by subscribers)"
            );
            failing = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Forwards messages until the connection ends; returns why it ended.
async fn forward(
    pubsub: PubSub,
    changes: &broadcast::Sender<Change>,
    timeout: Duration,
    cache: Option<&ReadCache>,
) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => match parse_change(msg.get_payload_bytes()) {
                    // No receivers is fine: nobody is watching right now.
                    Some(change) => {
                        if let Some(cache) = cache {
                            cache.apply(&change);
                        }
                        let _ = changes.send(change);
                    }
                    None => {
                        tracing::debug!("ignoring an unreadable change message");
                        // A change the cache cannot apply: start over.
                        if let Some(cache) = cache {
                            cache.connected();
                        }
                    }
                },
                None => return "connection closed".to_owned(),
            },
            _ = ping.tick() => match tokio::time::timeout(timeout, sink.ping::<Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return e.to_string(),
                Err(_) => return format!("keep-alive PING not answered within {timeout:?}"),
            },
        }
    }
}
