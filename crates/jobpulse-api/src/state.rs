//! What handlers get from their router.
//!
//! The read side's [`ReadState`] holds the read model, the token verifier and a miss hook —
//! and no database handle, so a progress poll cannot query a database even by mistake.

use std::sync::Arc;

use jobpulse_domain::TaskKey;
use jobpulse_store::SharedStore;

use crate::auth::Verifier;
use crate::metrics::ReadMetrics;

/// Called (without waiting) when a poll misses the read model: e.g. a bounded, rate-limited
/// read-repair queue. It must not block.
pub type MissHook = Arc<dyn Fn(&TaskKey) + Send + Sync>;

/// State of the progress (read) routes.
#[derive(Clone)]
pub struct ReadState {
    pub store: SharedStore,
    pub auth: Arc<Verifier>,
    pub metrics: ReadMetrics,
    pub on_miss: Option<MissHook>,
}

impl std::fmt::Debug for ReadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadState")
            .field("store", &self.store.backend())
            .field("on_miss", &self.on_miss.is_some())
            .finish_non_exhaustive()
    }
}

impl ReadState {
    /// Installs the metrics recorder if needed (handles resolved before it would be no-ops).
    pub fn new(store: SharedStore, auth: Arc<Verifier>) -> Self {
        crate::metrics::install();
        Self {
            store,
            auth,
            metrics: ReadMetrics::new(),
            on_miss: None,
        }
    }

    pub fn with_miss_hook(mut self, hook: MissHook) -> Self {
        self.on_miss = Some(hook);
        self
    }

    pub(crate) fn missed(&self, key: &TaskKey) {
        self.metrics.misses.increment(1);
        if let Some(hook) = &self.on_miss {
            hook(key);
        }
    }
}
