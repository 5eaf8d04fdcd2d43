//! How tokens are signed and checked ([`AuthConfig`]: one algorithm, its keys, the required
//! audience and issuer) and what a minted token carries ([`TokenSpec`]).

use jobpulse_domain::TenantId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// How tokens are signed and checked.
#[derive(Clone)]
pub struct AuthConfig {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
    /// Present when this process can mint tokens (HS256 secret, or a private key).
    pub encoding: Option<EncodingKey>,
    /// When set, browser tokens must carry this audience.
    pub audience: Option<String>,
    /// When set, every token must carry this issuer.
    pub issuer: Option<String>,
    /// Clock-skew allowance for `exp`/`nbf`, seconds.
    pub leeway: u64,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A problem with the auth configuration itself (not with a token).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("the JWT secret must be at least 32 bytes")]
    WeakSecret,
    #[error("cannot read the public key: {0}")]
    BadKey(String),
    #[error("unsupported algorithm {0}; use HS256, RS256, ES256 or EdDSA")]
    Algorithm(String),
}

impl AuthConfig {
    /// HS256 with a shared secret (the default).
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthConfigError> {
        if secret.len() < 32 {
            return Err(AuthConfigError::WeakSecret);
        }
        let bad = |e: jsonwebtoken::errors::Error| AuthConfigError::BadKey(e.to_string());
        Ok(Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret).map_err(bad)?,
            encoding: Some(EncodingKey::from_secret(secret).map_err(bad)?),
            audience: None,
            issuer: None,
            leeway: 30,
        })
    }

    /// Verification with a PEM public key (`RS256`, `ES256` or `EdDSA`); this process cannot mint.
    pub fn public_key(algorithm: &str, pem: &[u8]) -> Result<Self, AuthConfigError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthConfigError::BadKey(e.to_string());
        let (algorithm, decoding) = match algorithm {
            "RS256" => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(pem).map_err(bad)?,
            ),
            "ES256" => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
            ),
            "EdDSA" => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(pem).map_err(bad)?,
            ),
            other => return Err(AuthConfigError::Algorithm(other.to_owned())),
        };
        Ok(Self {
            algorithm,
            decoding,
            encoding: None,
            audience: None,
            issuer: None,
            leeway: 30,
        })
    }
}

/// Fields of a token to mint (see `jobpulse token`).
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub tenant: TenantId,
    pub tenant_code: Option<String>,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub ttl_secs: u64,
    pub worker: bool,
}
