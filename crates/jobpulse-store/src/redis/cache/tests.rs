//! Unit tests of the read cache: fills, announcements and their order, losing the feed, capacity.

use super::*;
use jobpulse_domain::{Fence, State, TenantId, VideoId, VideoStatus};

fn key(v: i64) -> TaskKey {
    TaskKey::video(
        TenantId::new(1).expect("tenant"),
        VideoId::new(v).expect("video"),
    )
}

fn snap(rev: u64) -> Option<Snapshot> {
    Some(Snapshot {
        fence: Fence::new(1, 1, rev).expect("fence"),
        rev,
        state: State::video(VideoStatus::Processing),
    })
}

fn change(v: i64, rev: u64) -> Change {
    Change {
        key: key(v),
        rev,
        snapshot: snap(rev),
        cursor: String::new(),
    }
}

fn cache() -> ReadCache {
    let c = ReadCache::new(ReadCacheConfig::default());
    c.connected();
    c
}

#[test]
fn serves_nothing_until_the_feed_is_subscribed() {
    let c = ReadCache::new(ReadCacheConfig::default());
    let t = c.lookup(&key(1)).expect_err("not cached");
    c.fill(&key(1), t, &snap(1));
    assert!(c.lookup(&key(1)).is_err());
    assert_eq!(c.len(), 0);
}

#[test]
fn a_fill_is_served_and_an_announcement_overwrites_it() {
    let c = cache();
    let t = c.lookup(&key(1)).expect_err("not cached");
    c.fill(&key(1), t, &snap(1));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(1));
    c.apply(&change(1, 2));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(2));
}

#[test]
fn a_read_older_than_an_announcement_is_not_stored() {
    let c = cache();
    let t = c.lookup(&key(1)).expect_err("not cached");
    // The announcement of rev 2 arrives while the read (which saw rev 1) is in flight.
    c.apply(&change(1, 2));
    c.fill(&key(1), t, &snap(1));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(2));
}

#[test]
fn an_announcement_older_than_a_fill_does_not_overwrite_it() {
    let c = cache();
    let t = c.lookup(&key(1)).expect_err("not cached");
    // The read returns rev 6 while the announcements of revs 5 and 6 are still on their way.
    c.fill(&key(1), t, &snap(6));
    c.apply(&change(1, 5));
    assert_eq!(
        c.lookup(&key(1)).expect("cached"),
        snap(6),
        "went back to rev 5"
    );
    c.apply(&change(1, 6));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(6));
    // Once an announcement caught up with the fill, feed order rules: every later one applies.
    c.apply(&change(1, 7));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(7));
}

#[test]
fn a_read_newer_than_the_announced_entry_replaces_it() {
    let c = cache();
    c.apply(&change(1, 4));
    // A read started before an entry existed returns rev 6; the announcement of rev 5
    // arrived meanwhile, that of rev 6 has not yet.
    c.forget(&key(1));
    let t = c.lookup(&key(1)).expect_err("not cached");
    c.apply(&change(1, 5));
    c.fill(&key(1), t, &snap(6));
    assert_eq!(
        c.lookup(&key(1)).expect("cached"),
        snap(6),
        "older than Redis"
    );
    c.apply(&change(1, 6));
    c.apply(&change(1, 7));
    assert_eq!(c.lookup(&key(1)).expect("cached"), snap(7));
}

#[test]
fn losing_the_feed_forgets_everything_and_voids_reads_in_flight() {
    let c = cache();
    c.apply(&change(1, 1));
    let t = c.lookup(&key(2)).expect_err("not cached");
    c.lost();
    assert!(c.lookup(&key(1)).is_err());
    c.connected();
    c.fill(&key(2), t, &snap(5));
    assert!(c.lookup(&key(2)).is_err(), "a read from before the loss");
    assert!(c.lookup(&key(1)).is_err());
}

#[test]
fn a_delete_is_cached_as_no_task() {
    let c = cache();
    c.apply(&change(1, 1));
    c.apply(&Change {
        key: key(1),
        rev: 2,
        snapshot: None,
        cursor: String::new(),
    });
    assert_eq!(c.lookup(&key(1)).expect("cached"), None);
}

#[test]
fn entries_age_out_and_capacity_is_bounded() {
    let c = ReadCache::new(ReadCacheConfig {
        entries: 32,
        max_age: Duration::from_millis(30),
    });
    c.connected();
    for v in 1..=1000 {
        c.apply(&change(v, 1));
    }
    assert!(c.len() <= 32, "{} entries", c.len());
    c.apply(&change(5000, 1));
    assert!(c.lookup(&key(5000)).is_ok());
    std::thread::sleep(Duration::from_millis(40));
    assert!(c.lookup(&key(5000)).is_err());
}
