//! Fan-out of read-model changes to this process's SSE connections.
//!
//! One task reads the store's change feed (`StatusStore::subscribe`: Redis pub/sub across
//! replicas, or the in-process channel) and routes each change to the connections of its tenant
//! that watch that task — O(watchers), not O(connections). Each connection has a small bounded
//! queue; when it is full (a slow reader, or a burst) the change is dropped for that connection
//! and the connection is marked *lagged*: the next time it is polled it re-reads what it missed
//! from the tenant's change log, so intermediate progress may be coalesced but a final state is
//! never lost. A connection that stays full for [`SLOW_READER_LIMIT`] is dropped.
//!
//! A stream of the lean HTTP/1.1 path whose task is idle gets no queue push and no wake-up at
//! all: the dispatch loop writes the change's bytes (rendered and chunk-framed once per change)
//! straight to its socket with a non-blocking write, and only a stream whose socket would block
//! falls back to its task; see [`crate::outlet`] for who may write when.
//!
//! Stalled workers (docs/contract.md §3a): a running task whose worker stops writing sends no
//! change, so the hub keeps the last change of every running task and, once a second, re-sends
//! the ones whose worker is now past the threshold ([`Dispatched::flip`]): the same event id,
//! rendered with `stalled: true`, to the streams whose last event of the task is that change.
//! The way back (stalled → alive) is the worker's next write, an ordinary change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jobpulse_domain::{TaskKey, TenantId};
use jobpulse_store::{Change, SharedStore};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::outlet::{Filter, Outlet};

mod deliver;
mod stalled;
mod watch;

pub use watch::Watch;

pub use deliver::Dispatched;
use deliver::{Delivering, Tally, Target};

/// Queue length per connection.
pub const QUEUE_LEN: usize = 64;
/// A connection whose queue stays full this long is dropped.
pub const SLOW_READER_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Sub {
    /// The token subject that opened it (`None`: a token without a user id).
    user: Option<Arc<str>>,
    tx: mpsc::Sender<Arc<Dispatched>>,
    watch: Watch,
    outlet: Arc<Outlet>,
    signal: Arc<Signal>,
}

/// Watchers of one change from which the dispatch is split over threads. Splitting takes every
/// core for the fan-out's duration, so other requests wait meanwhile: it is kept for fan-outs
/// large enough to need it (the reliability scenario s09, 1 000 non-reading streams of one job
/// beside timed pollers, failed its latency bound twice at load 6–8 with a split from 512).
pub const SPLIT_AT: usize = 2048;

/// Flags a connection reads when it is polled.
#[derive(Debug, Default)]
pub struct Signal {
    pub lagged: AtomicBool,
    pub wake: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: Mutex<HashMap<TenantId, HashMap<u64, Sub>>>,
    next_id: AtomicU64,
    /// Live events the dispatch loop wrote straight to a socket, whole.
    direct_whole: AtomicU64,
    /// Direct writes the socket did not take whole (the stream's task took over).
    direct_blocked: AtomicU64,
    /// Direct writes are switched off (every delivery goes through the stream's task, as
    /// before they existed: the benchmark's comparison).
    direct_off: AtomicBool,
    /// Threads a large dispatch is split over (the machine's cores).
    threads: usize,
    /// Opens sealed initial passwords in job events (shared here, not kept per stream).
    credentials: Option<jobpulse_db::CredentialSeal>,
    /// When a running task is shown stalled.
    liveness: crate::render::Liveness,
    /// The last change of each running task not yet re-sent as stalled.
    running: Mutex<HashMap<TaskKey, Change>>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
    per_tenant_cap: usize,
    /// Most streams one user (token subject) of a tenant may hold; the tenant cap by default.
    per_user_cap: usize,
}

/// A stream cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    /// The tenant already has as many streams as allowed.
    #[error("too many open streams for this tenant")]
    Tenant,
    /// This user already has as many streams as one user may hold (the rest of the tenant's
    /// allowance stays for everyone else).
    #[error("too many open streams for this user")]
    User,
}

