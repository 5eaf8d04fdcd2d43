//! [`Verifier`]: checks a request's bearer token (signature, claims, audience, `X-Tenant-Code`),
//! with a bounded cache of verified tokens, and mints tokens when it holds a key.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use jobpulse_domain::TenantId;
use jsonwebtoken::{Header, Validation};

use super::{Audience, AuthConfig, Claims, OneOrMany, Principal, Role, TokenSpec, WORKER_AUDIENCE};
use crate::error::ApiError;

const CACHE_CAPACITY: usize = 16_384;

/// Verifies tokens; see the module docs.
pub struct Verifier {
    config: AuthConfig,
    validation: Validation,
    /// Verified tokens, bounded; an entry is dropped when read past its token's `exp`, and the
    /// least useful ones are evicted one by one when full (quick_cache's CLOCK-Pro).
    cache: quick_cache::sync::Cache<Box<str>, Principal>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Verifier {
    pub fn new(config: AuthConfig) -> Self {
        let mut validation = Validation::new(config.algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = config.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Audiences are checked below, per route kind (browser vs worker).
        validation.validate_aud = false;
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            validation.set_required_spec_claims(&["exp", "iss"]);
        }
        Self {
            config,
            validation,
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Mints a signed token. Fails when this process only holds a public key.
    pub fn mint(&self, spec: &TokenSpec) -> Result<String, ApiError> {
        let Some(key) = &self.config.encoding else {
            return Err(ApiError::BadRequest(
                "this configuration verifies with a public key and cannot mint tokens".into(),
            ));
        };
        let now = now_secs();
        let claims = Claims {
            exp: now + spec.ttl_secs,
            nbf: None,
            iat: Some(now),
            token_type: "access".into(),
            tenant_id: spec.tenant.get(),
            tenant_code: spec.tenant_code.clone(),
            user_id: spec.user_id.clone().map(serde_json::Value::String),
            role: spec.role.clone(),
            aud: if spec.worker {
                Some(OneOrMany::One(WORKER_AUDIENCE.into()))
            } else {
                self.config.audience.clone().map(OneOrMany::One)
            },
            iss: self.config.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.config.algorithm), &claims, key)
            .map_err(ApiError::internal)
    }

    /// Verifies the bearer token of a request for a route of the given audience, including the
    /// `X-Tenant-Code` agreement rule.
    pub fn authenticate(&self, headers: &HeaderMap, want: Audience) -> Result<Principal, ApiError> {
        let token = bearer(headers)?;
        let principal = self.verify(token)?;
        if principal.audience != want {
            return Err(ApiError::Forbidden(match want {
                Audience::Browser => "worker tokens cannot be used on browser routes",
                Audience::Worker => "this route needs a worker token (aud \"worker\")",
            }));
        }
        if let (Some(claimed), Some(header)) = (
            principal.tenant_code.as_deref(),
            headers.get("x-tenant-code"),
        ) && header.as_bytes() != claimed.as_bytes()
        {
            return Err(ApiError::Forbidden(
                "X-Tenant-Code does not match the token's tenant",
            ));
        }
        crate::observe::note_tenant(principal.tenant.get());
        Ok(principal)
    }

    /// Verifies one token (signature, claims), using the cache.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let now = now_secs();
        if let Some(p) = self.cached(token, now) {
            return Ok(p);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.config.decoding, &self.validation)
            .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ApiError::Unauthorized("token expired")
            }
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                ApiError::Unauthorized("token not valid yet")
            }
            _ => ApiError::Unauthorized("invalid token"),
        })?;
        let c = data.claims;
        if c.token_type != "access" {
            return Err(ApiError::Unauthorized("invalid token"));
        }
        let tenant =
            TenantId::new(c.tenant_id).map_err(|_| ApiError::Unauthorized("invalid token"))?;
        let audience = match &c.aud {
            Some(aud) if aud.contains(WORKER_AUDIENCE) => Audience::Worker,
            _ => Audience::Browser,
        };
        if audience == Audience::Browser
            && let Some(want) = &self.config.audience
            && !c.aud.as_ref().is_some_and(|a| a.contains(want))
        {
            return Err(ApiError::Unauthorized("invalid token"));
        }
        let principal = Principal {
            tenant,
            tenant_code: c.tenant_code,
            user_id: c.user_id.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            role: c.role.as_deref().map(Role::parse),
            expires_at: c.exp,
            audience,
        };
        // Only cache a token that is fully valid now (not-yet-valid tokens were refused above).
        self.remember(token, &principal);
        Ok(principal)
    }

    fn cached(&self, token: &str, now: u64) -> Option<Principal> {
        let p = self.cache.get(token)?;
        // `exp` is checked with the same leeway the signature check used; an expired entry
        // goes now rather than waiting for eviction.
        if p.expires_at + self.config.leeway > now {
            Some(p)
        } else {
            self.cache.remove(token);
            None
        }
    }

    fn remember(&self, token: &str, principal: &Principal) {
        self.cache.insert(token.into(), principal.clone());
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing bearer token"))?;
    let s = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid token"))?;
    let token = s
        .strip_prefix("Bearer ")
        .or_else(|| s.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`: the Bearer scheme is missing",
        ))?
        .trim();
    if token.is_empty() || token.len() > 8192 {
        return Err(ApiError::Unauthorized("invalid token"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::parse_ttl;

    fn verifier() -> Verifier {
        Verifier::new(AuthConfig::hs256(&[7u8; 32]).expect("strong secret"))
    }

    fn spec(role: &str) -> TokenSpec {
        TokenSpec {
            tenant: TenantId::new(3).expect("valid"),
            tenant_code: Some("acme".into()),
            user_id: Some("42".into()),
            role: Some(role.into()),
            ttl_secs: 60,
            worker: false,
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_claims() {
        let v = verifier();
        let token = v.mint(&spec("teacher")).expect("mints");
        let p = v.verify(&token).expect("verifies");
        assert_eq!(p.tenant.get(), 3);
        assert!(p.is_staff());
        assert_eq!(p.audience, Audience::Browser);
        // Second time from the cache, same answer.
        assert_eq!(v.verify(&token).expect("verifies"), p);
    }

    #[test]
    fn tokens_from_another_secret_fail() {
        let token = verifier().mint(&spec("staff")).expect("mints");
        let other = Verifier::new(AuthConfig::hs256(&[8u8; 32]).expect("strong"));
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn a_token_without_its_scheme_is_told_so() {
        let v = verifier();
        let token = v.mint(&spec("staff")).expect("mints");
        let message = |value: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(value) = value {
                h.insert(AUTHORIZATION, value.parse().expect("header value"));
            }
            match v.authenticate(&h, Audience::Browser) {
                Err(ApiError::Unauthorized(m)) => m,
                other => panic!("expected 401, got {other:?}"),
            }
        };
        assert_eq!(message(None), "missing bearer token");
        let bare = message(Some(&token));
        assert!(bare.contains("Bearer scheme is missing"), "{bare}");
        assert!(message(Some(&format!("Token {token}"))).contains("Bearer scheme is missing"));
        assert!(
            v.authenticate(
                &{
                    let mut h = HeaderMap::new();
                    h.insert(
                        AUTHORIZATION,
                        format!("Bearer {token}").parse().expect("value"),
                    );
                    h
                },
                Audience::Browser
            )
            .is_ok()
        );
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert!(AuthConfig::hs256(b"short").is_err());
    }

    #[test]
    fn roles() {
        assert!(Role::parse("owner").is_staff());
        assert!(!Role::parse("student").is_staff());
        assert!(!Role::parse("parent").is_staff());
        assert_eq!(Role::parse("janitor"), Role::Other("janitor".into()));
        assert!(!Role::parse("janitor").is_staff());
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("0s").is_err());
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("90min"), Ok(5400));
        assert!(parse_ttl("2y").is_err(), "over 366 days");
        assert!(parse_ttl("5 parsecs").is_err());
        assert!(parse_ttl("99999999999999999999999").is_err());
        assert!(parse_ttl("").is_err());
    }

    /// A full cache evicts entry by entry (it is not cleared wholesale: the tokens in use stay
    /// cached), and an entry read past its token's expiry is dropped.
    #[test]
    fn the_token_cache_is_bounded_and_expires_per_entry() {
        let v = verifier();
        let now = now_secs();
        for i in 0..(CACHE_CAPACITY + CACHE_CAPACITY / 2) {
            let token = format!("token-{i}");
            let p = Principal {
                tenant: TenantId::new(1).expect("valid"),
                tenant_code: None,
                user_id: Some(i.to_string()),
                role: None,
                expires_at: now + 3600,
                audience: Audience::Browser,
            };
            v.remember(&token, &p);
            // One token in steady use, as a polling browser's.
            assert!(
                v.cached("token-0", now).is_some(),
                "the hot token was evicted at {i}"
            );
        }
        let len = v.cache.len();
        assert!(
            len <= CACHE_CAPACITY && len > CACHE_CAPACITY / 2,
            "{len} entries after overfilling a cache of {CACHE_CAPACITY}"
        );
        let expired = Principal {
            expires_at: now.saturating_sub(3600),
            ..v.cached("token-0", now).expect("cached")
        };
        v.remember("old", &expired);
        assert!(v.cached("old", now).is_none());
        assert!(
            v.cache.get("old").is_none(),
            "an expired entry stays after being read"
        );
    }
}
