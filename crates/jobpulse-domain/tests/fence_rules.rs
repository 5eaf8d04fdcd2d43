//! Property tests of the ordering rule ([`jobpulse_domain::decide`]).
//!
//! These would catch: a late PROCESSING landing after READY, a retried attempt's write being
//! overwritten by an older attempt, and a percent regression within an attempt.

use jobpulse_domain::{
    Decision, Fence, Outcome, Percent, State, Stored, TaskKey, TenantId, VideoId, VideoStatus,
    Write, decide,
};
use proptest::prelude::*;

fn key() -> TaskKey {
    TaskKey::video(
        TenantId::new(1).expect("valid"),
        VideoId::new(7).expect("valid"),
    )
}

fn fence(g: u32, a: u32, s: u64) -> Fence {
    Fence::new(g, a, s).expect("valid fence")
}

fn processing(pct: u8) -> State {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(pct).expect("valid");
    s
}

/// Applies `w` to `slot` the way every store must, returning the outcome.
fn apply(slot: &mut Option<Stored>, w: &Write, now: u64) -> Outcome {
    let d = decide(slot.as_ref(), w, now);
    if let Decision::Write(stored) = &d {
        *slot = Some(stored.clone());
    }
    d.outcome()
}

fn status(slot: &Option<Stored>) -> Option<VideoStatus> {
    match slot.as_ref()?.state.as_ref()?.status {
        jobpulse_domain::Status::Video(v) => Some(v),
        jobpulse_domain::Status::Job(_) => None,
    }
}

#[test]
fn a_late_processing_after_ready_is_stale() {
    let mut slot = None;
    let ready = Write::set(key(), fence(1, 1, 10), State::video(VideoStatus::Ready)).expect("ok");
    let late = Write::set(key(), fence(1, 1, 11), processing(50)).expect("ok");
    assert!(matches!(
        apply(&mut slot, &ready, 1),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        apply(&mut slot, &late, 2),
        Outcome::Stale {
            current: fence(1, 1, 10),
            rev: 1
        }
    );
    assert_eq!(status(&slot), Some(VideoStatus::Ready));
    // A retry (new generation) is the way out.
    let retry = Write::set(key(), fence(2, 0, 1), State::video(VideoStatus::Uploaded)).expect("ok");
    assert!(matches!(
        apply(&mut slot, &retry, 3),
        Outcome::Applied { .. }
    ));
    assert_eq!(status(&slot), Some(VideoStatus::Uploaded));
}

#[test]
fn an_older_attempt_never_overwrites_a_newer_one() {
    let mut slot = None;
    let a2 = Write::set(key(), fence(1, 2, 1), processing(20)).expect("ok");
    let a1 = Write::set(key(), fence(1, 1, 999), processing(90)).expect("ok");
    apply(&mut slot, &a2, 1);
    assert!(matches!(apply(&mut slot, &a1, 2), Outcome::Stale { .. }));
    assert_eq!(slot.as_ref().map(|s| s.fence), Some(fence(1, 2, 1)));
}

#[test]
fn percent_never_goes_back_within_an_attempt() {
    let mut slot = None;
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 1, 1), processing(60)).expect("ok"),
        1,
    );
    let out = apply(
        &mut slot,
        &Write::set(key(), fence(1, 1, 2), processing(40)).expect("ok"),
        2,
    );
    assert!(matches!(out, Outcome::Applied { .. }));
    let pct = slot
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .map(|s| s.percent.get());
    assert_eq!(pct, Some(60));
    // A new attempt starts over, but readers see the percent held at the previous attempt's
    // until the new one passes it (docs/contract.md §3b); its own percent is kept beside it.
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 2, 1), processing(15)).expect("ok"),
        3,
    );
    let state = slot.as_ref().and_then(|s| s.state.clone()).expect("state");
    assert_eq!(state.percent.get(), 60);
    assert_eq!(state.attempt_percent.map(|p| p.get()), Some(15));
    let prev = state
        .previous_attempt
        .expect("the previous attempt is kept");
    assert_eq!((prev.attempt, prev.percent.get()), (1, 60));
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 2, 2), processing(70)).expect("ok"),
        4,
    );
    let state = slot.as_ref().and_then(|s| s.state.clone()).expect("state");
    assert_eq!(state.percent.get(), 70, "passed: its own percent again");
    assert_eq!(state.attempt_percent, None);
    assert_eq!(
        state.previous_attempt.map(|p| p.attempt),
        Some(1),
        "kept through the attempt"
    );
    // A new generation (a user's retry) starts from nothing: no hold, no previous attempt.
    apply(
        &mut slot,
        &Write::set(key(), fence(2, 0, 1), State::video(VideoStatus::Uploaded)).expect("ok"),
        5,
    );
    apply(
        &mut slot,
        &Write::set(key(), fence(2, 1, 1), processing(5)).expect("ok"),
        6,
    );
    let state = slot.as_ref().and_then(|s| s.state.clone()).expect("state");
    assert_eq!(state.percent.get(), 5);
    assert_eq!(state.previous_attempt, None);
}

