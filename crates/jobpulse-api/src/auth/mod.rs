//! Authentication without a database: the token is the membership proof (docs/contract.md §1).
//!
//! A [`Verifier`] checks a JWT's signature with exactly one configured algorithm (HS256 with a
//! secret by default, or RS256/ES256/EdDSA with a public key), requires `exp`, checks `nbf` when
//! present, `token_type == "access"`, and the configured `aud`/`iss` when set. The tenant comes
//! from the verified `tenant_id` claim only.
//!
//! Two audiences exist: browser tokens (any `aud` except `worker`, or the configured one) and
//! worker tokens (`aud = "worker"`) for the ingest routes. Each is refused where the other
//! belongs, with 403.
//!
//! Verified tokens are cached (`quick_cache`: bounded, evicting entry by entry; an entry is
//! used only until its token's `exp`) so a browser polling every few seconds with the same token
//! costs one hash lookup instead of a signature check and two JSON parses. The cache never
//! outlives a token's expiry and never holds a token that failed.
//!
//! The submodules: `claims` (what a token says: [`Claims`], and what a verified one proves:
//! [`Principal`]), `config` (how tokens are signed and checked: [`AuthConfig`]) and `verifier`
//! ([`Verifier`]: minting, verifying, the cache).

mod claims;
mod config;
mod verifier;

pub use self::claims::{Audience, Claims, OneOrMany, Principal, Role};
pub use self::config::{AuthConfig, AuthConfigError, TokenSpec};
pub use self::verifier::Verifier;

/// The audience of worker tokens.
pub const WORKER_AUDIENCE: &str = "worker";

/// Parses a duration such as `90s`, `15m`, `1h30m`, `90min`, `7d` (the `humantime` crate's
/// syntax) or plain seconds (`90`); between 1 s and 366 days.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let secs = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().ok()
    } else {
        humantime::parse_duration(s).ok().map(|d| d.as_secs())
    }
    .ok_or_else(|| format!("invalid duration {s:?}; use e.g. 90s, 15m, 1h30m, 7d"))?;
    Some(secs)
        .filter(|v| *v > 0 && *v <= 366 * 86_400)
        .ok_or_else(|| format!("duration {s:?} must be between 1s and 366d"))
}
