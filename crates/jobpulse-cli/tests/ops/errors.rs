//! Errors that used to mislead a new operator (issue 17, item 7), each as the operator meets it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};

use crate::harness::{free_port, jobpulse};
use crate::procs::Proc;

fn run(cmd: &mut std::process::Command) -> anyhow::Result<(bool, String)> {
    let out = cmd.stdin(Stdio::null()).output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// `up` without ffmpeg refuses video uploads with a 503 that says why and reports it in
/// `/readyz`; a second `up` on the same data dir is refused; every URL `up` prints answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_ffmpeg_and_a_second_up_say_what_is_wrong() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let up = Proc::up(
        &data,
        Stdio::null(),
        &[],
        &[
            ("JOBPULSE_FFMPEG", "/nonexistent/ffmpeg"),
            ("JOBPULSE_FFPROBE", "/nonexistent/ffprobe"),
        ],
    )?;

    let form = Form::new().part("file", Part::bytes(vec![0u8; 1024]).file_name("a.mp4"));
    let res = up
        .http
        .post(format!("{}/api/v1/media/videos/", up.base))
        .bearer_auth(&up.token)
        .multipart(form)
        .send()
        .await?;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ffmpeg"), "{body}");
    let res = up.get("/readyz").send().await?;
    assert_eq!(res.status(), 503);
    let ready: serde_json::Value = res.json().await?;
    let transcoder = ready["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "transcoder")
        .cloned()
        .unwrap_or_default();
    assert_eq!(transcoder["ok"], false, "{ready}");
    assert!(
        transcoder["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ffmpeg"),
        "{ready}"
    );
    // Reads still work.
    let res = up.get("/api/v1/media/videos/1/progress/").send().await?;
    assert_eq!(res.status(), 200);

    // Every URL in the banner answers (the dashboard link's `#token=…` is not sent).
    let mut urls = 0;
    for line in &up.banner {
        for word in line.split_whitespace() {
            if let Some(url) = word.strip_prefix("http://").map(|_| word) {
                let url = url.split('#').next().unwrap_or(url);
                let res = up.http.get(url).bearer_auth(&up.token).send().await?;
                assert!(
                    res.status().is_success(),
                    "{url} (from {line:?}) answers {}",
                    res.status()
                );
                urls += 1;
            }
        }
    }
    assert!(urls >= 3, "the banner printed {urls} URLs: {:?}", up.banner);

    // A second `up` on the same data dir is refused, quickly and clearly.
    let port = free_port()?;
    let started = Instant::now();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run(jobpulse()
            .args(["up", "--port", &port.to_string(), "--data-dir"])
            .arg(&data))
    })
    .await??;
    assert!(!ok, "a second up started: {out}");
    assert!(
        out.contains("another `jobpulse up` is running on the data dir"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}

#[test]
fn a_data_dir_that_is_a_file_is_called_that() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("data");
    std::fs::write(&file, "not a directory")?;
    let (ok, out) = run(jobpulse()
        .args(["up", "--port", &free_port()?.to_string(), "--data-dir"])
        .arg(&file))?;
    assert!(!ok);
    assert!(out.contains("exists but is not a directory"), "{out}");
    assert!(!out.contains("File exists"), "{out}");
    Ok(())
}

/// A secret file that exists but cannot be read says why, not "not found". (As root, file
/// permissions do not stop a read; a directory in its place does.)
#[test]
fn an_unreadable_jwt_secret_says_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("jwt-secret"))?;
    let (ok, out) = run(jobpulse()
        .args(["token", "--tenant-id", "1", "--data-dir"])
        .arg(dir.path()))?;
    assert!(!ok);
    assert!(out.contains("cannot read the JWT secret"), "{out}");
    assert!(out.to_lowercase().contains("directory"), "{out}");
    assert!(!out.contains("not found"), "{out}");
    Ok(())
}

#[test]
fn token_refuses_an_unknown_role() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = "s".repeat(40);
    let (ok, out) = run(jobpulse()
        .args([
            "token",
            "--tenant-id",
            "1",
            "--role",
            "superuser",
            "--jwt-secret",
            &secret,
        ])
        .current_dir(dir.path()))?;
    assert!(!ok, "minted a token for an unknown role: {out}");
    assert!(
        out.contains("superuser") && out.contains("possible values"),
        "{out}"
    );
    let (ok, out) = run(jobpulse()
        .args([
            "token",
            "--tenant-id",
            "1",
            "--role",
            "teacher",
            "--jwt-secret",
            &secret,
        ])
        .current_dir(dir.path()))?;
    assert!(ok, "{out}");
    Ok(())
}

/// PostgreSQL on a closed port: the cause (connection refused, host, port) once, quickly.
#[test]
fn a_closed_database_port_is_reported_once_and_quickly() -> anyhow::Result<()> {
    let port = free_port()?; // bound and released: nothing listens there
    let url = format!("postgres://postgres@127.0.0.1:{port}/jobpulse");
    let started = Instant::now();
    let (ok, out) = run(jobpulse().args(["migrate", "--database-url", &url]))?;
    let took = started.elapsed();
    assert!(!ok);
    assert!(took < Duration::from_secs(8), "took {took:?}: {out}");
    assert!(out.to_lowercase().contains("connection refused"), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(!out.contains("pool timed out"), "{out}");
    assert_eq!(out.matches("onnection refused").count(), 1, "{out}");
    Ok(())
}

/// `migrate` on a database it cannot write says so instead of reporting success.
#[test]
fn migrate_on_a_read_only_database_fails() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("jobpulse.db");
    let rw = format!("sqlite://{}", file.display());
    let (ok, out) = run(jobpulse().args(["migrate", "--database-url", &rw]))?;
    assert!(ok, "{out}");
    assert!(out.contains("up to date"), "{out}");
    let ro = format!("sqlite://{}?mode=ro", file.display());
    let (ok, out) = run(jobpulse().args(["migrate", "--database-url", &ro]))?;
    assert!(
        !ok,
        "migrate reported success on a read-only database: {out}"
    );
    assert!(
        out.contains("read-only") || out.contains("readonly"),
        "{out}"
    );
    Ok(())
}

/// A database error is printed once, in the database's words, without the server's source line.
#[test]
fn a_database_error_is_printed_once() -> anyhow::Result<()> {
    let name = format!("jobpulse_missing_{:x}", rand::random::<u32>());
    let url = jobpulse_testkit::with_database(&jobpulse_testkit::admin_url(), &name);
    let (ok, out) = run(jobpulse().args(["migrate", "--database-url", &url]))?;
    assert!(!ok);
    assert_eq!(out.matches("does not exist").count(), 1, "{out}");
    assert!(
        out.contains(&format!("database \"{name}\" does not exist")),
        "{out}"
    );
    assert!(!out.contains("at line"), "{out}");
    Ok(())
}
