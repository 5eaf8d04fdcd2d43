//! A stream's delivery state, shared by the hub's dispatch loop and the stream's own task, and
//! the direct path: a live event written by the hub straight to the stream's socket.
//!
//! Without it, each delivery of a change to a watching stream is a queue push and a task
//! wake-up: the stream's task is scheduled, polls its queue, renders nothing (the bytes are
//! shared) and writes. For one change watched by 10 000 streams that is 10 000 wake-ups before
//! the last write (docs/benchmarks.md, SSE at scale). With it, the dispatch loop writes the
//! change's bytes (rendered and chunk-framed once) to each idle stream's socket with a
//! non-blocking `try_write`, and the task is not woken at all.
//!
//! Who may write is decided under the outlet's lock ([`Delivery::direct`]):
//!
//! - the stream's task sets `direct` only while it is idle — nothing queued for it, nothing of
//!   its own to write (snapshot, resync, heartbeat), no resync asked for, no leftover bytes —
//!   and clears it as soon as it wakes for any reason, before it writes anything;
//! - the hub writes only while `direct` is set, and otherwise queues (under the same lock, so
//!   the task's "nothing queued" check and the hub's choice cannot cross);
//! - a direct write the socket does not take whole (it would block, or took part) leaves the
//!   rest as [`Delivery::leftover`], clears `direct` and wakes the task's writer
//!   ([`Outlet::flush`]): the task writes the leftover before anything else, behind the
//!   write-stall guard, and later events go through the queue until it is idle again. So a
//!   stream's events stay in order and a partial write is never interleaved.
//!
//! The revision de-dup and the change-log position ([`Filter`]) are here too, so both paths
//! share one record of what the stream was sent: a snapshot or resync never sends an older
//! state after a newer live one, whichever path sent that.
//!
//! Only streams of the lean HTTP/1.1 path ([`crate::stream_conn`], chunked) attach a socket;
//! streams served by hyper always go through their task.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use jobpulse_domain::{Status, TaskId};
use jobpulse_store::Snapshot;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::hub::{Dispatched, Watch};

/// See the module docs.
#[derive(Debug)]
pub struct Outlet {
    state: Mutex<Delivery>,
    /// Wakes the lean path's writer when a direct write left bytes behind.
    pub flush: Notify,
}

/// What the outlet's lock guards.
#[derive(Debug)]
pub struct Delivery {
    /// The hub may write live events to `sock` (the stream's task is idle).
    pub direct: bool,
    /// The stream's socket, once its head is written (lean chunked streams only).
    pub sock: Option<Arc<TcpStream>>,
    /// Bytes of a direct write the socket did not take; written by the task before anything
    /// else.
    pub leftover: Option<Bytes>,
    pub filter: Filter,
    /// Since when the hub finds the stream's queue full (a slow reader; see
    /// [`crate::hub::SLOW_READER_LIMIT`]).
    pub full_since: Option<std::time::Instant>,
}

/// What a stream was sent: the de-dup record and its position.
#[derive(Debug)]
pub struct Filter {
    pub watch: Watch,
    /// Staff see staff-only job types.
    pub staff: bool,
    /// Newest change-log position delivered.
    pub cursor: Option<Arc<str>>,
    sent: Sent,
}

/// Revisions sent: `rev + 1` per watched id (0: nothing yet), or a map for a tenant watch.
#[derive(Debug)]
enum Sent {
    Tasks(Box<[u64]>),
    All(HashMap<TaskId, u64>),
}

/// Most tasks a tenant-wide stream remembers revisions of (then it starts over).
const MAX_TRACKED: usize = 10_000;

impl Filter {
    pub fn new(watch: Watch, staff: bool) -> Filter {
        let sent = match &watch {
            Watch::All => Sent::All(HashMap::new()),
            Watch::Tasks(ids) => Sent::Tasks(vec![0; ids.len()].into_boxed_slice()),
        };
        Filter {
            watch,
            staff,
            cursor: None,
            sent,
        }
    }

    /// The stream may see this state of the task.
    pub fn visible(&self, task: &TaskId, snap: &Snapshot) -> bool {
        let kind = matches!(
            (task, snap.state.status),
            (TaskId::Video(_), Status::Video(_)) | (TaskId::Job(_), Status::Job(_))
        );
        kind && (self.staff
            || !snap
                .state
                .job_type
                .as_ref()
                .is_some_and(|t| t.is_staff_only()))
    }

