//! Starting `jobpulse up` with stdout/stderr wired as each test needs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::multipart::{Form, Part};

use crate::harness::{free_port, jobpulse};

/// A running `jobpulse up` whose stderr the test wired itself.
pub struct Proc {
    pub child: Child,
    /// What `up` printed on stdout up to its token line.
    pub banner: Vec<String>,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Proc {
    /// Starts `jobpulse up` in `data_dir` on a free port with `stderr` and extra arguments and
    /// environment, and waits for the token line on stdout.
    pub fn up(
        data_dir: &Path,
        stderr: Stdio,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let port = free_port()?;
        let mut cmd = jobpulse();
        cmd.args(["up", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning jobpulse up")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = Vec::new();
            let mut token = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                banner.push(line.clone());
                if let Some(t) = line.split("export JOBPULSE_TOKEN=").nth(1) {
                    token = t.trim().to_owned();
                }
                // The banner's last line.
                if line.starts_with("Ctrl-C stops") {
                    let _ = tx.send((std::mem::take(&mut token), std::mem::take(&mut banner)));
                }
            }
        });
        let (token, banner) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(t) => t,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("jobpulse up printed no token");
            }
        };
        Ok(Proc {
            child,
            banner,
            base: format!("http://127.0.0.1:{port}"),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Uploads `clip` and polls its progress until READY (bounded); returns the video id.
    pub async fn upload_until_ready(&self, clip: &Path, within: Duration) -> anyhow::Result<i64> {
        let form = Form::new().part(
            "file",
            Part::bytes(std::fs::read(clip)?).file_name("lesson.mp4"),
        );
        let res = self
            .http
            .post(format!("{}/api/v1/media/videos/", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .context("the upload got no answer")?;
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await?;
        anyhow::ensure!(status == 201, "upload answered {status}: {body}");
        let id = body["id"].as_i64().context("id")?;
        let until = Instant::now() + within;
        loop {
            let v: serde_json::Value = self
                .get(&format!("/api/v1/media/videos/{id}/progress/"))
                .send()
                .await?
                .json()
                .await?;
            match v["status"].as_str() {
                Some("READY") => return Ok(id),
                Some("FAILED") => anyhow::bail!("the video failed: {v}"),
                _ => {}
            }
            anyhow::ensure!(Instant::now() < until, "not READY within {within:?}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM; `Some(success)` when the process exited within `within`, `None` (and SIGKILL)
    /// when it did not.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<Option<bool>> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status.success()));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
