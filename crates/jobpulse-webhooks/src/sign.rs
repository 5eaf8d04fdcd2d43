//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, the key the base64 part of the endpoint's
//! `whsec_…` secret, the signature `v1,` and the base64 HMAC-SHA256.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("webhook secret is not whsec_<base64>")]
pub struct SignError;

/// The `webhook-signature` header value for one attempt.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, SignError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| SignError)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = mac.finalize().into_bytes();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries' tests.
    #[test]
    fn matches_the_reference_example() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.ok().as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn refuses_a_bad_secret() {
        assert!(sign("whsec_!!!", "msg_1", 1, "{}").is_err());
    }
}
