//! Starting `jobpulse up` in a temp data dir on a free port, and stopping it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

pub const BIN: &str = env!("CARGO_BIN_EXE_jobpulse");

/// A command of our binary with a clean environment (no DATABASE_URL, REDIS_URL or
/// JOBPULSE_* from the caller leaks in).
pub fn jobpulse() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("JOBPULSE_") || k == "DATABASE_URL" || k == "REDIS_URL" {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `jobpulse up`.
pub struct Up {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub stderr: PathBuf,
    pub http: reqwest::Client,
}

impl Up {
    /// Starts `jobpulse up` on a free port in `data_dir` and waits for its token line.
    pub fn start(data_dir: &Path) -> anyhow::Result<Up> {
        Self::start_with(data_dir, &[], &[])
    }

    /// [`Up::start`] with more arguments and environment variables.
    pub fn start_with(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Up> {
        let port = free_port()?;
        let stderr = data_dir.with_extension("stderr.log");
        let err_file = std::fs::File::create(&stderr)?;
        let mut child = jobpulse()
            .args(["up", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .context("spawning jobpulse up")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = line.split("export JOBPULSE_TOKEN=").nth(1) {
                    let _ = tx.send(t.trim().to_owned());
                }
            }
        });
        let token = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(t) => t,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!(
                    "jobpulse up printed no token; its stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        Ok(Up {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token,
            stderr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A generated clip (cached per process).
pub async fn clip(dir: &Path, seconds: f64, width: u32, height: u32) -> anyhow::Result<PathBuf> {
    let tc = jobpulse_media::Toolchain::detect().context("ffmpeg (scripts/test installs it)")?;
    let path = dir.join(format!("clip-{seconds}-{width}x{height}.mp4"));
    if !path.exists() {
        jobpulse_media::testing::generate_clip(
            &tc,
            &path,
            &jobpulse_media::testing::ClipSpec::new(seconds, width, height).with_audio(),
        )
        .await?;
    }
    Ok(path)
}

/// A small students workbook: 20 valid, 2 duplicates, 2 invalid, 1 blank row.
pub fn workbook(dir: &Path) -> anyhow::Result<PathBuf> {
    use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};
    let mut spec = WorkbookSpec::valid_rows(20);
    spec.duplicates = 2;
    spec.blank = 1;
    spec.bad_parent_phone = 1;
    spec.missing_name = 1;
    let path = dir.join("students.xlsx");
    std::fs::write(&path, generate_students_workbook(&spec)?.bytes)?;
    Ok(path)
}
