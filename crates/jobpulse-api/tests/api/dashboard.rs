//! The dashboard page and its compiled-in assets, over a real socket.

use std::collections::BTreeSet;

use crate::helpers::*;

const CSP_DIRECTIVES: &[&str] = &[
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "media-src 'self' blob:",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "frame-ancestors 'none'",
];

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn assert_locked_down(res: &reqwest::Response, what: &str) {
    let csp = header(res, "content-security-policy");
    for d in CSP_DIRECTIVES {
        assert!(
            csp.split(';').any(|p| p.trim() == *d),
            "{what}: CSP lacks {d:?}: {csp}"
        );
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(res, "referrer-policy"), "no-referrer", "{what}");
}

/// Values of `attr="…"` in `html` (the page is ours: double quotes throughout).
fn attribute_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// Specifiers of `import … from './x.js'` in a module.
fn module_imports(js: &str) -> Vec<String> {
    js.split("from '")
        .skip(1)
        .filter_map(|s| s.split_once('\''))
        .map(|(spec, _)| spec.to_owned())
        .collect()
}

#[tokio::test]
async fn index_is_served_with_a_strict_policy_and_no_caching() {
    let app = TestApp::spawn().await;
    let res = app.get("/", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert!(header(&res, "etag").starts_with('"'));
    assert_locked_down(&res, "/");
    let html = res.text().await.expect("body");
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..40]);
    // No inline script or style: the policy would block them.
    assert!(!html.contains("<script>") && !html.contains("<style"));
    assert!(!html.contains(" style=\"") && !html.contains(" onclick="));
}

#[tokio::test]
async fn every_asset_the_page_references_exists_with_its_type() {
    let app = TestApp::spawn().await;
    let html = app.get("/", None).await.text().await.expect("body");
    let mut refs: Vec<String> = attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
        .filter(|u| u.starts_with('/'))
        .collect();
    assert!(refs.iter().any(|r| r == "/assets/app.js"), "{refs:?}");
    assert!(refs.iter().any(|r| r == "/assets/app.css"), "{refs:?}");
    // Follow the module graph from the entry point.
    let mut seen = BTreeSet::new();
    while let Some(path) = refs.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let res = app.get(&path, None).await;
        assert_eq!(res.status(), 200, "{path} is referenced but not served");
        let ctype = header(&res, "content-type").to_owned();
        assert_locked_down(&res, &path);
        let body = res.text().await.expect("body");
        if path.ends_with(".js") {
            assert_eq!(ctype, "text/javascript; charset=utf-8", "{path}");
            for spec in module_imports(&body) {
                let spec = spec.strip_prefix("./").unwrap_or(&spec);
                refs.push(format!("/assets/{spec}"));
            }
            // Data reaches the DOM as text only.
            assert!(
                !body.contains("innerHTML") && !body.contains("insertAdjacentHTML"),
                "{path}"
            );
        } else if path.ends_with(".css") {
            assert_eq!(ctype, "text/css; charset=utf-8", "{path}");
        }
    }
    for module in [
        "/assets/api.js",
        "/assets/jobpulse-client.js",
        "/assets/workbox.js",
        "/assets/player.js",
    ] {
        assert!(seen.contains(module), "{module} not reached from app.js");
    }
    // The HLS fallback the player loads on demand.
    let hls = app.get("/assets/vendor/hls.light.min.js", None).await;
    assert_eq!(hls.status(), 200);
    assert_eq!(
        header(&hls, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let license = app.get("/assets/vendor/LICENSE.hls.js", None).await;
    assert!(
        license
            .text()
            .await
            .expect("body")
            .contains("Apache License")
    );
}

#[tokio::test]
async fn assets_revalidate_with_their_content_hash() {
    let app = TestApp::spawn().await;
    let first = app.get("/assets/app.js", None).await;
    let tag = first.headers().get("etag").cloned().expect("etag");
    assert_eq!(header(&first, "cache-control"), "no-cache");
    let again = app
        .client
        .get(format!("{}/assets/app.js", app.base))
        .header("If-None-Match", tag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers().get("etag"), Some(&tag));
    assert!(again.bytes().await.expect("body").is_empty());
    // Another file has another tag.
    let css = app.get("/assets/app.css", None).await;
    assert_ne!(css.headers().get("etag"), Some(&tag));
    // A stale tag gets the file.
    let stale = app
        .client
        .get(format!("{}/assets/app.js", app.base))
        .header("If-None-Match", "\"0000000000000000-0\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), 200);
}

#[tokio::test]
async fn unknown_assets_are_a_json_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/src/lib.rs",
        "/assets/vendor/",
        "/assets/vendor/hls.light.min.js.map",
        "/index.html.bak",
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(header(&res, "content-type"), "application/json", "{path}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn the_page_needs_no_token_but_the_api_still_does() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/", None).await.status(), 200);
    assert_eq!(
        app.get("/api/v1/media/videos/1/progress/", None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn every_file_in_the_assets_folder_is_compiled_in() {
    let app = TestApp::spawn().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut dirs = vec![root.clone()];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("assets folder readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under assets")
                .to_string_lossy()
                .replace('\\', "/");
            let url = if rel == "index.html" {
                "/".to_owned()
            } else {
                format!("/assets/{rel}")
            };
            let res = app.get(&url, None).await;
            assert_eq!(res.status(), 200, "{rel} is in assets/ but not served");
            let served = res.bytes().await.expect("body");
            let on_disk = std::fs::read(&path).expect("file readable");
            assert!(
                served == on_disk,
                "{rel}: served bytes differ from the file"
            );
            files += 1;
        }
    }
    assert!(files >= 10, "only {files} files found");
}
