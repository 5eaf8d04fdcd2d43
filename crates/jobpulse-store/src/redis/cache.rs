//! An in-process cache of reads, kept exact by the change feed.
//!
//! Every applied write announces its new snapshot on the store's pub/sub channel (see
//! `listener.rs`), in the order Redis executed the writes. While the feed is subscribed, this
//! cache applies each announcement to its entry (insert or overwrite — a delete stores "no
//! task"), so an entry always holds what Redis holds, a pub/sub delivery later. A poll served
//! from it costs no round trip at all. That is what lets a progress poll cost about as much as a
//! route that does no store work (docs/benchmarks.md).
//!
//! # Why an entry cannot go stale
//!
//! - **Announcements overwrite, in order.** Redis publishes inside the write script, and one
//!   subscription delivers messages in publication order, so the last announcement applied is
//!   the newest write. No revision comparison is needed.
//! - **A read never overwrites a newer announcement.** A poll that missed the cache reads Redis
//!   and then fills the entry — but an announcement may have arrived while it waited, and its
//!   reply may be older than that announcement. So each read takes a [`Ticket`] first: the
//!   change counter of the key's slot (a counter per slot, bumped by every announcement for a
//!   key in that slot) and the feed session. The fill is dropped if either moved — except when
//!   the entry and the read both hold a snapshot: then the one with the greater fence stays,
//!   so a poller answered from Redis is never answered with something older from the cache
//!   next.
//! - **An announcement never overwrites a newer read.** The other way round: a read may return
//!   a write whose announcement — and the announcements before it — are still on their way
//!   (the read and the feed use different connections). An announcement that then arrives is
//!   older than the filled entry, and applying it would show a poller, say, PROCESSING after
//!   READY. So while an entry holds a fill, an announcement whose fence is older than the
//!   fill's is skipped (fences of one task only grow — the store's first rule — and survive a
//!   flush and repair, unlike revisions). The first announcement at or past the fill's fence
//!   replaces it, and from then on feed order rules again.
//! - **Nothing is served while the feed is down.** Changes published while the subscription is
//!   lost are gone (pub/sub keeps nothing), so losing it clears the cache and starts a new
//!   session; until the feed is subscribed again every read goes to Redis. An announcement the
//!   listener cannot parse is treated the same way.
//! - **Entries age out** after `max_age` (default 60 s), which bounds what no announcement
//!   reports: a record that Redis expires (an in-progress record whose job stopped writing for
//!   `live_ttl`, a terminal record past `terminal_retention`, an eviction under a `volatile-*`
//!   policy), or one removed by hand (`FLUSHALL`, `DEL`). Repair rewrites through the scripts,
//!   so it is announced.
//!
//! A process that writes a task drops its entry at once (read-your-writes within a process);
//! other processes see the write when its announcement arrives — on a local network well under
//! a millisecond after Redis applied it, the same lag a replica would have.
//!
//! The cache is off when the old system's keys are read (`legacy_read`): the old system writes
//! them without announcing. Memory is bounded by `entries`; a shard that is full is emptied
//! (simple, and every entry is one read away from coming back).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use jobpulse_domain::TaskKey;

use crate::{Change, Snapshot};

const SHARDS: usize = 16;
const SLOTS: usize = 1024;

/// Settings of the read cache (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCacheConfig {
    /// Most entries kept (0 turns the cache off).
    pub entries: usize,
    /// Longest an entry is served without being read again from Redis.
    pub max_age: Duration,
}

impl Default for ReadCacheConfig {
    fn default() -> Self {
        Self {
            entries: 100_000,
            max_age: Duration::from_secs(60),
        }
    }
}

struct Entry {
    snap: Option<Snapshot>,
    at: Instant,
    /// From a read of Redis, and no announcement has replaced it yet.
    filled: bool,
}

/// What a read must show to fill the cache with its reply (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    session: u64,
    slot: usize,
    stamp: u64,
}

