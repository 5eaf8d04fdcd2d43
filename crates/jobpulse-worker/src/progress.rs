//! The context object through which running work reports progress.
//!
//! A [`Reporter`] belongs to one attempt of one task. It is the attempt's single writer of
//! progress, so it owns the `seq` counter of the fence `(generation, attempt, seq)`: the claim's
//! PROCESSING/RUNNING write (through the database outbox) was seq 1; progress ticks written
//! straight to the read model continue from 2; the attempt's final state change (through the
//! database) takes [`Reporter::next_seq`] and so outranks every tick.
//!
//! Progress is coalesced: at most one write per `Reporter::min_interval` (1 s), except step
//! changes, which always go through. A write refused as `Stale` means someone newer owns the
//! task (the reaper gave the attempt up): [`Reporter::superseded`] turns true and the work should
//! stop. Store failures are logged once per streak and otherwise ignored — progress is
//! best-effort, state changes go through the database.
//!
//! Liveness (docs/contract.md §3a): readers take the time of the attempt's last write as the
//! worker's last sign of life. On each lease heartbeat, [`Reporter::prove_alive`] re-sends the
//! current progress (a new seq, nothing else changed) when no write went out for half a
//! heartbeat period, so a live worker is never quiet for more than 1.5 periods; while progress
//! flows, heartbeats add no write.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobpulse_domain::eta::EtaEstimator;
use jobpulse_domain::steps::StepPlan;
use jobpulse_domain::{Fence, Outcome, State, TaskKey, Write};
use jobpulse_store::SharedStore;

#[derive(Debug)]
struct Inner {
    step: u8,
    fraction: f64,
    remaining: Option<u32>,
    last_write: Option<Instant>,
    failing: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Reporter {
    store: SharedStore,
    key: TaskKey,
    /// The claim's fence `(g, attempt, 1)`; the attempt's writes step from it.
    claim: Fence,
    /// The seq of the attempt's last write so far.
    seq: AtomicU64,
    plan: StepPlan,
    /// Status, job type and attempt every tick carries.
    base: State,
    inner: Mutex<Inner>,
    superseded: AtomicBool,
    min_interval: Duration,
    /// When the attempt was claimed (its first sign of life, the claim write).
    started: Instant,
}

impl Reporter {
    /// `claim` is the fence of the claim's write (the attempt's first, `(g, attempt, 1)`);
    /// `base` is the active state (PROCESSING/RUNNING, with job type and attempt set).
    pub fn new(
        store: SharedStore,
        key: TaskKey,
        claim: Fence,
        plan: StepPlan,
        base: State,
    ) -> Self {
        Self {
            store,
            key,
            claim,
            seq: AtomicU64::new(claim.seq),
            plan,
            base,
            inner: Mutex::new(Inner {
                step: 0,
                fraction: 0.0,
                remaining: None,
                last_write: None,
                failing: false,
            }),
            superseded: AtomicBool::new(false),
            min_interval: Duration::from_secs(1),
            started: Instant::now(),
        }
    }

    /// Shorter coalescing interval (tests).
    pub fn with_min_interval(mut self, d: Duration) -> Self {
        self.min_interval = d;
        self
    }

    pub fn key(&self) -> &TaskKey {
        &self.key
    }

    /// The fence of the attempt's next write ([`Fence::next_seq`] of the last one): each call
    /// takes a new one, so the final state change outranks every tick.
    pub fn next_fence(&self) -> Fence {
        let last = self.seq.fetch_add(1, Ordering::SeqCst);
        Fence {
            seq: last,
            ..self.claim
        }
        .next_seq()
    }

    /// The seq the attempt's final state change must use (greater than every tick's).
    pub fn next_seq(&self) -> u64 {
        self.next_fence().seq
    }

    /// Whether `current` (what the read model holds) belongs to another attempt than ours.
    fn someone_else(&self, current: &Fence) -> bool {
        !current.same_attempt(&self.claim)
    }

    /// True once the read model refused a tick as stale: a newer attempt or state owns the task.
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters step `index` (1-based); always written.
    pub async fn step(&self, index: u8) {
        {
            let mut i = self.lock();
            i.step = index;
            i.fraction = 0.0;
        }
        self.write(true).await;
    }

    /// Progress within the current step (`0..=1`) and, when known, seconds left; coalesced.
    pub async fn progress(&self, fraction: f64, remaining: Option<u32>) {
        {
            let mut i = self.lock();
            i.fraction = fraction;
            i.remaining = remaining;
        }
        self.write(false).await;
    }

    /// Clears the remaining-time figure (e.g. after the step it described).
    pub fn clear_remaining(&self) {
        self.lock().remaining = None;
    }

    async fn write(&self, force: bool) {
        let state = {
            let mut i = self.lock();
            let now = Instant::now();
            if !force
                && i.last_write
                    .is_some_and(|t| now.duration_since(t) < self.min_interval)
            {
                return;
            }
            i.last_write = Some(now);
            let mut s = self.base.clone();
            let step = i.step.max(1);
            s.percent = self.plan.overall(step, i.fraction);
            s.step = Some(self.plan.step(step, i.fraction));
            s.remaining_seconds = i.remaining;
            s
        };
        let fence = self.next_fence();
        let write = match Write::set(self.key.clone(), fence, state) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, task = %self.key, "invalid progress state");
                return;
            }
        };
        match self.store.apply(&write).await {
            // Stale against our own (generation, attempt) is only two of our ticks crossing;
            // against anything else someone newer owns the task.
            Ok(Outcome::Stale { current, .. }) if self.someone_else(&current) => {
                tracing::info!(task = %self.key, %current, "progress refused as stale: superseded");
                self.superseded.store(true, Ordering::Release);
            }
            Ok(_) => {
                let mut i = self.lock();
                if i.failing {
                    tracing::info!(task = %self.key, "progress writes recovered");
                    i.failing = false;
                }
            }
            Err(e) => {
                let mut i = self.lock();
                if !i.failing {
                    tracing::warn!(task = %self.key, error = %e, "progress write failed; continuing");
                    i.failing = true;
                }
            }
        }
    }

    /// Re-sends the current progress when nothing was written for `every / 2` (see the module
    /// docs); `every` is the heartbeat period.
    pub async fn prove_alive(&self, every: Duration) {
        let quiet = {
            let i = self.lock();
            i.last_write.unwrap_or(self.started).elapsed() >= every / 2
        };
        if quiet {
            self.write(true).await;
        }
    }

    /// Slides the read-model TTL of the task (no visible change).
    pub async fn heartbeat(&self) {
        let fence = Fence {
            seq: 0,
            ..self.claim
        };
        if let Ok(Outcome::Stale { current, .. }) = self
            .store
            .apply(&Write::heartbeat(self.key.clone(), fence))
            .await
            && self.someone_else(&current)
        {
            self.superseded.store(true, Ordering::Release);
        }
    }
}

/// Measures remaining time from a fraction of work done (wraps the domain's estimator with the
/// attempt's clock).
#[derive(Debug)]
pub struct Eta {
    started: Instant,
    estimator: EtaEstimator,
}

impl Default for Eta {
    fn default() -> Self {
        Self::new()
    }
}

impl Eta {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            estimator: EtaEstimator::new(),
        }
    }

    pub fn observe(&mut self, fraction: f64) -> Option<u32> {
        self.estimator
            .observe(self.started.elapsed().as_secs_f64(), fraction)
    }
}