/// The write that ends an attempt keeps what it showed (percent and step); a claim straight
/// after UPLOADED (attempt 0) has no previous attempt; a writer cannot set what only the store
/// sets.
#[test]
fn the_previous_attempt_is_taken_at_the_attempt_boundary() {
    let mut slot = None;
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 0, 1), State::video(VideoStatus::Uploaded)).expect("ok"),
        1,
    );
    let mut forged = processing(20);
    forged.previous_attempt = Some(Box::new(jobpulse_domain::PreviousAttempt {
        attempt: 9,
        percent: Percent::new(99).expect("ok"),
        step: None,
    }));
    forged.step = Some(jobpulse_domain::steps::VIDEO.step(4, 0.5));
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 1, 1), forged).expect("ok"),
        2,
    );
    let state = slot.as_ref().and_then(|s| s.state.clone()).expect("state");
    assert_eq!(state.previous_attempt, None, "attempt 0 is no attempt");
    let mut retry = State::video(VideoStatus::RetryWait);
    retry.attempt = Some(1);
    apply(
        &mut slot,
        &Write::set(key(), Fence::between_attempts(1, 1), retry).expect("ok"),
        3,
    );
    let state = slot.as_ref().and_then(|s| s.state.clone()).expect("state");
    assert_eq!(state.percent.get(), 20, "RETRY_WAIT holds the bar");
    let prev = state.previous_attempt.expect("taken");
    assert_eq!((prev.attempt, prev.percent.get()), (1, 20));
    assert_eq!(prev.step.map(|s| s.index), Some(4));
}

#[test]
fn heartbeats_keep_alive_but_never_create() {
    let mut slot = None;
    let hb = Write::heartbeat(key(), fence(1, 1, 0));
    assert!(matches!(apply(&mut slot, &hb, 1), Outcome::Rejected { .. }));
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 1, 3), processing(30)).expect("ok"),
        5,
    );
    let before = slot.clone();
    assert_eq!(apply(&mut slot, &hb, 6), Outcome::Applied { rev: 5 });
    assert_eq!(slot, before, "a heartbeat changes nothing visible");
    assert!(matches!(
        apply(&mut slot, &Write::heartbeat(key(), fence(1, 0, 0)), 7),
        Outcome::Stale { .. }
    ));
    assert!(matches!(
        apply(&mut slot, &Write::heartbeat(key(), fence(1, 2, 0)), 7),
        Outcome::Rejected { .. }
    ));
}

