//! One open stream ([`Conn`]): the snapshot or catch-up queued first, then live events from the
//! hub, a resync when it lagged, and the heartbeat; and the SSE framing of an event.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use jobpulse_domain::{TaskId, TenantId};
use jobpulse_store::{ChangesSince, SharedStore, Snapshot};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::hub::{Dispatched, Registration, Watch};
use crate::render;
use crate::routes::batch::MAX_IDS;

/// One open stream. Held for as long as the client stays, so it is kept small (see
/// docs/benchmarks.md, SSE fan-out): the watched ids are the hub's shared slice, the revisions
/// sent are one number per id (in the outlet shared with the hub, [`crate::outlet::Filter`],
/// with the change-log position delivered), and the snapshot's queue is freed once sent.
pub(super) struct Conn {
    pub(super) reg: Registration,
    pub(super) store: SharedStore,
    pub(super) principal: Principal,
    pub(super) watch: Watch,
    pub(super) pending: VecDeque<Bytes>,
    /// The next `: hb` comment (a fixed cadence: no timer work per event).
    pub(super) heartbeat: Pin<Box<tokio::time::Sleep>>,
    pub(super) heartbeat_every: Duration,
}

const HEARTBEAT: &[u8] = b": hb\n\n";

/// One SSE event as sent: `event:`, `data:` (our JSON has no line breaks) and `id:` lines.
pub fn frame(name: &str, data: &[u8], id: Option<&str>) -> Bytes {
    let mut b = Vec::with_capacity(name.len() + data.len() + id.map_or(0, str::len) + 24);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(data);
    if let Some(id) = id {
        b.extend_from_slice(b"\nid: ");
        b.extend_from_slice(id.as_bytes());
    }
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

/// The event of `task` in state `snap`, with `id` as its position.
pub(crate) fn event(
    task: &TaskId,
    snap: Option<&Snapshot>,
    id: Option<&str>,
    credentials: Option<&jobpulse_db::CredentialSeal>,
    live: render::Liveness,
) -> Bytes {
    match task {
        TaskId::Video(v) => frame("video", &render::video(*v, snap, live), id),
        TaskId::Job(j) => frame("job", &render::job(j, snap, credentials, live), id),
    }
}

impl Conn {
    fn tenant(&self) -> TenantId {
        self.principal.tenant
    }

    /// The current state of `tasks`, read in one round trip, queued as events.
    async fn send_current(
        &mut self,
        tasks: &[TaskId],
        include_unknown: bool,
    ) -> Result<(), ApiError> {
        let outlet = self.reg.outlet.clone();
        for chunk in tasks.chunks(MAX_IDS) {
            let snaps = self.store.get_many(self.tenant(), chunk).await?;
            let mut d = outlet.lock();
            for (task, snap) in chunk.iter().zip(snaps) {
                let snap = snap.filter(|s| d.filter.visible(task, s));
                match &snap {
                    Some(s) if !d.filter.fresh(task, s.rev) => continue,
                    Some(s) => self.reg.note_running(task, s),
                    None if !include_unknown => continue,
                    None => {}
                }
                let ev = event(
                    task,
                    snap.as_ref(),
                    d.filter.cursor.as_deref(),
                    self.reg.hub_credentials(),
                    self.reg.hub_liveness(),
                );
                self.pending.push_back(ev);
            }
        }
        Ok(())
    }

    pub(super) async fn snapshot_all(&mut self) -> Result<(), ApiError> {
        let Watch::Tasks(ids) = self.watch.clone() else {
            return Ok(());
        };
        self.send_current(&ids, true).await
    }

    /// Resumes after `cursor`: what changed since, or everything when that is unknown.
    pub(super) async fn catch_up(&mut self, cursor: &str) -> Result<(), ApiError> {
        let mut after = cursor.to_owned();
        loop {
            match self
                .store
                .changes_since(self.tenant(), &after, 1000)
                .await?
            {
                ChangesSince::Changes(list) => {
                    let Some((last, _)) = list.last() else {
                        self.reg.outlet.lock().filter.cursor = Some(after.as_str().into());
                        return Ok(());
                    };
                    let last = last.clone();
                    let full = list.len() == 1000;
                    let mut seen = HashSet::new();
                    let tasks: Vec<TaskId> = list
                        .into_iter()
                        .map(|(_, t)| t)
                        .filter(|t| self.watch.wants(t) && seen.insert(t.clone()))
                        .collect();
                    self.reg.outlet.lock().filter.cursor = Some(last.as_str().into());
                    // A task deleted since then is sent as unknown.
                    self.send_current(&tasks, true).await?;
                    if !full {
                        return Ok(());
                    }
                    after = last;
                }
                ChangesSince::Expired => {
                    metrics::counter!("jobpulse_sse_resync_total", "kind" => "expired")
                        .increment(1);
                    return match self.watch {
                        Watch::All => {
                            self.pending.push_back(frame(
                                "resync",
                                br#"{"reason":"history expired; reload the task list"}"#,
                                None,
                            ));
                            Ok(())
                        }
                        Watch::Tasks(_) => self.reset("history_expired").await,
                    };
                }
            }
        }
    }

    /// Sends a `reset` event, then the current state of every watched task (UNKNOWN included),
    /// whatever was sent before: the client takes what follows as the whole truth, not as a
    /// diff. The log head is read before the snapshot and carried as the events' id, so a later
    /// resume from it misses nothing that changed during the snapshot.
    async fn reset(&mut self, reason: &'static str) -> Result<(), ApiError> {
        let Watch::Tasks(ids) = self.watch.clone() else {
            return Ok(());
        };
        let head = self.store.log_head(self.tenant()).await?;
        {
            let mut d = self.reg.outlet.lock();
            d.filter.forget_sent();
            if let Some(h) = head.as_deref() {
                d.filter.cursor = Some(h.into());
            }
        }
        let data = serde_json::json!({ "reason": reason, "snapshot": true, "tasks": ids.len() });
        self.pending
            .push_back(frame("reset", data.to_string().as_bytes(), head.as_deref()));
        self.send_current(&ids, true).await
    }

    fn live(&mut self, d: &Dispatched) -> Option<Bytes> {
        if !self.reg.outlet.lock().filter.live(d) {
            return None;
        }
        // The same bytes for every stream that gets this change: its id is the change's.
        Some(d.frame(self.reg.hub_credentials()).clone())
    }

    /// Re-reads what a lagging stream missed. Rare, so boxed: the state an open stream keeps
    /// between events stays small.
    fn resync(&mut self) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + '_>> {
        Box::pin(async move {
            let cursor = self.reg.outlet.lock().filter.cursor.clone();
            match cursor {
                Some(c) => self.catch_up(&c).await,
                None => match self.watch {
                    Watch::All => Ok(()),
                    Watch::Tasks(_) => self.snapshot_all().await,
                },
            }
        })
    }

    pub(super) async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if self.pending.is_empty() {
                    // The snapshot's queue would otherwise keep its capacity for the stream's life.
                    self.pending = VecDeque::new();
                }
                return Some(ev);
            }
            if self.reg.signal.lagged.swap(false, Ordering::AcqRel) {
                metrics::counter!("jobpulse_sse_resync_total", "kind" => "lagged").increment(1);
                let result = self.resync().await;
                if result.is_err() {
                    // The store is unreachable: end the stream; the client reconnects with its
                    // Last-Event-ID and resumes from there.
                    return None;
                }
                continue;
            }
            let signal = self.reg.signal.clone();
            let outlet = self.reg.outlet.clone();
            {
                // Idle: nothing queued, nothing of our own to send, no resync asked for, no
                // bytes left by a direct write — the hub may write to the socket itself (lean
                // path only: it has attached one). Checked under the lock the hub queues under.
                let mut d = outlet.lock();
                if d.sock.is_some()
                    && d.leftover.is_none()
                    && self.reg.rx.is_empty()
                    && !signal.lagged.load(Ordering::Acquire)
                {
                    d.direct = true;
                }
            }
            let woke = tokio::select! {
                biased;
                msg = self.reg.rx.recv() => Woke::Queued(msg),
                _ = signal.wake.notified() => Woke::Signal,
                _ = self.heartbeat.as_mut() => Woke::Heartbeat,
            };
            // Whatever woke us, the hub stops writing before we do.
            outlet.lock().direct = false;
            match woke {
                Woke::Queued(Some(d)) => {
                    if let Some(ev) = self.live(&d) {
                        return Some(ev);
                    }
                }
                // The hub dropped us (a reader too slow for too long).
                Woke::Queued(None) => return None,
                Woke::Signal => {}
                Woke::Heartbeat => {
                    let next = tokio::time::Instant::now() + self.heartbeat_every;
                    self.heartbeat.as_mut().reset(next);
                    return Some(Bytes::from_static(HEARTBEAT));
                }
            }
        }
    }
}

/// What ended a stream's wait.
enum Woke {
    Queued(Option<Arc<Dispatched>>),
    Signal,
    Heartbeat,
}
