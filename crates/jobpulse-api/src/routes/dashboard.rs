//! The dashboard: the static work-box page at `/` and its assets at `/assets/…`.
//!
//! Every file is compiled into the binary (`include_bytes!`), so a deployment is one executable:
//! no Node, no asset directory at run time. Each answer carries a strong `ETag` (a hash of the
//! bytes) and `Cache-Control: no-cache`, so browsers keep a copy but revalidate it on every load
//! (a cheap 304) and never run a stale script after an upgrade.
//!
//! The page is locked down with a strict Content-Security-Policy: only same-origin scripts,
//! styles, media and connections; no inline script or style, no `eval`. `blob:` is allowed for
//! media and workers because hls.js (the fallback HLS player for browsers without native HLS)
//! feeds the `<video>` through a MediaSource `blob:` URL and transmuxes in a worker it creates
//! from a `blob:` URL. Media links are absolute (on the API's public URL) and, on S3 storage,
//! segments come from the bucket: [`router`] adds those origins to `media-src`, `img-src` and
//! `connect-src` (hls.js fetches with XHR).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

/// The policy every dashboard answer carries when media comes from the page's own origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; connect-src 'self'; \
    worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
    object-src 'none'";

/// The policy with `media_origins` (e.g. `https://media.example.com`) allowed for media, images
/// and connections too. Origins that are not plain `scheme://host[:port]` are left out.
pub fn content_security_policy(media_origins: &[String]) -> String {
    let extra: Vec<&str> = media_origins
        .iter()
        .map(String::as_str)
        .filter(|o| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && o.split_once("://").is_some_and(|(_, rest)| {
                    !rest.is_empty()
                        && rest.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                        })
                })
        })
        .collect();
    if extra.is_empty() {
        return CONTENT_SECURITY_POLICY.to_owned();
    }
    let extra = extra.join(" ");
    CONTENT_SECURITY_POLICY
        .replace(
            "media-src 'self' blob:",
            &format!("media-src 'self' blob: {extra}"),
        )
        .replace(
            "img-src 'self' data: blob:",
            &format!("img-src 'self' data: blob: {extra}"),
        )
        .replace("connect-src 'self'", &format!("connect-src 'self' {extra}"))
}

/// One compiled-in file.
#[derive(Debug)]
struct Asset {
    /// Path under `/assets/` (or `index.html` for `/`).
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ctype:expr) => {
        Asset {
            path: $path,
            content_type: $ctype,
            bytes: include_bytes!(concat!("../../assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything served under `/assets/`.
static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("format.js", JS),
    asset!("jobpulse-client.js", JS),
    asset!("workbox.js", JS),
    asset!("forms.js", JS),
    asset!("player.js", JS),
    asset!("vendor/hls.light.min.js", JS),
    asset!("vendor/LICENSE.hls.js", "text/plain; charset=utf-8"),
];

/// A strong validator per file, computed once: FNV-1a over the bytes is plenty to tell two
/// builds' files apart and needs no dependency.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS.iter())
        .map(|a| {
            let hash = a.bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}-{:x}\"", a.bytes.len()))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// The page and its assets; `media_origins` as in [`content_security_policy`].
pub fn router(media_origins: &[String]) -> Router {
    let csp = HeaderValue::from_str(&content_security_policy(media_origins))
        .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
        .with_state(csp)
}

async fn index(State(csp): State<HeaderValue>, headers: HeaderMap) -> Response {
    serve(&INDEX, 0, &headers, csp)
}

async fn asset(
    State(csp): State<HeaderValue>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (i, a) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.path == file)
        .ok_or(ApiError::NotFound)?;
    Ok(serve(a, i + 1, &headers, csp))
}

fn serve(
    asset: &'static Asset,
    etag_index: usize,
    headers: &HeaderMap,
    csp: HeaderValue,
) -> Response {
    let tag = ETAGS
        .get(etag_index)
        .cloned()
        .unwrap_or(HeaderValue::from_static("\"0\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.as_bytes() == tag.as_bytes())
        });
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.bytes.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_origins_extend_media_image_and_connect_sources_only() {
        assert_eq!(content_security_policy(&[]), CONTENT_SECURITY_POLICY);
        let csp = content_security_policy(&[
            "https://api.example.com".into(),
            "http://127.0.0.1:9000".into(),
            "javascript:alert(1)".into(),
            "https://x.example; script-src *".into(),
        ]);
        let origins = "https://api.example.com http://127.0.0.1:9000";
        for directive in [
            "media-src 'self' blob:",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
        ] {
            assert!(
                csp.contains(&format!("{directive} {origins};")),
                "{directive}: {csp}"
            );
        }
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            !csp.contains("javascript") && !csp.contains("script-src *"),
            "{csp}"
        );
    }
}