#[test]
fn deletion_absorbs_older_writes() {
    let mut slot = None;
    apply(
        &mut slot,
        &Write::set(key(), fence(1, 1, 3), processing(30)).expect("ok"),
        1,
    );
    apply(&mut slot, &Write::delete(key(), fence(1, 2, 0)), 2);
    assert_eq!(status(&slot), None);
    let zombie = Write::set(key(), fence(1, 1, 4), processing(31)).expect("ok");
    assert!(matches!(
        apply(&mut slot, &zombie, 3),
        Outcome::Stale { .. }
    ));
    let same_gen_later = Write::set(key(), fence(1, 3, 1), processing(5)).expect("ok");
    assert!(matches!(
        apply(&mut slot, &same_gen_later, 4),
        Outcome::Stale { .. }
    ));
}

#[test]
fn revisions_grow_even_when_the_clock_does_not() {
    let mut slot = None;
    let mut last = 0;
    for seq in 1..20 {
        let out = apply(
            &mut slot,
            &Write::set(key(), fence(1, 1, seq), processing(10)).expect("ok"),
            1000,
        );
        let Outcome::Applied { rev } = out else {
            panic!("{out:?}")
        };
        assert!(rev > last);
        last = rev;
    }
}

/// A well-formed history of one task: generations, attempts within them, seq within attempts,
/// percent non-decreasing within an attempt, and a terminal write last in a generation.
fn history() -> impl Strategy<Value = Vec<Write>> {
    let attempt = proptest::collection::vec(0u8..=99, 1..6);
    let generation = (proptest::collection::vec(attempt, 1..4), 0u8..3);
    proptest::collection::vec(generation, 1..4).prop_map(|gens| {
        let mut writes = Vec::new();
        for (gi, (attempts, ending)) in gens.into_iter().enumerate() {
            let g = gi as u32 + 1;
            writes.push(
                Write::set(key(), fence(g, 0, 1), State::video(VideoStatus::Uploaded)).expect("ok"),
            );
            let n = attempts.len() as u32;
            for (ai, mut pcts) in attempts.into_iter().enumerate() {
                pcts.sort_unstable();
                for (si, p) in pcts.into_iter().enumerate() {
                    writes.push(
                        Write::set(key(), fence(g, ai as u32 + 1, si as u64 + 1), processing(p))
                            .expect("ok"),
                    );
                }
            }
            let end = match ending {
                0 => None,
                1 => Some(State::video(VideoStatus::Ready)),
                _ => Some(State::video(VideoStatus::Failed)),
            };
            if let Some(end) = end {
                writes.push(Write::set(key(), Fence::between_attempts(g, n), end).expect("ok"));
            }
        }
        writes
    })
}

/// Arbitrary writes, including ill-ordered and percent-regressing ones.
fn chaos() -> impl Strategy<Value = Vec<Write>> {
    let w = (1u32..4, 0u32..4, 0u64..6, 0u8..5, 0u8..=99).prop_map(|(g, a, s, kind, p)| {
        let state = match kind {
            0 => State::video(VideoStatus::Uploaded),
            1 => State::video(VideoStatus::Ready),
            2 => State::video(VideoStatus::Failed),
            3 => State::video(VideoStatus::RetryWait),
            _ => processing(p),
        };
        Write::set(key(), fence(g, a, s), state).expect("ok")
    });
    proptest::collection::vec(w, 1..60)
}

