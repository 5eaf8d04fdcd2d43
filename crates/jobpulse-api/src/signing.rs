//! Signed media URLs: letting a `<video>` element (which cannot send an `Authorization` header)
//! fetch a tenant's HLS files and thumbnails, and nothing else.
//!
//! `/media/s/{expires}/{n}/{sig}/{key}`: `sig` is an HMAC-SHA256 over `expires`, `n` and the
//! first `n` segments of `key` (the *scope*, e.g. `tenants/3/video/hls/21`). Any key under the
//! scope is served until `expires`, which is what an HLS player needs: the master playlist's
//! relative URIs (`720p/index.m3u8`, `720p/seg_00001.ts`) resolve under the same signed prefix.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a URL (144 bits).
const TAG_BYTES: usize = 18;

/// Signs and verifies media URLs.
#[derive(Clone)]
pub struct MediaSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSigner").finish_non_exhaustive()
    }
}

impl MediaSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// A key derived from another secret (e.g. the JWT secret), so the two are never equal.
    pub fn derived(secret: &[u8]) -> Self {
        Self::new(&Self::mac(secret, b"jobpulse media urls v1"))
    }

    fn mac(key: &[u8], msg: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut m = match HmacSha256::new_from_slice(key) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }

    fn message(expires: u64, scope: &str) -> String {
        let n = scope.split('/').count();
        format!("{expires}:{n}:{scope}")
    }

    fn sig(&self, expires: u64, scope: &str) -> String {
        let msg = Self::message(expires, scope);
        URL_SAFE_NO_PAD.encode(&Self::mac(&self.key, msg.as_bytes())[..TAG_BYTES])
    }

    /// The URL of `key`, valid for every key under `scope` (a prefix of `key` made of whole
    /// segments, without a trailing `/`) until `expires` (unix seconds).
    pub fn url(&self, scope: &str, key: &str, expires: u64) -> Option<String> {
        let scope = scope.trim_end_matches('/');
        if !key.starts_with(scope) || !key[scope.len()..].starts_with('/') && key != scope {
            return None;
        }
        let n = scope.split('/').count();
        Some(format!(
            "/media/s/{expires}/{n}/{}/{key}",
            self.sig(expires, scope)
        ))
    }

    /// A tag over `purpose` and `fields` (joined unambiguously), for the API's own upload URLs
    /// (see [`crate::routes::direct_upload`]). A different purpose never yields the same tag.
    pub fn tag(&self, purpose: &str, fields: &[&str]) -> String {
        let mut msg = format!("upload v1:{purpose}");
        for f in fields {
            msg.push_str(&format!(":{}:{f}", f.len()));
        }
        URL_SAFE_NO_PAD.encode(&Self::mac(&self.key, msg.as_bytes())[..18])
    }

    /// Compares `sig` with [`MediaSigner::tag`] of the same input in constant time.
    pub fn check_tag(&self, sig: &str, purpose: &str, fields: &[&str]) -> bool {
        let expected = self.tag(purpose, fields);
        expected.len() == sig.len()
            && expected
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Checks a request for `key` with the given `expires`, `n` and `sig` at time `now`.
    pub fn verify(&self, expires: u64, n: usize, sig: &str, key: &str, now: u64) -> bool {
        if expires < now || n == 0 || n > 16 {
            return false;
        }
        let segments: Vec<&str> = key.split('/').collect();
        if segments.len() < n {
            return false;
        }
        let scope = segments[..n].join("/");
        // The tag is the first 18 bytes of the HMAC; `hmac` compares them in constant time.
        let Ok(tag) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        if tag.len() != TAG_BYTES {
            return false;
        }
        let Ok(mut m) = HmacSha256::new_from_slice(&self.key) else {
            return false;
        };
        m.update(Self::message(expires, &scope).as_bytes());
        m.verify_truncated_left(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_cover_their_scope_only() {
        let s = MediaSigner::derived(b"secret");
        let url = s
            .url(
                "tenants/3/video/hls/21",
                "tenants/3/video/hls/21/master.m3u8",
                2000,
            )
            .expect("key under scope");
        let parts: Vec<&str> = url.trim_start_matches("/media/s/").splitn(4, '/').collect();
        let (exp, n, sig) = (
            parts[0].parse().expect("u64"),
            parts[1].parse().expect("n"),
            parts[2],
        );
        assert!(s.verify(exp, n, sig, "tenants/3/video/hls/21/master.m3u8", 1000));
        assert!(s.verify(
            exp,
            n,
            sig,
            "tenants/3/video/hls/21/720p/seg_00001.ts",
            1000
        ));
        assert!(!s.verify(exp, n, sig, "tenants/3/video/hls/22/master.m3u8", 1000));
        assert!(!s.verify(exp, n, sig, "tenants/4/video/hls/21/master.m3u8", 1000));
        assert!(
            !s.verify(exp, n, sig, "tenants/3/video/hls/21/master.m3u8", 3000),
            "expired"
        );
        assert!(!s.verify(exp, n + 1, sig, "tenants/3/video/hls/21/x/y", 1000));
        assert!(!MediaSigner::derived(b"other").verify(
            exp,
            n,
            sig,
            "tenants/3/video/hls/21/a",
            1000
        ));
        assert!(
            s.url("tenants/3/video/hls/21", "tenants/3/video/hls/210/a", 1)
                .is_none()
        );
    }
}