pub(super) struct ReadCache {
    shards: Box<[RwLock<HashMap<TaskKey, Entry>>]>,
    stamps: Box<[AtomicU64]>,
    /// Bumped whenever the feed connects or is lost.
    session: AtomicU64,
    live: AtomicBool,
    per_shard: usize,
    max_age: Duration,
    hasher: RandomState,
    /// `jobpulse_store_ops_total{backend="redis", op="get_cached"}`, resolved on first use (after
    /// the process installed its recorder) so counting a hit is one atomic add.
    hits: OnceLock<metrics::Counter>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("entries", &self.len())
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl ReadCache {
    pub(super) fn new(config: ReadCacheConfig) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            stamps: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            session: AtomicU64::new(0),
            live: AtomicBool::new(false),
            per_shard: config.entries.div_ceil(SHARDS).max(1),
            max_age: config.max_age,
            hasher: RandomState::new(),
            hits: OnceLock::new(),
        }
    }

    fn place(&self, key: &TaskKey) -> (usize, usize) {
        let h = self.hasher.hash_one(key) as usize;
        (h % SHARDS, (h / SHARDS) % SLOTS)
    }

    /// The cached answer for `key` (`Ok(None)`: cached as "no such task"), or the ticket a read
    /// of Redis needs to fill the entry afterwards.
    pub(super) fn lookup(&self, key: &TaskKey) -> Result<Option<Snapshot>, Ticket> {
        let (shard, slot) = self.place(key);
        // The ticket is taken before looking, so a fill can tell whether anything moved since.
        let ticket = Ticket {
            session: self.session.load(Ordering::Acquire),
            slot,
            stamp: self.stamps[slot].load(Ordering::Acquire),
        };
        if !self.live.load(Ordering::Acquire) {
            return Err(ticket);
        }
        let map = self.shards[shard]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some(e) if e.at.elapsed() < self.max_age => {
                self.hits
                    .get_or_init(|| {
                        metrics::counter!("jobpulse_store_ops_total", "backend" => "redis", "op" => "get_cached")
                    })
                    .increment(1);
                Ok(e.snap.clone())
            }
            _ => Err(ticket),
        }
    }

    /// Stores what a read returned, unless an announcement or a feed change came in between.
    pub(super) fn fill(&self, key: &TaskKey, ticket: Ticket, snap: &Option<Snapshot>) {
        let (shard, _) = self.place(key);
        let mut map = self.shards[shard]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the shard's lock: `apply` bumps the stamp before it takes this lock.
        if !self.live.load(Ordering::Acquire)
            || self.session.load(Ordering::Acquire) != ticket.session
        {
            return;
        }
        if let (
            Some(Entry {
                snap: Some(held), ..
            }),
            Some(read),
        ) = (map.get(key), snap)
        {
            // Both are snapshots of one task: the greater fence is the newer, whatever arrived
            // first. Keeping the newer one means a poller that was just answered from Redis is
            // never answered with something older from here next.
            if read.fence > held.fence {
                self.insert(&mut map, key.clone(), snap.clone(), true);
            }
            return;
        }
        if self.stamps[ticket.slot].load(Ordering::Acquire) != ticket.stamp {
            return;
        }
        self.insert(&mut map, key.clone(), snap.clone(), true);
    }

    fn insert(
        &self,
        map: &mut HashMap<TaskKey, Entry>,
        key: TaskKey,
        snap: Option<Snapshot>,
        filled: bool,
    ) {
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                snap,
                at: Instant::now(),
                filled,
            },
        );
    }

    /// Applies one announcement, in feed order.
    pub(super) fn apply(&self, change: &Change) {
        let (shard, slot) = self.place(&change.key);
        self.stamps[slot].fetch_add(1, Ordering::AcqRel);
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let mut map = self.shards[shard]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(Entry {
            snap: Some(read),
            filled: true,
            ..
        }) = map.get(&change.key)
            && let Some(announced) = &change.snapshot
            && announced.fence < read.fence
        {
            // Published before the write the fill read; the fill is newer (module docs).
            return;
        }
        self.insert(&mut map, change.key.clone(), change.snapshot.clone(), false);
    }

    /// Drops `key`'s entry and voids reads of it in flight (this process just wrote it).
    pub(super) fn forget(&self, key: &TaskKey) {
        let (shard, slot) = self.place(key);
        self.stamps[slot].fetch_add(1, Ordering::AcqRel);
        self.shards[shard]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// The feed is subscribed: announcements from now on are complete.
    pub(super) fn connected(&self) {
        self.clear();
        self.live.store(true, Ordering::Release);
    }

    /// The feed is lost (or delivered something unreadable): stop serving and forget everything.
    pub(super) fn lost(&self) {
        self.live.store(false, Ordering::Release);
        self.clear();
    }

    fn clear(&self) {
        self.session.fetch_add(1, Ordering::AcqRel);
        for shard in &*self.shards {
            shard
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map_or(0, |m| m.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests;
