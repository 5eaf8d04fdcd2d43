//! Issue 15 finding 11 against `jobpulse up`: what it keeps on disk is its user's alone — the
//! data dir and every directory in it `0700`, every file `0600` (the SQLite database and its
//! WAL, media, the spool), an older, world-readable data dir tightened at start with a log line —
//! and an import's uploaded spreadsheet is deleted once the import ended.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::harness::{Up, clip, workbook};

/// Every path under `root` (itself included) with its mode bits.
fn modes(root: &Path) -> anyhow::Result<Vec<(PathBuf, bool, u32)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        out.push((p.clone(), m.is_dir(), m.permissions().mode() & 0o7777));
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(out)
}

async fn status_of(up: &Up, path: &str) -> anyhow::Result<Value> {
    Ok(up.get(path).send().await?.json().await?)
}

/// Polls `path` until its `status` is `want`; fails on any other terminal status.
async fn wait_status(up: &Up, path: &str, want: &str) -> anyhow::Result<Value> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status_of(up, path).await?;
        match v["status"].as_str() {
            Some(s) if s == want => return Ok(v),
            Some("FAILED" | "REJECTED_BAD_INPUT") => {
                anyhow::bail!("{path} ended {v}\n{}", up.logs())
            }
            _ => {}
        }
        anyhow::ensure!(Instant::now() < until, "{path} not {want} in time: {v}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_keeps_its_data_private_and_drops_ended_inputs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // What an older build left: a world-readable data dir and database file.
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(data.join("jobpulse.db"), b"")?;
    std::fs::set_permissions(
        data.join("jobpulse.db"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    let up = Up::start_with(&data, &[], &[("RUST_LOG", "warn,jobpulse_worker=info")])?;

    // A video (media: the source and its HLS) and an import (its spreadsheet, then deleted).
    let clip = clip(dir.path(), 2.0, 320, 240).await?;
    let form = Form::new()
        .part(
            "file",
            Part::bytes(std::fs::read(&clip)?).file_name("a.mp4"),
        )
        .text("title", "A")
        .text("session_id", "1");
    let v: Value = up
        .post("/api/v1/media/videos/")
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let video = v["id"].as_i64().ok_or_else(|| anyhow::anyhow!("{v}"))?;
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", "1")
        .part(
            "file",
            Part::bytes(std::fs::read(workbook(dir.path())?)?).file_name("students.xlsx"),
        );
    let j: Value = up
        .post("/api/v1/jobs/")
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let job = j["job_id"].as_str().ok_or_else(|| anyhow::anyhow!("{j}"))?;
    wait_status(&up, &format!("/api/v1/jobs/{job}/progress/"), "DONE").await?;
    let done = Instant::now();
    wait_status(
        &up,
        &format!("/api/v1/media/videos/{video}/progress/"),
        "READY",
    )
    .await?;

    // The spreadsheet is gone from media once the import ended.
    let jobs_media = data.join("media/tenants/1/jobs");
    let inputs = |p: &Path| -> anyhow::Result<Vec<PathBuf>> {
        Ok(modes(p)?
            .into_iter()
            .filter(|(path, is_dir, _)| !is_dir && path.to_string_lossy().contains("input."))
            .map(|(path, ..)| path)
            .collect())
    };
    let until = Instant::now() + Duration::from_secs(30);
    while jobs_media.exists() && !inputs(&jobs_media)?.is_empty() {
        anyhow::ensure!(
            Instant::now() < until,
            "the import's input is still in media 30 s after it ended: {:?}",
            inputs(&jobs_media)?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "input deleted {:?} after the import was seen DONE",
        done.elapsed()
    );

    let all = modes(&data)?;
    let open: Vec<String> = all
        .iter()
        .filter(|(_, _, mode)| mode & 0o077 != 0)
        .map(|(p, d, m)| format!("{} {} {m:o}", if *d { "dir " } else { "file" }, p.display()))
        .collect();
    assert!(open.is_empty(), "readable by others:\n{}", open.join("\n"));
    let names: Vec<String> = all
        .iter()
        .map(|(p, ..)| p.strip_prefix(&data).unwrap_or(p).display().to_string())
        .collect();
    for expected in [
        "jobpulse.db",
        "jobpulse.db-wal",
        "jobpulse.db-shm",
        "jwt-secret",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let media_files = all
        .iter()
        .filter(|(p, d, _)| !d && p.starts_with(data.join("media")))
        .count();
    assert!(media_files >= 3, "a source, playlists, segments: {names:?}");
    eprintln!(
        "{} paths under the data dir, {media_files} media files, none readable by others",
        all.len()
    );
    let logs = up.logs();
    assert!(
        logs.contains("data dir was readable by other users"),
        "{logs}"
    );
    assert!(
        logs.contains("database file was readable by other users"),
        "{logs}"
    );
    assert!(logs.contains("deleted the input of an ended job"), "{logs}");
    Ok(())
}
