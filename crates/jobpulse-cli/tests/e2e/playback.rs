//! Playback from another origin, as the academy's video page does it (tests/browser/
//! playback.spec.mjs in headless Chromium: hls.js, a plain `<video>`, byte ranges), on file
//! storage (`jobpulse up`) and on S3 (`jobpulse serve` + `jobpulse worker video|ai`, each with
//! its own data dir: no shared filesystem, everything through the bucket).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::harness::{Up, clip, free_port, jobpulse, workbook};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Runs `tests/browser/playback.spec.mjs` with `env`; fails with its output (and `logs`).
async fn playback_spec(
    env: Vec<(&'static str, String)>,
    logs: impl Fn() -> String,
) -> anyhow::Result<String> {
    let dir = browser_dir();
    anyhow::ensure!(
        dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: apt-get install chromium (scripts/test does)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("playback.spec.mjs")
            .current_dir(dir)
            .envs(env)
            .env("CHROMIUM_PATH", &chromium)
            .output()
    })
    .await??;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains(" 0 failed"),
        "playback.spec.mjs failed:\n{all}\n--- jobpulse ---\n{}",
        logs()
    );
    Ok(all)
}

/// The same link with its signature altered (first character changed).
fn forged(url: &str) -> String {
    let parts: Vec<&str> = url.splitn(8, '/').collect();
    let sig = parts[7].split('/').next().unwrap_or("");
    let first = if sig.starts_with('A') { "B" } else { "A" };
    url.replacen(&format!("/{sig}/"), &format!("/{first}{}/", &sig[1..]), 1)
}

async fn json(res: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let s = res.status().as_u16();
    Ok((s, res.json().await?))
}