/// A connection's membership; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    hub: Hub,
    tenant: TenantId,
    id: u64,
    pub rx: mpsc::Receiver<Arc<Dispatched>>,
    pub signal: Arc<Signal>,
    /// Shared with the hub: what was sent, and the direct path.
    pub outlet: Arc<Outlet>,
}

impl Registration {
    /// The hub's key for sealed initial passwords.
    pub fn hub_credentials(&self) -> Option<&jobpulse_db::CredentialSeal> {
        self.hub.credentials()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        metrics::gauge!("jobpulse_sse_streams").decrement(1.0);
        let mut tenants = self.hub.lock();
        if let Some(subs) = tenants.get_mut(&self.tenant) {
            subs.remove(&self.id);
            if subs.is_empty() {
                tenants.remove(&self.tenant);
            }
        }
    }
}

impl Hub {
    /// Starts the dispatcher; it stops with `shutdown` or when the store's feed closes.
    pub fn start(store: &SharedStore, per_tenant_cap: usize, shutdown: CancellationToken) -> Hub {
        Self::start_with(
            store,
            per_tenant_cap,
            shutdown,
            None,
            crate::render::Liveness::default(),
        )
    }

    /// [`Hub::start`], with the key that opens sealed initial passwords in job events and the
    /// stalled threshold.
    pub fn start_with(
        store: &SharedStore,
        per_tenant_cap: usize,
        shutdown: CancellationToken,
        credentials: Option<jobpulse_db::CredentialSeal>,
        liveness: crate::render::Liveness,
    ) -> Hub {
        let hub = Hub {
            inner: Arc::new(Inner {
                credentials,
                liveness,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
                ..Inner::default()
            }),
            per_tenant_cap,
            per_user_cap: per_tenant_cap,
        };
        let mut feed = store.subscribe();
        let mut gaps = store.feed_gaps();
        let mut gaps_open = true;
        let h = hub.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => {
                        h.resend_stalled();
                        continue;
                    }
                    g = gaps.changed(), if gaps_open => {
                        match g {
                            Ok(()) => {
                                tracing::info!("change feed was interrupted; streams resync");
                                h.mark_all_lagged();
                            }
                            // This store's feed cannot be interrupted.
                            Err(_) => gaps_open = false,
                        }
                        continue;
                    }
                    n = feed.recv() => n,
                };
                match next {
                    Ok(change) => h.dispatch(change),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "SSE hub fell behind the change feed");
                        h.mark_all_lagged();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        hub
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, HashMap<u64, Sub>>> {
        self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream of `tenant` watching `watch`; `staff` streams see staff-only job
    /// types.
    /// The same hub with at most `cap` streams per user (token subject) of a tenant, so that
    /// one user cannot take the whole tenant's allowance (`serve`/`up` set it; 1 at least).
    pub fn with_per_user_cap(mut self, cap: usize) -> Hub {
        self.per_user_cap = cap.max(1);
        self
    }

    pub fn register(
        &self,
        tenant: TenantId,
        user: Option<&str>,
        watch: Watch,
        staff: bool,
    ) -> Result<Registration, CapExceeded> {
        let mut tenants = self.lock();
        let subs = tenants.entry(tenant).or_default();
        if subs.len() >= self.per_tenant_cap {
            return Err(CapExceeded::Tenant);
        }
        if self.per_user_cap < self.per_tenant_cap
            && subs.values().filter(|s| s.user.as_deref() == user).count() >= self.per_user_cap
        {
            return Err(CapExceeded::User);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let signal = Arc::new(Signal::default());
        let outlet = Arc::new(Outlet::new(Filter::new(watch.clone(), staff)));
        subs.insert(
            id,
            Sub {
                user: user.map(Arc::from),
                tx,
                watch,
                outlet: outlet.clone(),
                signal: signal.clone(),
            },
        );
        metrics::gauge!("jobpulse_sse_streams").increment(1.0);
        Ok(Registration {
            hub: self.clone(),
            tenant,
            id,
            rx,
            signal,
            outlet,
        })
    }

    /// The key that opens sealed initial passwords, if this server has one.
    pub fn credentials(&self) -> Option<&jobpulse_db::CredentialSeal> {
        self.inner.credentials.as_ref()
    }

    /// Switches the direct writes on or off (on by default; off sends every delivery through
    /// the stream's task — `jobpulse-bench --only sse --sse-direct-writes off` compares the two).
    pub fn set_direct_writes(&self, on: bool) {
        self.inner.direct_off.store(!on, Ordering::Relaxed);
    }

    /// Direct writes so far: (taken whole, handed to the stream's task).
    pub fn direct_writes(&self) -> (u64, u64) {
        (
            self.inner.direct_whole.load(Ordering::Relaxed),
            self.inner.direct_blocked.load(Ordering::Relaxed),
        )
    }

    /// Open streams of this process.
    pub fn streams(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    pub(super) fn deliver(&self, event: Arc<Dispatched>) {
        // The watchers' handles are taken under the map's lock, which is then let go: streams
        // open and close while the writes run. The next change waits for this one (the hub's
        // loop calls this in turn), so a stream's events stay in order.
        let watching: Vec<Target> = {
            let tenants = self.lock();
            let Some(subs) = tenants.get(&event.change.key.tenant) else {
                return;
            };
            subs.iter()
                .filter(|(_, sub)| sub.watch.wants(&event.change.key.task))
                .map(|(id, sub)| Target {
                    id: *id,
                    tx: sub.tx.clone(),
                    outlet: sub.outlet.clone(),
                    signal: sub.signal.clone(),
                })
                .collect()
        };
        let ctx = Delivering {
            event: &event,
            credentials: self.inner.credentials.as_ref(),
            direct_on: !self.inner.direct_off.load(Ordering::Relaxed),
            now: Instant::now(),
        };
        // Many watchers: the list is split over threads (the direct writes are system calls,
        // and each part's streams are independent); the next change waits for all parts.
        let parts = if watching.len() >= SPLIT_AT {
            self.inner.threads
        } else {
            1
        };
        let tally = if parts > 1 {
            let size = watching.len().div_ceil(parts);
            // Parts are taken from a shared list by this thread and by the helpers it could
            // start (a thread that cannot be started leaves its share to the others).
            let queue = Mutex::new(watching.chunks(size).collect::<Vec<_>>());
            let work = || {
                let mut tally = Tally::default();
                loop {
                    let part = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some(part) = part else {
                        return tally;
                    };
                    tally.add(ctx.deliver(part));
                }
            };
            std::thread::scope(|scope| {
                let helpers: Vec<_> = (1..parts)
                    .filter_map(|_| {
                        std::thread::Builder::new()
                            .name("sse-fanout".into())
                            .spawn_scoped(scope, work)
                            .ok()
                    })
                    .collect();
                let mut tally = work();
                for helper in helpers {
                    // A helper that panicked delivered nothing more; the streams it had not
                    // reached catch up at their next change.
                    tally.add(helper.join().unwrap_or_default());
                }
                tally
            })
        } else {
            ctx.deliver(&watching)
        };
        drop(watching);
        if !tally.dropped.is_empty() {
            let mut tenants = self.lock();
            if let Some(subs) = tenants.get_mut(&event.change.key.tenant) {
                for id in &tally.dropped {
                    // Dropping the sender ends the connection's stream the next time it is
                    // polled.
                    if subs.remove(id).is_some() {
                        metrics::counter!("jobpulse_sse_dropped_total").increment(1);
                    }
                }
            }
        }
        self.inner
            .direct_whole
            .fetch_add(tally.whole, Ordering::Relaxed);
        self.inner
            .direct_blocked
            .fetch_add(tally.blocked, Ordering::Relaxed);
    }

    fn mark_all_lagged(&self) {
        for subs in self.lock().values() {
            for sub in subs.values() {
                sub.signal.lagged.store(true, Ordering::Release);
                sub.signal.wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests;
