//! The store's change feed, whichever Redis it runs on: one channel for every tenant on a
//! single node (`listener.rs`), or a sharded channel per followed tenant on a cluster
//! (`shard_feed.rs`).

use std::sync::Arc;
use std::time::Duration;

use jobpulse_domain::TenantId;
use tokio::sync::watch;

use super::listener::Listener;
use super::shard_feed::ShardFeed;
use crate::{StoreError, Subscription};

#[derive(Debug)]
pub(super) enum Feed {
    Global(Box<Listener>),
    Sharded(Arc<ShardFeed>),
}

impl Feed {
    pub(super) fn subscribe(&self) -> Subscription {
        match self {
            Feed::Global(l) => l.subscribe(),
            Feed::Sharded(f) => f.subscribe(),
        }
    }

    pub(super) fn gaps(&self) -> watch::Receiver<u64> {
        match self {
            Feed::Global(l) => l.gaps(),
            Feed::Sharded(f) => f.gaps(),
        }
    }

    pub(super) async fn wait_ready(&self, within: Duration) -> bool {
        match self {
            Feed::Global(l) => l.wait_ready(within).await,
            Feed::Sharded(f) => f.wait_ready(within).await,
        }
    }

    /// Whether reads of `tenant` may be served from (and fill) the cache: always on a single
    /// node; on a cluster once the tenant's channel is subscribed (this starts following it).
    pub(super) fn covers(&self, tenant: TenantId) -> bool {
        match self {
            Feed::Global(_) => true,
            Feed::Sharded(f) => {
                let yes = f.is_following(tenant);
                if !yes {
                    f.follow_later(tenant);
                }
                yes
            }
        }
    }

    /// Returns once `tenant`'s changes reach subscribers.
    pub(super) async fn follow(&self, tenant: TenantId) -> Result<(), StoreError> {
        match self {
            Feed::Global(_) => Ok(()),
            Feed::Sharded(f) => f.follow(tenant).await,
        }
    }
}
