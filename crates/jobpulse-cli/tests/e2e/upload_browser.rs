//! The front end's upload flows from another origin in headless Chromium
//! (tests/browser/upload.spec.mjs) against `jobpulse up`: on file storage (jobpulse's own signed
//! upload URLs) and on the S3 test server (presigned URLs straight to the bucket, whose CORS rule
//! allows the page's origin). `--cors-origins` names only the page's origin.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Up, clip, free_port};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn ensure_browser() -> anyhow::Result<String> {
    anyhow::ensure!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: apt-get install chromium (scripts/test does)"
    );
    Ok(chromium)
}

/// Runs the spec against `up`; the page is served on `page_port`.
async fn run_spec(up: Up, page_port: u16, clip: PathBuf, storage: &str) -> anyhow::Result<()> {
    let chromium = ensure_browser()?;
    let storage = storage.to_owned();
    let (out, up) = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("upload.spec.mjs")
            .current_dir(browser_dir())
            .env("JOBPULSE_URL", &up.base)
            .env("JOBPULSE_TOKEN", &up.token)
            .env("PAGE_PORT", page_port.to_string())
            .env("JOBPULSE_CLIP", &clip)
            .env("JOBPULSE_STORAGE", &storage)
            .env("CHROMIUM_PATH", &chromium)
            .output()
            .map(|o| (o, up))
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "upload.spec.mjs failed:\n{stdout}\n{stderr}\n--- jobpulse up ---\n{}",
        up.logs()
    );
    let all = format!("{stdout}{stderr}");
    assert!(all.contains(" 6 passed, 0 failed"), "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_from_another_origin_on_file_storage() -> anyhow::Result<()> {
    ensure_browser()?;
    let tmp = tempfile::tempdir()?;
    let page_port = free_port()?;
    let origin = format!("http://localhost:{page_port}");
    let up = Up::start_with(&tmp.path().join("data"), &["--cors-origins", &origin], &[])?;
    let clip = clip(tmp.path(), 2.0, 320, 240).await?;
    run_spec(up, page_port, clip, "file").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_from_another_origin_straight_to_s3() -> anyhow::Result<()> {
    ensure_browser()?;
    let tmp = tempfile::tempdir()?;
    let page_port = free_port()?;
    let origin = format!("http://localhost:{page_port}");
    let bucket = jobpulse_media::testing::s3::fresh_bucket().await;
    let opts = jobpulse_media::testing::s3::options();
    let storage = jobpulse_media::MediaStorage::open(
        &jobpulse_media::StorageUrl::S3 {
            bucket: bucket.clone(),
            prefix: "media".into(),
        },
        &opts,
    )?;
    let endpoint = opts.endpoint.clone().unwrap_or_default();
    let key = opts.access_key_id.clone().unwrap_or_default();
    let secret = opts.secret_access_key.clone().unwrap_or_default();
    let url = format!("s3://{bucket}/media");
    let envs = [
        ("JOBPULSE_STORAGE_URL", url.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let storage_check = || {
        crate::harness::jobpulse()
            .args(["storage", "check", "--cors-origins", &origin])
            .envs(envs)
            .output()
    };
    // No CORS rule yet: the check fails and prints the rule to set, for this origin.
    let before = storage_check()?;
    let report = String::from_utf8_lossy(&before.stdout);
    assert!(!before.status.success(), "{report}");
    assert!(report.contains("access: ok"), "{report}");
    assert!(report.contains("cors: MISSING"), "{report}");
    assert!(
        report.contains(&format!("\"{origin}\"")),
        "the rule names the origin: {report}"
    );
    storage
        .put_bucket_cors(&format!(
            "<CORSConfiguration><CORSRule><AllowedOrigin>{origin}</AllowedOrigin>\
             <AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>\
             <AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader>\
             <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds>\
             </CORSRule></CORSConfiguration>"
        ))
        .await?;
    let up = Up::start_with(
        &tmp.path().join("data"),
        &["--cors-origins", &origin],
        &envs,
    )?;
    // The bucket's CORS rule is what `jobpulse storage check` reads: it passes for this origin.
    let check = storage_check()?;
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "storage check:\n{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(report.contains("cors: ok"), "{report}");
    let clip = clip(tmp.path(), 2.0, 320, 240).await?;
    run_spec(up, page_port, clip, "s3").await
}
