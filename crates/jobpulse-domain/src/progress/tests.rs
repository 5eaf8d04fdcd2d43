//! The progress schema's tests: bounds of the values and the invariants of a state.

use super::*;
use crate::{JobStatus, JobType, MAX_INLINE_RESULT_BYTES, TaskKind, VideoStatus};

#[test]
fn percent_bounds() {
    assert!(Percent::new(100).is_ok());
    assert!(Percent::new(101).is_err());
    assert_eq!(Percent::from_fraction(0.999).get(), 99);
    assert_eq!(Percent::from_fraction(f64::NAN).get(), 0);
    assert_eq!(Percent::from_fraction(7.0).get(), 100);
    assert!(serde_json::from_str::<Percent>("101").is_err());
}

#[test]
fn texts_are_bounded_and_printable() {
    assert!(Text::parse("ok", "x", 5).is_ok());
    assert!(Text::parse("", "x", 5).is_err());
    assert!(Text::parse("toolong", "x", 5).is_err());
    assert!(Text::parse("a\u{0}b", "x", 5).is_err());
    assert_eq!(Text::lossy("a\u{1b}[31mb", 100).as_str(), "a [31mb");
    assert_eq!(Text::lossy("abcdef", 4).as_str(), "abc…");
    assert_eq!(Text::lossy("  ", 4).as_str(), "-");
}

#[test]
fn steps_are_validated() {
    assert!(StepProgress::new(4, 7, "transcoding", "인코딩", Percent::ZERO).is_ok());
    assert!(StepProgress::new(0, 7, "x", "x", Percent::ZERO).is_err());
    assert!(StepProgress::new(8, 7, "x", "x", Percent::ZERO).is_err());
    assert!(StepProgress::new(1, 7, "Bad Name", "x", Percent::ZERO).is_err());
}

#[test]
fn large_results_become_references() {
    let small = serde_json::json!({"created": 3});
    let r = JobResult::whole(small).expect("object");
    assert!(r.inline.is_some() && !r.full_available);
    let big = serde_json::json!({"blob": "x".repeat(MAX_INLINE_RESULT_BYTES)});
    let r = JobResult::whole(big).expect("object");
    assert!(r.inline.is_none() && r.full_available);
    assert!(JobResult::whole(serde_json::json!([1])).is_err());
}

#[test]
fn state_invariants() {
    let mut s = State::video(VideoStatus::Uploaded);
    assert!(s.validate(TaskKind::Video).is_ok());
    assert!(s.validate(TaskKind::Job).is_err());
    s.percent = Percent::new(5).expect("valid");
    assert!(s.validate(TaskKind::Video).is_err());

    let mut p = State::video(VideoStatus::Processing);
    p.percent = Percent::FULL;
    assert!(p.validate(TaskKind::Video).is_err(), "100 % only at READY");

    let mut q = State::video(VideoStatus::Failed);
    q.step = Some(StepProgress::new(1, 7, "presigning", "준비", Percent::ZERO).expect("ok"));
    assert!(q.validate(TaskKind::Video).is_err(), "no steps on FAILED");

    let jt = JobType::parse("excel_parsing").expect("valid");
    let mut j = State::job(JobStatus::Running, jt.clone());
    j.result = JobResult::whole(serde_json::json!({})).ok();
    assert!(
        j.validate(TaskKind::Job).is_err(),
        "result only when terminal"
    );
    let mut d = State::job(JobStatus::Done, jt);
    d.result = JobResult::whole(serde_json::json!({"created": 1})).ok();
    assert!(d.validate(TaskKind::Job).is_ok());
}

#[test]
fn state_round_trips_through_json() {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(57).expect("valid");
    s.step = StepProgress::new(4, 7, "transcoding", "인코딩", Percent::new(40).expect("v")).ok();
    s.remaining_seconds = Some(84);
    let json = serde_json::to_string(&s).expect("serializes");
    assert!(
        json.contains(r#""kind":"video","status":"PROCESSING""#),
        "{json}"
    );
    let back: State = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, s);
}
