//! Initial credentials of imported students: a login id, an initial password (random, the last
//! four digits of the student's phone, or one staff chose — the enroll route's `password_mode`),
//! and the password's hash for storage.
//!
//! Login ids must be unique per tenant, which only the database can check. [`login_id`] therefore
//! takes an attempt number: the enrolment step inserts with attempt 0 and, on a uniqueness
//! conflict, tries the next attempt. The first attempts are readable and stable (`s` + the last 8
//! digits of the parent phone, then a letter for siblings: `s12345678`, `s12345678b`, …); later
//! attempts are random, so the loop always ends.
//!
//! Randomness comes from the operating system ([`rand::rngs::SysRng`]) and is fallible rather
//! than panicking. Hashes are Argon2id PHC strings. A password a person chose is hashed with the
//! OWASP-recommended minimum ([`hash_password`], `$argon2id$v=19$m=19456,t=2,p=1$…`): its
//! strength may be low, so the KDF's cost is what protects it. A password this module generated
//! ([`hash_generated_password`], `m=4096,t=1`) carries about 69 random bits, which no guessing
//! can cover whatever the KDF costs, so it gets a light setting that keeps a 2 000-student
//! import short (docs/excel-import.md has the figures); a `phone_last4` password gets the light
//! setting too ([`hash_phone_password`] says why). A PHC string carries its parameters, so
//! [`verify_password`] checks both kinds, and either setting can be raised later.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::TryCryptoRng;
use rand::rngs::SysRng;

use super::phone::Phone;

/// Password characters: letters and digits without the look-alikes `0 O o 1 l I`.
pub const PASSWORD_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
/// Generated password length: 12 of 56 symbols, about 69 bits.
pub const PASSWORD_LEN: usize = 12;
/// Characters of the random part of a login id: lower case and digits without `0 o 1 l i`.
pub const LOGIN_ALPHABET: &str = "abcdefghjkmnpqrstuvwxyz23456789";
/// The login id prefix the enrolment step uses unless a tenant configures another.
pub const DEFAULT_LOGIN_PREFIX: &str = "s";
/// Attempts `0..DETERMINISTIC_ATTEMPTS` of [`login_id`] are derived from the parent phone.
pub const DETERMINISTIC_ATTEMPTS: u32 = 10;
/// Length of the random part of later attempts: 31^8 ≈ 8.5e11 ids.
const RANDOM_LOGIN_LEN: usize = 8;
/// Sibling suffixes of attempts 1.. (attempt 0 has none).
const SIBLING_SUFFIXES: &[u8] = b"bcdefghjk";

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP Password Storage Cheat Sheet minimum).
pub const HASH_M_COST_KIB: u32 = 19 * 1024;
pub const HASH_T_COST: u32 = 2;
pub const HASH_P_COST: u32 = 1;

/// Argon2id cost for generated passwords: 4 MiB, 1 pass, 1 lane. Their ~69 random bits, not the
/// KDF, are what resists guessing (see the module docs).
pub const GENERATED_HASH_M_COST_KIB: u32 = 4 * 1024;
pub const GENERATED_HASH_T_COST: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A generated password (only [`generate_password`] makes one). Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Uniform draws from an alphabet of at most 256 symbols, by rejection sampling of random bytes.
struct Sampler<'r, R: TryCryptoRng + ?Sized> {
    rng: &'r mut R,
    buf: [u8; 64],
    pos: usize,
}

impl<'r, R: TryCryptoRng + ?Sized> Sampler<'r, R> {
    fn new(rng: &'r mut R) -> Self {
        Self {
            rng,
            buf: [0; 64],
            pos: 64,
        }
    }

