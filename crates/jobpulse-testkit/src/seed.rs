//! Replayable randomness. Every randomized test takes its seed from [`seed`]: the value of
//! `JOBPULSE_TEST_SEED` when it is set, a fresh one otherwise. Either way the seed is printed to
//! stderr together with the command that replays the test with it; nextest shows that output with
//! every failing (or retried) test, so a failure always says how to reproduce it.
//!
//! Property tests take their whole configuration from [`proptest_config`], which fixes
//! proptest's generator to the same seed (proptest would otherwise draw one and never print it).

use proptest::test_runner::{Config, RngSeed};

/// The environment variable a seed is replayed from.
pub const SEED_VAR: &str = "JOBPULSE_TEST_SEED";

/// This test's seed: `JOBPULSE_TEST_SEED` if set (decimal or `0x…`), else a fresh random one.
/// Prints it with the replay command.
///
/// # Panics
///
/// When `JOBPULSE_TEST_SEED` is set but is not a number: a replay must not silently run with
/// another seed.
pub fn seed() -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(text) => parse(&text).unwrap_or_else(|| {
            panic!("{SEED_VAR}={text:?} is not a u64 (decimal or 0x-prefixed hex)")
        }),
        Err(_) => rand::random(),
    };
    eprintln!("{}", replay_hint(seed));
    seed
}

/// `SEED 123 — replay: JOBPULSE_TEST_SEED=123 cargo nextest run -p … -E 'test(=…)'`, naming
/// the running test (libtest names each test's thread after it; nextest says which binary).
pub fn replay_hint(seed: u64) -> String {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .or_else(|| std::env::var("NEXTEST_TEST_NAME").ok());
    let package = std::env::var("CARGO_PKG_NAME").ok();
    let target = std::env::var("NEXTEST_BINARY_ID").ok().map(|id| {
        // `crate::binary` for an integration test, `crate` for unit tests.
        match id.split_once("::") {
            Some((_, bin)) => format!(" --test {bin}"),
            None => " --lib".to_owned(),
        }
    });
    let mut command = format!("{SEED_VAR}={seed} cargo nextest run");
    if let Some(p) = package {
        command.push_str(&format!(" -p {p}"));
    }
    command.push_str(target.as_deref().unwrap_or(""));
    if let Some(t) = test {
        command.push_str(&format!(" -E 'test(={t})'"));
    }
    format!("SEED {seed} — replay: {command}")
}

fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// proptest's configuration with `cases` cases and its generator seeded from [`seed`] (printed
/// with the replay command). The rest comes from proptest's defaults (and its `PROPTEST_*`
/// variables).
pub fn proptest_config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed()),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse(" 0x2a\n"), Some(42));
        assert_eq!(parse("0XFF"), Some(255));
        assert_eq!(parse("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("seed"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_hint_names_the_seed_the_variable_and_this_test() {
        let hint = replay_hint(7);
        assert!(hint.starts_with("SEED 7 — replay: JOBPULSE_TEST_SEED=7 cargo nextest run"));
        assert!(
            hint.contains("the_hint_names_the_seed_the_variable_and_this_test"),
            "{hint}"
        );
    }
}
