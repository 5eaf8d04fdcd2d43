//! Re-sending running tasks whose worker went quiet (see the parent module, "Stalled
//! workers").

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use jobpulse_domain::TaskKey;
use jobpulse_store::Change;

use super::{Dispatched, Hub, Registration};

impl Hub {
    /// Follows a running task a stream was just sent from a read (its snapshot or catch-up),
    /// unless a change as new is already followed: the hub may not have seen that change on the
    /// feed (it came before this process subscribed, or during a gap). Such an entry has no
    /// change-log position, so its stalled event carries no `id:` line.
    pub(crate) fn note_running(
        &self,
        key: TaskKey,
        snap: &jobpulse_domain::State,
        rev: u64,
        fence: jobpulse_domain::Fence,
    ) {
        if !snap.status.is_active() {
            return;
        }
        let mut running = self.running();
        if running.get(&key).is_some_and(|c| c.rev >= rev) {
            return;
        }
        running.insert(
            key.clone(),
            Change {
                key,
                rev,
                snapshot: Some(jobpulse_store::Snapshot {
                    fence,
                    rev,
                    state: snap.clone(),
                }),
                cursor: String::new(),
            },
        );
    }

    fn running(&self) -> MutexGuard<'_, HashMap<TaskKey, Change>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-sends, once, the last change of every running task whose worker is now stalled.
    pub(super) fn resend_stalled(&self) {
        let live = self.inner.liveness;
        let stalled: Vec<Change> = {
            let mut running = self.running();
            let keys: Vec<TaskKey> = running
                .iter()
                .filter(|(_, c)| {
                    c.snapshot
                        .as_ref()
                        .is_some_and(|s| crate::render::is_stalled(s, live))
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| running.remove(k)).collect()
        };
        for change in stalled {
            metrics::counter!("jobpulse_sse_stalled_total").increment(1);
            self.deliver(Arc::new(Dispatched::with_liveness(change, live, true)));
        }
    }

    pub(super) fn dispatch(&self, change: Change) {
        {
            let mut running = self.running();
            if change
                .snapshot
                .as_ref()
                .is_some_and(|s| s.state.status.is_active())
            {
                running.insert(change.key.clone(), change.clone());
            } else {
                running.remove(&change.key);
            }
        }
        self.deliver(Arc::new(Dispatched::with_liveness(
            change,
            self.inner.liveness,
            false,
        )));
    }
}

impl Registration {
    /// The hub's stalled threshold.
    pub fn hub_liveness(&self) -> crate::render::Liveness {
        self.hub.inner.liveness
    }

    /// Lets the hub follow a running task this stream was sent from a read (see
    /// `stalled.rs`).
    pub fn note_running(&self, task: &jobpulse_domain::TaskId, snap: &jobpulse_store::Snapshot) {
        let key = TaskKey {
            tenant: self.tenant,
            task: task.clone(),
        };
        self.hub
            .note_running(key, &snap.state, snap.rev, snap.fence);
    }
}
