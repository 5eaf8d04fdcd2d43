//! The CLI client and the operations commands against a running `jobpulse up`.

use std::time::Duration;

use crate::harness::{Up, clip, jobpulse, workbook};

fn run(cmd: &mut std::process::Command) -> anyhow::Result<(bool, String, String)> {
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_watch_exit_codes_follow_the_outcome() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Up::start(&dir.path().join("data"))?;
    let clip = clip(dir.path(), 4.0, 320, 240).await?;
    // Upload and watch to READY: exit 0, JSON lines ending at READY.
    let clip_s = clip.to_string_lossy().into_owned();
    let (base, token) = (up.base.clone(), up.token.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let mut c = jobpulse();
        c.args(["submit", "video", &clip_s, "--watch", "--json"])
            .env("JOBPULSE_URL", &base)
            .env("JOBPULSE_TOKEN", &token);
        run(&mut c)
    })
    .await??;
    assert!(ok, "submit --watch failed: {err}");
    let last: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("json line");
    assert_eq!(last["status"], "READY", "{out}");
    // The last line gives the signed playlist URL, not a storage key.
    assert!(
        last["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http") && u.contains(".m3u8")),
        "{out}"
    );
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().unwrap_or_default()).expect("json line");
    assert!(first["video_id"].is_i64(), "{out}");

    // The excel import with --watch: exit 0, DONE.
    let wb = workbook(dir.path())?.to_string_lossy().into_owned();
    let (base, token) = (up.base.clone(), up.token.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let mut c = jobpulse();
        c.args([
            "submit",
            "excel",
            &wb,
            "--lecture",
            "1",
            "--watch",
            "--json",
        ])
        .env("JOBPULSE_URL", &base)
        .env("JOBPULSE_TOKEN", &token);
        run(&mut c)
    })
    .await??;
    assert!(ok, "{err}");
    assert!(out.contains("\"DONE\""), "{out}");

    // A file that is not a video: refused at upload, non-zero exit with the reason.
    let bad = dir.path().join("notes.mp4");
    std::fs::write(&bad, "not a video")?;
    let bad_s = bad.to_string_lossy().into_owned();
    let (base, token) = (up.base.clone(), up.token.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        let mut c = jobpulse();
        c.args(["submit", "video", &bad_s, "--watch"])
            .env("JOBPULSE_URL", &base)
            .env("JOBPULSE_TOKEN", &token);
        run(&mut c)
    })
    .await??;
    assert!(!ok);
    assert!(err.contains("422"), "{err}");

    // Watching a job that ends badly exits non-zero with its message.
    let res = up
        .post("/api/v1/jobs/")
        .json(&serde_json::json!({"job_type": "time_travel"}))
        .send()
        .await?;
    let rej: serde_json::Value = res.json().await?;
    let id = rej["job_id"].as_str().expect("id").to_owned();
    let (base, token) = (up.base.clone(), up.token.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        let mut c = jobpulse();
        c.args(["watch", "job", &id])
            .env("JOBPULSE_URL", &base)
            .env("JOBPULSE_TOKEN", &token);
        run(&mut c)
    })
    .await??;
    assert!(!ok);
    assert!(
        err.contains("REJECTED_BAD_INPUT") && err.contains("time_travel"),
        "{err}"
    );
    // No token: a clear error, not a crash.
    let (ok, _, err) = run(jobpulse().args(["watch", "video", "1"]))?;
    assert!(!ok && err.contains("no token"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_tenant_commands_agree_with_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let up = Up::start(&data)?;
    // `token --data-dir` uses the secret `up` generated: only the token on stdout.
    let (ok, out, err) = run(jobpulse()
        .args([
            "token",
            "--tenant-id",
            "1",
            "--role",
            "student",
            "--ttl",
            "10m",
            "--data-dir",
        ])
        .arg(&data))?;
    assert!(ok, "{err}");
    let token = out.trim();
    assert_eq!(out.lines().count(), 1);
    let res = up
        .http
        .get(format!("{}/api/v1/media/videos/1/progress/", up.base))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    // `tenant add` prints its ids as JSON.
    let (ok, out, err) = run(jobpulse()
        .args([
            "tenant",
            "add",
            "--code",
            "acme",
            "--name",
            "Acme Academy",
            "--data-dir",
        ])
        .arg(&data))?;
    assert!(ok, "{err}");
    let ids: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(ids["tenant_id"], 2);
    assert!(ids["lecture_id"].is_i64() && ids["session_id"].is_i64());
    // Clear errors for bad input; nothing changes.
    let (ok, _, err) = run(jobpulse()
        .args([
            "tenant",
            "add",
            "--code",
            "acme",
            "--name",
            "Again",
            "--data-dir",
        ])
        .arg(&data))?;
    assert!(!ok && err.contains("taken"), "{err}");
    let (ok, _, err) = run(jobpulse()
        .args(["token", "--tenant-id", "0", "--data-dir"])
        .arg(&data))?;
    assert!(!ok && err.contains("tenant"), "{err}");
    let (ok, _, err) = run(jobpulse()
        .args(["token", "--tenant-id", "1", "--data-dir"])
        .arg(dir.path().join("nowhere")))?;
    assert!(!ok && err.contains("no JWT secret"), "{err}");
    let (ok, _, err) = run(jobpulse().args(["serve"]))?;
    assert!(!ok && err.contains("REDIS_URL"), "{err}");
    let _ = Duration::ZERO;
    Ok(())
}