proptest! {
    #![proptest_config(jobpulse_testkit::proptest_config(512))]

    /// Any interleaving of a well-formed history ends in the state of its newest write.
    #[test]
    fn any_interleaving_converges_to_the_newest_write(
        (writes, order) in history().prop_flat_map(|w| {
            let n = w.len();
            (Just(w), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let newest = writes.iter().max_by_key(|w| w.fence).expect("non-empty");
        let mut slot = None;
        for (now, i) in order.iter().enumerate() {
            apply(&mut slot, &writes[*i], now as u64);
        }
        let stored = slot.expect("something applied");
        prop_assert_eq!(stored.fence, newest.fence);
        let jobpulse_domain::WriteKind::Set(expected) = &newest.kind else { unreachable!() };
        prop_assert_eq!(stored.state.as_ref().map(State::as_written), Some(expected.as_written()));
    }

    /// Whatever writers send, a reader never sees the percent of a generation go back, never sees a
    /// terminal state of a generation replaced within that generation, and a refused write
    /// changes nothing.
    #[test]
    fn readers_never_see_regressions(writes in chaos()) {
        let mut slot: Option<Stored> = None;
        for (now, w) in writes.iter().enumerate() {
            let before = slot.clone();
            let out = apply(&mut slot, w, now as u64);
            let applied = matches!(out, Outcome::Applied { .. });
            match (&before, &slot) {
                (Some(b), Some(a)) => {
                    let (bs, as_) = (b.state.as_ref().expect("set"), a.state.as_ref().expect("set"));
                    if !applied {
                        prop_assert_eq!(&before, &slot);
                        continue;
                    }
                    prop_assert!(a.fence > b.fence, "applied writes are newer");
                    prop_assert!(a.rev > b.rev, "every change bumps the revision");
                    if a.fence.generation == b.fence.generation {
                        prop_assert!(!bs.status.is_terminal(), "terminal absorbed {w:?}");
                        // Across attempts too (docs/contract.md §3b).
                        if !as_.status.is_initial() {
                            prop_assert!(as_.percent >= bs.percent);
                        }
                    }
                }
                (None, Some(_)) => prop_assert!(applied),
                (_, None) => prop_assert!(false, "set writes never remove a record"),
            }
        }
    }
}

/// Rule 0: an external writer (the worker ingest API) cannot touch a task our database owns,
/// whatever fence it claims; our database takes back a record an external writer created for
/// one of its tasks, whatever that record's fence, and the revision still grows.
#[test]
fn external_writes_never_touch_database_tasks_and_the_database_takes_its_tasks_back() {
    let mut slot = None;
    let ready = Write::set(key(), fence(1, 1, 3), State::video(VideoStatus::Ready)).expect("ok");
    assert!(matches!(
        apply(&mut slot, &ready, 10),
        Outcome::Applied { rev: 10 }
    ));
    for w in [
        Write::set(key(), fence(9, 0, 0), processing(10)).expect("ok"),
        Write::heartbeat(key(), fence(1, 1, 3)),
        Write::delete(key(), fence(9, 9, 9)),
    ] {
        assert_eq!(
            apply(&mut slot, &w.external(), 11),
            Outcome::Rejected {
                reason: jobpulse_domain::RejectReason::OwnedByDatabase
            }
        );
    }
    assert_eq!(status(&slot), Some(VideoStatus::Ready));

    let mut slot = None;
    let forged = Write::set(key(), fence(9, 5, 5), State::video(VideoStatus::Ready))
        .expect("ok")
        .external();
    assert!(matches!(
        apply(&mut slot, &forged, 100),
        Outcome::Applied { rev: 100 }
    ));
    // The external writer goes on by its own fences.
    let older = Write::set(key(), fence(9, 5, 4), processing(5))
        .expect("ok")
        .external();
    assert!(matches!(
        apply(&mut slot, &older, 101),
        Outcome::Stale { .. }
    ));
    // Our database's write, with a far older fence, takes the record back.
    let ours = Write::set(key(), fence(1, 1, 2), processing(40)).expect("ok");
    assert_eq!(apply(&mut slot, &ours, 50), Outcome::Applied { rev: 101 });
    assert_eq!(status(&slot), Some(VideoStatus::Processing));
    assert_eq!(
        slot.as_ref().map(|s| s.origin),
        Some(jobpulse_domain::Origin::Database)
    );
    let again = Write::set(key(), fence(10, 0, 0), processing(1))
        .expect("ok")
        .external();
    assert!(matches!(
        apply(&mut slot, &again, 102),
        Outcome::Rejected { .. }
    ));
}
