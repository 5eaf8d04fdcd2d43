//! The dashboard in headless Chromium against `jobpulse up` (tests/browser/dashboard.spec.mjs):
//! sign in by link, upload a clip, watch the bar through the steps to READY, screenshot, play
//! the first second, import a workbook and read its summary.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Up, clip, workbook};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uploads_watches_plays_and_imports_in_chromium() -> anyhow::Result<()> {
    let dir = browser_dir();
    anyhow::ensure!(
        dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: apt-get install chromium (scripts/test does)"
    );
    let tmp = tempfile::tempdir()?;
    let up = Up::start(&tmp.path().join("data"))?;
    // Long enough at 720p that the page shows the encoding step with an ETA.
    let clip = clip(tmp.path(), 20.0, 1280, 720).await?;
    let wb = workbook(tmp.path())?;
    let shot = std::env::var("DASHBOARD_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("dashboard.png"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("dashboard.spec.mjs")
            .current_dir(browser_dir())
            .env("JOBPULSE_URL", &up.base)
            .env("JOBPULSE_TOKEN", &up.token)
            .env("JOBPULSE_CLIP", &clip)
            .env("JOBPULSE_WORKBOOK", &wb)
            .env("DASHBOARD_SCREENSHOT", &shot)
            .env("CHROMIUM_PATH", &chromium)
            .output()
            .map(|o| (o, up))
    })
    .await??;
    let (out, up) = out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dashboard.spec.mjs failed:\n{stdout}\n{stderr}\n--- jobpulse up ---\n{}",
        up.logs()
    );
    let all = format!("{stdout}{stderr}");
    assert!(all.contains(" 0 failed"), "{all}");
    assert!(all.contains("READY"), "{all}");
    Ok(())
}
