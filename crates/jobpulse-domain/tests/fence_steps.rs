//! The steps of a fence (`Fence::claim`, `next_seq`, `with_seq`, `next_attempt`,
//! `next_generation`): each outranks what it steps from, as the ordering rule needs.

use jobpulse_domain::Fence;
use jobpulse_domain::fence::MAX_SEQ;

fn f(g: u32, a: u32, s: u64) -> Fence {
    Fence::new(g, a, s).expect("valid")
}

#[test]
fn the_steps_of_one_attempt() {
    let claim = Fence::claim(2, 3).expect("valid");
    assert_eq!(claim, f(2, 3, 1));
    let tick = claim.next_seq();
    assert_eq!(tick, f(2, 3, 2));
    assert!(tick > claim);
    assert!(claim.same_attempt(&tick));
    assert_eq!(claim.with_seq(9).expect("valid"), f(2, 3, 9));
    assert!(claim.with_seq(MAX_SEQ + 1).is_err());
    assert_eq!(
        f(1, 1, MAX_SEQ).next_seq().seq,
        MAX_SEQ,
        "seq stays exact in Lua"
    );
}

#[test]
fn between_attempts_outranks_every_write_of_the_attempt() {
    let last = f(1, 2, MAX_SEQ);
    let between = last.next_attempt();
    assert_eq!(between, f(1, 3, 0));
    assert_eq!(Fence::between_attempts(1, 2), between);
    assert!(between > last);
    assert!(!between.same_attempt(&last));
    let next_claim = between.next_seq();
    assert_eq!(next_claim, Fence::claim(1, 3).expect("valid"));
    assert!(next_claim > between);
}

#[test]
fn a_new_generation_outranks_the_old_one() {
    let old = f(1, 7, 40);
    let restart = old.next_generation();
    assert_eq!(restart, f(2, 0, 1));
    assert!(restart > old);
    assert!(restart > old.next_attempt());
    assert_eq!(f(u32::MAX, 1, 1).next_generation().generation, u32::MAX);
}