/// Polls the progress URL until READY (fails on FAILED or after `within`).
async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: i64,
    within: Duration,
    logs: impl Fn() -> String,
) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    loop {
        let (_, v) = json(
            http.get(format!("{base}/api/v1/media/videos/{id}/progress/"))
                .bearer_auth(token)
                .send()
                .await?,
        )
        .await?;
        match v["status"].as_str() {
            Some("READY") => return Ok(()),
            Some("FAILED") => anyhow::bail!("the video failed: {v}\n{}", logs()),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < until, "not READY in time: {v}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    clip: &Path,
) -> anyhow::Result<i64> {
    let form = Form::new().part(
        "file",
        Part::bytes(std::fs::read(clip)?).file_name("lesson.mp4"),
    );
    let (s, created) = json(
        http.post(format!("{base}/api/v1/media/videos/"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(s == 201, "upload answered {s}: {created}");
    created["id"].as_i64().context("id")
}

/// `(hls_url, thumbnail_url)` from the video page's route.
async fn stats_links(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: i64,
) -> anyhow::Result<(String, String)> {
    let (s, stats) = json(
        http.get(format!("{base}/api/v1/media/videos/{id}/stats/"))
            .bearer_auth(token)
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(s == 200, "stats answered {s}: {stats}");
    assert_eq!(stats["video"]["status"], "READY", "{stats}");
    assert_eq!(stats["students"], serde_json::json!([]));
    let hls = stats["video"]["hls_url"]
        .as_str()
        .context("hls_url")?
        .to_owned();
    let thumb = stats["video"]["thumbnail_url"]
        .as_str()
        .context("thumbnail_url")?
        .to_owned();
    Ok((hls, thumb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_plays_from_another_origin_on_file_storage() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let up = Up::start(&tmp.path().join("data"))?;
    let clip = clip(tmp.path(), 6.0, 640, 360).await?;
    let id = upload(&up.http, &up.base, &up.token, &clip).await?;
    wait_ready(
        &up.http,
        &up.base,
        &up.token,
        id,
        Duration::from_secs(180),
        || up.logs(),
    )
    .await?;
    let (hls, thumb) = stats_links(&up.http, &up.base, &up.token, id).await?;
    assert!(
        hls.starts_with(&format!("{}/media/s/", up.base)),
        "absolute: {hls}"
    );
    assert!(
        thumb.starts_with(&format!("{}/media/s/", up.base)),
        "absolute: {thumb}"
    );
    let out = playback_spec(
        vec![
            ("JOBPULSE_HLS_URL", hls.clone()),
            ("JOBPULSE_THUMB_URL", thumb),
            ("JOBPULSE_SEGMENT_ORIGIN", up.base.clone()),
            ("JOBPULSE_FORGED_URL", forged(&hls)),
        ],
        || up.logs(),
    )
    .await?;
    eprintln!("{out}");
    Ok(())
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("spawning jobpulse")?;
        Ok(Proc { child, log })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_workers_share_only_the_bucket_and_hls_plays_from_s3() -> anyhow::Result<()> {
    use jobpulse_media::testing::s3;

    let tmp = tempfile::tempdir()?;
    let tdb = jobpulse_testkit::TestDatabase::new(jobpulse_testkit::Backend::Postgres).await?;
    let seed = tdb.db.create_tenant("acme", "Acme").await?;
    let prefix = jobpulse_testkit::unique_prefix();
    let bucket = s3::fresh_bucket().await;
    let opts = s3::options();
    let endpoint = opts.endpoint.clone().context("endpoint")?;
    let storage = jobpulse_media::MediaStorage::open(
        &jobpulse_media::StorageUrl::S3 {
            bucket: bucket.clone(),
            prefix: "media".into(),
        },
        &opts,
    )?;
    // The player on origin A fetches segments from the bucket: the bucket's CORS rule allows it.
    storage
        .put_bucket_cors(
            "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>\
             <AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>\
             <AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader>\
             <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds>\
             </CORSRule></CORSConfiguration>",
        )
        .await?;
    let secret = "playback-e2e-secret-0123456789-abcdefghijklmnop";
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let env = |cmd: &mut Command, data: &Path| {
        cmd.env("DATABASE_URL", &tdb.url)
            .env("REDIS_URL", jobpulse_testkit::redis_url())
            .env("JOBPULSE_KEY_PREFIX", &prefix)
            .env("JOBPULSE_JWT_SECRET", secret)
            .env("JOBPULSE_STORAGE_URL", format!("s3://{bucket}/media"))
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", opts.region.clone().unwrap_or_default())
            .env(
                "AWS_ACCESS_KEY_ID",
                opts.access_key_id.clone().unwrap_or_default(),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                opts.secret_access_key.clone().unwrap_or_default(),
            )
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false")
            .env("RUST_LOG", "warn,jobpulse_worker=info")
            .arg("--data-dir")
            .arg(data);
    };
    let (api_dir, video_dir, ai_dir) = (
        tmp.path().join("api"),
        tmp.path().join("video-worker"),
        tmp.path().join("ai-worker"),
    );
    let mut serve = jobpulse();
    serve.args(["serve", "--port", &port.to_string()]);
    env(&mut serve, &api_dir);
    let serve = Proc::spawn(serve, tmp.path().join("serve.log"))?;
    let mut video = jobpulse();
    video.args(["worker", "video"]);
    env(&mut video, &video_dir);
    let video = Proc::spawn(video, tmp.path().join("video.log"))?;
    let mut ai = jobpulse();
    ai.args(["worker", "ai"]);
    env(&mut ai, &ai_dir);
    let ai = Proc::spawn(ai, tmp.path().join("ai.log"))?;
    let logs = || {
        format!(
            "--- serve ---\n{}\n--- worker video ---\n{}\n--- worker ai ---\n{}",
            serve.logs(),
            video.logs(),
            ai.logs()
        )
    };

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let until = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < until, "serve not ready\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verifier = jobpulse_api::auth::Verifier::new(jobpulse_api::auth::AuthConfig::hs256(
        secret.as_bytes(),
    )?);
    let token = verifier
        .mint(&jobpulse_api::auth::TokenSpec {
            tenant: seed.tenant_id,
            tenant_code: Some("acme".into()),
            user_id: Some("1".into()),
            role: Some("owner".into()),
            ttl_secs: 3600,
            worker: false,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // A video: uploaded to the API, transcoded by the worker from the bucket, READY.
    let clip = clip(tmp.path(), 6.0, 640, 360).await?;
    let id = upload(&http, &base, &token, &clip).await?;
    wait_ready(&http, &base, &token, id, Duration::from_secs(180), &logs).await?;
    let t = seed.tenant_id;
    let vid = jobpulse_domain::VideoId::new(id)?;
    let master = jobpulse_media::keys::hls_master_key(t, vid);
    assert!(
        storage.head(&master).await.is_ok(),
        "the HLS output is in the bucket"
    );
    assert!(
        storage
            .head(&jobpulse_media::keys::thumbnail_key(t, vid))
            .await
            .is_ok(),
        "the thumbnail is in the bucket"
    );

    // An import through the AI worker: input and result through the bucket too.
    let wb = workbook(tmp.path())?;
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", seed.lecture_id.to_string())
        .part(
            "file",
            Part::bytes(std::fs::read(&wb)?).file_name("students.xlsx"),
        );
    let (s, job) = json(
        http.post(format!("{base}/api/v1/jobs/"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(s, 201, "{job}");
    let jid = job["job_id"].as_str().context("job id")?.to_owned();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = json(
            http.get(format!("{base}/api/v1/jobs/{jid}/progress/"))
                .bearer_auth(&token)
                .send()
                .await?,
        )
        .await?;
        match v["status"].as_str() {
            Some("DONE") => {
                assert_eq!(v["result"]["created"], 20, "{v}");
                break;
            }
            Some("PENDING" | "RUNNING" | "RETRYING") => {}
            other => anyhow::bail!("import ended {other:?}: {v}\n{}", logs()),
        }
        anyhow::ensure!(
            Instant::now() < until,
            "import not DONE in time\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Nothing of the media landed on a local disk: no process has a media directory with
    // files, and the video worker's work directory is empty again.
    for dir in [&api_dir, &video_dir, &ai_dir] {
        let media = files_under(&dir.join("media"));
        assert!(
            media.is_empty(),
            "{}: files in media/: {media:?}",
            dir.display()
        );
    }
    let work = files_under(&video_dir.join("work"));
    assert!(work.is_empty(), "the worker left files behind: {work:?}");

    // Playback: playlists through jobpulse, segments presigned from the bucket.
    let (hls, thumb) = stats_links(&http, &base, &token, id).await?;
    assert!(
        hls.starts_with(&format!("{base}/media/s/")),
        "absolute: {hls}"
    );
    let origin = endpoint.trim_end_matches('/').to_owned();
    let out = playback_spec(
        vec![
            ("JOBPULSE_HLS_URL", hls.clone()),
            ("JOBPULSE_THUMB_URL", thumb),
            ("JOBPULSE_SEGMENT_ORIGIN", origin),
            ("JOBPULSE_FORGED_URL", forged(&hls)),
        ],
        &logs,
    )
    .await?;
    eprintln!("{out}");
    Ok(())
}
