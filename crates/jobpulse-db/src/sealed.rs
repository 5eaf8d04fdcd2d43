//! Initial passwords at rest: sealed (encrypted and authenticated), never in clear text.
//!
//! An import hands the initial passwords it issued to staff (docs/contract.md §3: in the DONE answer,
//! for at least an hour after a page reload). Wherever they are stored — the import's ledger
//! (`import_rows.initial_password`), the stored full result (`ai_results.result`) and the read
//! model's inline result — they are [`CredentialSeal::seal`]ed: XChaCha20-Poly1305 with a random
//! 192-bit nonce per value, under a key that the API and the AI workers share
//! (`JOBPULSE_CREDENTIALS_KEY`, else derived from the HS256 secret). The job id is the
//! associated data, so a sealed value copied to another job (or tenant) does not open.
//!
//! Text form: `sealed:v1:` + base64url(nonce ‖ ciphertext). [`CredentialSeal::open`] refuses
//! anything else, a wrong key and any altered byte alike.
//!
//! The read model cannot be rewritten once a job is terminal (a terminal state absorbs later
//! writes, docs/contract.md §5), so what the worker seals for it carries an expiry
//! (`SealedCredentials`): after it the API no longer opens it, and the database copies are
//! purged by [`crate::retention`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix of a sealed value's text form.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// The key of a result's sealed credentials (in the stored full result and in the read
/// model's inline result): a `SealedCredentials` sealed to the job id.
pub const SEALED_CREDENTIALS_KEY: &str = "credentials_sealed";

const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed value")]
    Malformed,
    /// Wrong key, another job's value, or altered bytes.
    #[error("the sealed value does not open with this key for this job")]
    Rejected,
    #[error("encryption failed")]
    Encrypt,
}

/// The key sealing initial passwords. Its `Debug` does not show it.
#[derive(Clone)]
pub struct CredentialSeal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for CredentialSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSeal").finish_non_exhaustive()
    }
}

impl CredentialSeal {
    /// A seal with this 256-bit key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// A key derived from a secret of any length (HMAC-SHA256 with a fixed label), so the
    /// secret it comes from (e.g. the JWT secret) is never used as this key itself.
    pub fn derived(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(b"jobpulse credentials v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self::new(&key)
    }

    /// A random key (for one process, e.g. tests: what it seals only it can open).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self::new(&key)
    }

    /// Seals `plain` for `context` (the job id).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens what [`CredentialSeal::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Rejected)
    }

    /// Seals a text (an initial password in the import ledger).
    pub fn seal_text(&self, context: &str, text: &str) -> Result<String, SealError> {
        self.seal(context, text.as_bytes())
    }

    /// Opens a text sealed with [`CredentialSeal::seal_text`].
    pub fn open_text(&self, context: &str, sealed: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|_| SealError::Malformed)
    }

    /// Seals a result's credentials (anything serializable as JSON, normally the `credentials`
    /// array) with an expiry in unix milliseconds (`None`: none). Serialized straight to bytes:
    /// no `serde_json::Value` of 20 000 credentials is built on the way (13 MB on the heap).
    pub fn seal_credentials<C: Serialize + ?Sized>(
        &self,
        job_id: &str,
        credentials: &C,
        expires_at_ms: Option<i64>,
    ) -> Result<String, SealError> {
        let plain = SealingCredentials {
            expires_at_ms,
            credentials,
        };
        let bytes = serde_json::to_vec(&plain).map_err(|_| SealError::Encrypt)?;
        self.seal(job_id, &bytes)
    }

    /// Opens sealed credentials; `Ok(None)` when they expired before `now_ms`.
    pub fn open_credentials(
        &self,
        job_id: &str,
        sealed: &str,
        now_ms: i64,
    ) -> Result<Option<serde_json::Value>, SealError> {
        let bytes = self.open(job_id, sealed)?;
        let plain: SealedCredentials =
            serde_json::from_slice(&bytes).map_err(|_| SealError::Malformed)?;
        if plain.expires_at_ms.is_some_and(|exp| exp <= now_ms) {
            return Ok(None);
        }
        Ok(Some(plain.credentials))
    }
}

/// [`SealedCredentials`] as it is written: the credentials borrowed, whatever their type.
#[derive(Serialize)]
struct SealingCredentials<'a, C: ?Sized> {
    #[serde(rename = "exp")]
    expires_at_ms: Option<i64>,
    credentials: &'a C,
}

/// What a result's `credentials_sealed` holds once opened.
#[derive(Debug, Serialize, Deserialize)]
struct SealedCredentials {
    #[serde(rename = "exp")]
    expires_at_ms: Option<i64>,
    credentials: serde_json::Value,
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC-SHA256 takes keys of any length; this cannot happen.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_the_job_and_the_key() {
        let seal = CredentialSeal::derived(b"a secret of some length, 32 bytes+");
        let s = seal.seal_text("job-1", "k7RmQ2xNpa4E").expect("seals");
        assert!(s.starts_with(SEALED_PREFIX), "{s}");
        assert!(!s.contains("k7RmQ2xNpa4E"));
        assert_eq!(seal.open_text("job-1", &s).as_deref(), Ok("k7RmQ2xNpa4E"));
        assert_ne!(
            seal.seal_text("job-1", "k7RmQ2xNpa4E").expect("seals"),
            s,
            "a fresh nonce each time"
        );
        assert_eq!(seal.open_text("job-2", &s), Err(SealError::Rejected));
        let other = CredentialSeal::derived(b"another secret of some length, 32+");
        assert_eq!(other.open_text("job-1", &s), Err(SealError::Rejected));
        // One altered character anywhere is refused.
        let mut bytes = s.clone().into_bytes();
        let i = bytes.len() - 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).expect("ascii");
        assert!(seal.open_text("job-1", &altered).is_err());
        assert_eq!(
            seal.open_text("job-1", "k7RmQ2xNpa4E"),
            Err(SealError::Malformed)
        );
        assert_eq!(
            seal.open_text("job-1", "sealed:v1:AAAA"),
            Err(SealError::Malformed)
        );
        assert!(!format!("{seal:?}").contains("secret"));
    }

    #[test]
    fn credentials_expire() {
        let seal = CredentialSeal::random();
        let creds = serde_json::json!([{"name": "김", "login_id": "s1", "password": "p"}]);
        let s = seal
            .seal_credentials("j", &creds, Some(1_000))
            .expect("seals");
        assert_eq!(seal.open_credentials("j", &s, 999), Ok(Some(creds.clone())));
        assert_eq!(seal.open_credentials("j", &s, 1_000), Ok(None));
        let forever = seal.seal_credentials("j", &creds, None).expect("seals");
        assert_eq!(
            seal.open_credentials("j", &forever, i64::MAX),
            Ok(Some(creds))
        );
    }
}