    /// Records `rev` for `task`; false when something as new was already sent.
    /// Forgets which revisions were sent (a `reset`: the next state of every task is sent).
    pub fn forget_sent(&mut self) {
        match &mut self.sent {
            Sent::Tasks(revs) => revs.iter_mut().for_each(|r| *r = 0),
            Sent::All(map) => map.clear(),
        }
    }

    pub fn fresh(&mut self, task: &TaskId, rev: u64) -> bool {
        match &mut self.sent {
            Sent::Tasks(revs) => {
                let Some(slot) = self.watch.position(task).and_then(|i| revs.get_mut(i)) else {
                    return false;
                };
                if *slot > rev {
                    return false;
                }
                *slot = rev.saturating_add(1);
                true
            }
            Sent::All(map) => {
                if map.get(task).is_some_and(|r| *r >= rev) {
                    return false;
                }
                if map.len() >= MAX_TRACKED {
                    map.clear();
                }
                map.insert(task.clone(), rev);
                true
            }
        }
    }

    /// Whether a live change goes to this stream (recording it as sent when it does).
    pub fn live(&mut self, d: &Dispatched) -> bool {
        let c = &d.change;
        if let Some(s) = &c.snapshot
            && !self.visible(&c.key.task, s)
        {
            return false;
        }
        if d.flip {
            // A stalled re-send: only after this very revision, never after a newer one.
            return self.last_sent(&c.key.task) == Some(c.rev);
        }
        if !self.fresh(&c.key.task, c.rev) {
            return false;
        }
        self.cursor = Some(d.cursor.clone());
        true
    }

    /// The revision last sent of `task`, if any.
    fn last_sent(&self, task: &TaskId) -> Option<u64> {
        match &self.sent {
            Sent::Tasks(revs) => self
                .watch
                .position(task)
                .and_then(|i| revs.get(i))
                .and_then(|r| r.checked_sub(1)),
            Sent::All(map) => map.get(task).copied(),
        }
    }
}

/// What a direct delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Written whole.
    Written,
    /// Not for this stream (filtered, or as new already sent).
    Skipped,
    /// Not written (whole): the task has to take over.
    Blocked,
}

impl Delivery {
    /// Writes a live change to the socket (see the module docs); `frame` renders its chunked
    /// bytes (once per change, shared by every stream).
    pub fn write_direct(&mut self, change: &Dispatched, frame: impl FnOnce() -> Bytes) -> Direct {
        let Some(sock) = self.sock.as_ref() else {
            self.direct = false;
            return Direct::Blocked;
        };
        if !self.filter.live(change) {
            return Direct::Skipped;
        }
        let bytes = frame();
        match sock.try_write(&bytes) {
            Ok(n) if n == bytes.len() => Direct::Written,
            Ok(n) => {
                self.leftover = Some(bytes.slice(n..));
                self.direct = false;
                Direct::Blocked
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.leftover = Some(bytes);
                self.direct = false;
                Direct::Blocked
            }
            // A broken connection: the task's read or next write notices and ends the stream.
            Err(_) => {
                self.direct = false;
                Direct::Blocked
            }
        }
    }
}

impl Outlet {
    pub fn new(filter: Filter) -> Outlet {
        Outlet {
            state: Mutex::new(Delivery {
                direct: false,
                sock: None,
                leftover: None,
                filter,
                full_since: None,
            }),
            flush: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Delivery> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lean path hands over its socket once the answer's head is written.
    pub fn attach(&self, sock: Arc<TcpStream>) {
        self.lock().sock = Some(sock);
    }

    /// The lean path is done writing (its last bytes follow): no more direct writes; returns
    /// what a direct write left behind.
    pub fn detach(&self) -> Option<Bytes> {
        let mut d = self.lock();
        d.direct = false;
        d.sock = None;
        d.leftover.take()
    }

    /// Bytes a direct write left behind (to be written before anything else).
    pub fn take_leftover(&self) -> Option<Bytes> {
        self.lock().leftover.take()
    }
}

/// Marks the lean path's stream: carried from the stream handler to [`crate::stream_conn`]
/// in the answer's extensions.
#[derive(Debug, Clone)]
pub struct Tap(pub Arc<Outlet>);

/// A socket shared by the stream's task (reads and blocking writes, through this) and the hub
/// (`try_write` on the same `Arc`).
#[derive(Debug, Clone)]
pub struct SharedSocket(pub Arc<TcpStream>);

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}
