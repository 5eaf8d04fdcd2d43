//! Wake-ups: idle workers and relays sleep until something may be waiting for them.
//!
//! Each [`Db`](crate::Db) has one [`Signals`]: a `tokio::sync::Notify` per queue and one for the
//! outbox. Every commit that enqueues work or writes an outbox row signals its `Notify` in
//! process. On PostgreSQL, database triggers also `pg_notify` (`jobpulse_video`, `jobpulse_ai`,
//! `jobpulse_outbox`) at commit, and a LISTEN task forwards those to the same `Notify`s, so a
//! commit in one process wakes waiters in every process. SQLite has no cross-process channel:
//! several processes sharing one SQLite file fall back to polling (each waiter's `max_wait`).
//!
//! `notify_one` stores a permit when nobody waits, so a wake-up that lands between "found
//! nothing" and "start waiting" is not lost. Waking is only a hint: waiters always re-check
//! the database, and a missed or spurious wake-up costs latency, never correctness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::queue::Queue;

/// PostgreSQL channels (see the triggers in `migrations/postgres`).
pub(crate) const VIDEO_CHANNEL: &str = "jobpulse_video";
pub(crate) const AI_CHANNEL: &str = "jobpulse_ai";
pub(crate) const OUTBOX_CHANNEL: &str = "jobpulse_outbox";

#[derive(Debug, Default)]
pub(crate) struct Signals {
    pub(crate) video: Notify,
    pub(crate) ai: Notify,
    pub(crate) outbox: Notify,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Signals {
    fn wake_channel(&self, channel: &str) {
        match channel {
            VIDEO_CHANNEL => self.video.notify_one(),
            AI_CHANNEL => self.ai.notify_one(),
            OUTBOX_CHANNEL => self.outbox.notify_one(),
            _ => {}
        }
    }

    /// After a gap in listening, anything may have happened.
    fn wake_all(&self) {
        self.video.notify_one();
        self.ai.notify_one();
        self.outbox.notify_one();
    }

    pub(crate) fn start_listener(self: &Arc<Self>, pool: &PgPool) {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *slot = Some(rt.spawn(listen(pool.clone(), Arc::clone(self))));
    }

    /// The wake-up of `queue`'s idle workers.
    pub(crate) fn queue(&self, queue: Queue) -> &Notify {
        match queue {
            Queue::Video => &self.video,
            Queue::Ai => &self.ai,
        }
    }

    /// Wakes one idle worker of `queue` after `delay`: when a job's backoff ends, so its retry
    /// starts then rather than at the next `max_wait` poll. In process only — the process that
    /// scheduled the retry (a worker of that queue, or its reaper) is the one most likely to be
    /// waiting; other processes still find the job when they poll.
    pub(crate) fn wake_after(self: &Arc<Self>, queue: Queue, delay: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let signals = Arc::clone(self);
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            signals.queue(queue).notify_one();
        });
    }

    pub(crate) fn stop_listener(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = slot.take() {
            h.abort();
        }
    }
}

async fn listen(pool: PgPool, signals: Arc<Signals>) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([VIDEO_CHANNEL, AI_CHANNEL, OUTBOX_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        signals.wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => signals.wake_channel(n.channel()),
                // The connection dropped and was re-established: notifications may be lost.
                Ok(None) => signals.wake_all(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}