    fn byte(&mut self) -> Result<u8, CredentialError> {
        if self.pos == self.buf.len() {
            self.rng
                .try_fill_bytes(&mut self.buf)
                .map_err(|e| CredentialError::Rng(e.to_string()))?;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    fn pick(&mut self, alphabet: &[u8]) -> Result<u8, CredentialError> {
        // Largest multiple of the alphabet size that fits in a byte: bytes above it would favour
        // the first symbols.
        let n = alphabet.len();
        let zone = 256 - 256 % n;
        loop {
            let b = usize::from(self.byte()?);
            if b < zone {
                return Ok(alphabet[b % n]);
            }
        }
    }

    fn string(&mut self, alphabet: &[u8], len: usize) -> Result<String, CredentialError> {
        (0..len)
            .map(|_| self.pick(alphabet).map(char::from))
            .collect()
    }
}

/// A random password from the operating system's generator.
pub fn generate_password() -> Result<Password, CredentialError> {
    generate_password_with(&mut SysRng)
}

/// A random password of [`PASSWORD_LEN`] characters of [`PASSWORD_ALPHABET`] with at least one
/// upper-case letter, one lower-case letter and one digit (the usual policy checks), drawn
/// uniformly among such passwords.
pub fn generate_password_with<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
) -> Result<Password, CredentialError> {
    let mut s = Sampler::new(rng);
    // About 15 % of draws lack a digit; 64 rejections in a row happen with probability 1e-53.
    for _ in 0..64 {
        let p = s.string(PASSWORD_ALPHABET.as_bytes(), PASSWORD_LEN)?;
        let has = |f: fn(&char) -> bool| p.chars().any(|c| f(&c));
        if has(char::is_ascii_uppercase)
            && has(char::is_ascii_lowercase)
            && has(char::is_ascii_digit)
        {
            return Ok(Password(p));
        }
    }
    Err(CredentialError::Rng(
        "64 draws in a row lacked a character class".to_owned(),
    ))
}

/// The `phone_last4` initial password: the last four digits of the student's phone (a parsed
/// [`Phone`] has at least ten digits).
pub fn phone_last4(phone: &Phone) -> String {
    let digits = phone.digits();
    digits[digits.len().saturating_sub(4)..].to_owned()
}

/// The login id to try at `attempt` (0, 1, 2, … after each uniqueness conflict).
///
/// `prefix` + the last 8 digits of the parent phone for attempt 0, then a sibling letter
/// (`b`, `c`, …) up to [`DETERMINISTIC_ATTEMPTS`], then `prefix` + 8 random characters.
pub fn login_id(
    prefix: &str,
    parent_phone: &Phone,
    attempt: u32,
) -> Result<String, CredentialError> {
    login_id_with(prefix, parent_phone, attempt, &mut SysRng)
}

/// [`login_id`] with a given random source for the random attempts.
pub fn login_id_with<R: TryCryptoRng + ?Sized>(
    prefix: &str,
    parent_phone: &Phone,
    attempt: u32,
    rng: &mut R,
) -> Result<String, CredentialError> {
    if attempt < DETERMINISTIC_ATTEMPTS {
        let digits = parent_phone.digits();
        let tail = &digits[digits.len().saturating_sub(8)..];
        let mut id = format!("{prefix}{tail}");
        if let Some(i) = attempt.checked_sub(1) {
            let suffix = SIBLING_SUFFIXES
                .get(usize::try_from(i).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(b'z');
            id.push(char::from(suffix));
        }
        return Ok(id);
    }
    let random = Sampler::new(rng).string(LOGIN_ALPHABET.as_bytes(), RANDOM_LOGIN_LEN)?;
    Ok(format!("{prefix}{random}"))
}

fn hasher(m_cost_kib: u32, t_cost: u32) -> Result<Argon2<'static>, CredentialError> {
    let params = Params::new(m_cost_kib, t_cost, HASH_P_COST, None)
        .map_err(|e| CredentialError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with(password: &str, m_cost_kib: u32, t_cost: u32) -> Result<String, CredentialError> {
    hasher(m_cost_kib, t_cost)?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// The Argon2id PHC string of a password a person chose (OWASP minimum cost), with a fresh
/// random salt.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    hash_with(password, HASH_M_COST_KIB, HASH_T_COST)
}

/// The Argon2id PHC string of a password made by [`generate_password`] (light cost, see the
/// module docs), with a fresh random salt. Do not use it for passwords people choose.
pub fn hash_generated_password(password: &Password) -> Result<String, CredentialError> {
    hash_with(
        password.as_str(),
        GENERATED_HASH_M_COST_KIB,
        GENERATED_HASH_T_COST,
    )
}

/// The Argon2id PHC string of the [`phone_last4`] password of `phone`, with a fresh random
/// salt, at the light setting of generated passwords: the password is the end of the phone
/// number stored in the same row, so whoever can read the hash can read the password's source
/// too, and no KDF cost would protect it; a costly hash would only make a 2 000-student import
/// slow. It takes the phone, not a string, so a password a person chose cannot get this setting.
pub fn hash_phone_password(phone: &Phone) -> Result<String, CredentialError> {
    hash_with(
        &phone_last4(phone),
        GENERATED_HASH_M_COST_KIB,
        GENERATED_HASH_T_COST,
    )
}

/// Whether `password` matches a PHC string made by [`hash_password`] or
/// [`hash_generated_password`] (any Argon2 parameters: they are read from the string).
/// A malformed PHC string is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Hashes many generated passwords ([`hash_generated_password`]) on `threads` OS threads,
/// results in input order. `progress` is called
/// (from the hashing threads) with the number hashed so far after each one, so the enrolment step
/// can move its percent: 2 000 hashes take tens of seconds on two cores.
///
/// CPU-bound: call it from a blocking context (e.g. `tokio::task::spawn_blocking`).
pub fn hash_passwords(
    passwords: &[Password],
    threads: NonZeroUsize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<String>, CredentialError> {
    if passwords.is_empty() {
        return Ok(Vec::new());
    }
    let done = AtomicUsize::new(0);
    let chunk = passwords.len().div_ceil(threads.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                scope.spawn(move || {
                    part.iter()
                        .map(|p| {
                            let h = hash_generated_password(p)?;
                            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                            Ok(h)
                        })
                        .collect::<Result<Vec<_>, CredentialError>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(passwords.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| CredentialError::Hash("a hashing thread panicked".to_owned()))??;
            out.extend(part);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabets_have_no_look_alikes() {
        for c in ['0', 'O', 'o', '1', 'l', 'I'] {
            assert!(!PASSWORD_ALPHABET.contains(c), "{c}");
        }
        for c in ['0', 'o', '1', 'l', 'i'] {
            assert!(!LOGIN_ALPHABET.contains(c), "{c}");
        }
        assert_eq!(PASSWORD_ALPHABET.len(), 56);
        assert_eq!(LOGIN_ALPHABET.len(), 31);
    }

    #[test]
    fn deterministic_login_ids() {
        let p = Phone::parse("010-1234-5678").expect("valid");
        let mut ids = Vec::new();
        for a in 0..DETERMINISTIC_ATTEMPTS {
            ids.push(login_id("s", &p, a).expect("no rng needed"));
        }
        assert_eq!(ids[0], "s12345678");
        assert_eq!(ids[1], "s12345678b");
        assert_eq!(ids[9], "s12345678k");
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "attempts give distinct ids");
        assert_eq!(login_id("s", &p, 0).expect("same"), ids[0], "stable");
        let old = Phone::parse("011-123-4567").expect("valid");
        assert_eq!(login_id("st", &old, 0).expect("ok"), "st11234567");
    }

    #[test]
    fn random_login_ids_after_the_deterministic_ones() {
        let p = Phone::parse("010-1234-5678").expect("valid");
        let a = login_id("s", &p, DETERMINISTIC_ATTEMPTS).expect("os rng");
        let b = login_id("s", &p, DETERMINISTIC_ATTEMPTS + 1).expect("os rng");
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 1 + RANDOM_LOGIN_LEN);
            assert!(id[1..].chars().all(|c| LOGIN_ALPHABET.contains(c)), "{id}");
        }
    }

    #[test]
    fn hash_and_verify() {
        let pw = generate_password().expect("os rng");
        let h = hash_password(pw.as_str()).expect("hashes");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(pw.as_str(), &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password(pw.as_str(), "not a phc string"));
        let h2 = hash_password(pw.as_str()).expect("hashes");
        assert_ne!(h, h2, "fresh salt each time");
        assert!(!format!("{pw:?}").contains(pw.as_str()));
    }

    #[test]
    fn phone_last4_is_the_end_of_the_number() {
        for (phone, want) in [
            ("010-1234-5678", "5678"),
            ("01098760001", "0001"),
            ("+82 10-2222-3034", "3034"),
        ] {
            let p = Phone::parse(phone).expect("valid");
            assert_eq!(phone_last4(&p), want, "{phone}");
        }
        let h =
            hash_phone_password(&Phone::parse("010-1234-5678").expect("valid")).expect("hashes");
        assert!(h.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{h}");
        assert!(verify_password("5678", &h));
        assert!(!verify_password("5679", &h));
    }

    #[test]
    fn generated_passwords_get_the_light_setting_and_still_verify() {
        let pw = generate_password().expect("os rng");
        let h = hash_generated_password(&pw).expect("hashes");
        assert!(h.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{h}");
        assert!(verify_password(pw.as_str(), &h));
        assert!(!verify_password("wrong", &h));
        let other = generate_password().expect("os rng");
        assert!(!verify_password(other.as_str(), &h));
    }
}
