//! One change on its way to the streams that watch it: rendered once ([`Dispatched`]), then
//! written straight to idle lean streams or queued for their tasks ([`Delivering`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use jobpulse_store::Change;
use tokio::sync::mpsc;

use super::{SLOW_READER_LIMIT, Signal};
use crate::outlet::{Direct, Outlet};

/// A change plus its SSE event as sent (the id is the change's, so the bytes are the same for
/// every stream), rendered at most once however many connections receive it.
#[derive(Debug)]
pub struct Dispatched {
    pub change: Change,
    /// `change.cursor`, shared by every stream's record of its position.
    pub cursor: Arc<str>,
    /// A re-send of the same change because its task's worker now counts as stalled
    /// (docs/contract.md §3a): delivered to streams whose last event of the task is this very
    /// revision, rendered anew (so with `stalled: true`), under the same event id.
    pub flip: bool,
    /// When a running task is shown stalled.
    live: crate::render::Liveness,
    frame: OnceLock<bytes::Bytes>,
    /// `frame` as one HTTP/1.1 chunk (the lean path's direct writes).
    chunked: OnceLock<bytes::Bytes>,
}

impl Dispatched {
    pub fn new(change: Change) -> Self {
        Self::with_liveness(change, crate::render::Liveness::default(), false)
    }

    /// A change rendered with `live`'s threshold; `flip` marks a stalled re-send.
    pub fn with_liveness(change: Change, live: crate::render::Liveness, flip: bool) -> Self {
        Self {
            cursor: change.cursor.as_str().into(),
            flip,
            live,
            change,
            frame: OnceLock::new(),
            chunked: OnceLock::new(),
        }
    }

    /// The change's SSE event, rendered on first use.
    pub fn frame(&self, credentials: Option<&jobpulse_db::CredentialSeal>) -> &bytes::Bytes {
        self.frame.get_or_init(|| {
            let c = &self.change;
            crate::routes::stream::event(
                &c.key.task,
                c.snapshot.as_ref(),
                // A stalled re-send of a task followed from a read has no log position.
                Some(c.cursor.as_str()).filter(|c| !c.is_empty()),
                credentials,
                self.live,
            )
        })
    }

    /// [`Dispatched::frame`] as one HTTP/1.1 chunk.
    pub fn chunked(&self, credentials: Option<&jobpulse_db::CredentialSeal>) -> bytes::Bytes {
        self.chunked
            .get_or_init(|| crate::stream_conn::chunk(self.frame(credentials)))
            .clone()
    }
}

/// A watching stream's handles, taken out of the hub's map for one dispatch (so the map's lock
/// is not held during the writes).
pub(super) struct Target {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Arc<Dispatched>>,
    pub(super) outlet: Arc<Outlet>,
    pub(super) signal: Arc<Signal>,
}

/// One change on its way to the streams that watch its task.
pub(super) struct Delivering<'a> {
    pub(super) event: &'a Arc<Dispatched>,
    pub(super) credentials: Option<&'a jobpulse_db::CredentialSeal>,
    pub(super) direct_on: bool,
    pub(super) now: Instant,
}

/// What delivering a change did.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) whole: u64,
    pub(super) blocked: u64,
    pub(super) dropped: Vec<u64>,
}

impl Tally {
    pub(super) fn add(&mut self, other: Tally) {
        self.whole += other.whole;
        self.blocked += other.blocked;
        self.dropped.extend(other.dropped);
    }
}

impl Delivering<'_> {
    /// Delivers the change to `subs`: written straight to an idle lean stream's socket, else
    /// queued for the stream's task.
    pub(super) fn deliver(&self, subs: &[Target]) -> Tally {
        let mut tally = Tally::default();
        for sub in subs {
            let id = &sub.id;
            // Held while queueing too: the stream's task decides to go direct under it.
            let mut delivery = sub.outlet.lock();
            if self.direct_on && delivery.direct && delivery.sock.is_some() {
                match delivery.write_direct(self.event, || self.event.chunked(self.credentials)) {
                    Direct::Written => {
                        tally.whole += 1;
                        delivery.full_since = None;
                    }
                    Direct::Skipped => {}
                    Direct::Blocked => {
                        tally.blocked += 1;
                        drop(delivery);
                        sub.outlet.flush.notify_one();
                    }
                }
                continue;
            }
            match sub.tx.try_send(self.event.clone()) {
                Ok(()) => delivery.full_since = None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.signal.lagged.store(true, Ordering::Release);
                    sub.signal.wake.notify_one();
                    let since = *delivery.full_since.get_or_insert(self.now);
                    if self.now.duration_since(since) > SLOW_READER_LIMIT {
                        tally.dropped.push(*id);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => tally.dropped.push(*id),
            }
        }
        tally
    }
}
