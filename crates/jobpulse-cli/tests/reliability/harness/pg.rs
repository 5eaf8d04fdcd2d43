//! A PostgreSQL server of the test's own — `initdb` into a temp dir, `pg_ctl start` on a free
//! port — that a scenario may stop and start for real (the shared server is never touched).
//!
//! PostgreSQL refuses to run as root; as root the server runs as the `postgres` user
//! (`runuser`), which owns its directory. Stopped (`-m immediate`) when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

/// An own PostgreSQL server. See the module docs.
#[derive(Debug)]
pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`: on the PATH, else Debian's
/// `/usr/lib/postgresql/<newest>/bin`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    }) {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no initdb on the PATH and no /usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL server binaries (initdb) found")
}

impl OwnPostgres {
    /// `initdb` under `root` and start the server on a free loopback port.
    pub async fn start(root: &Path) -> anyhow::Result<OwnPostgres> {
        let bin = bin_dir()?;
        let as_postgres = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")?.uid() == 0
        };
        let dir = root.join("pg");
        std::fs::create_dir_all(&dir)?;
        if as_postgres {
            // The test's temp dir is root's (0700): let the server's user through to its own.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
            let st = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()?;
            anyhow::ensure!(
                st.success(),
                "running as root needs a `postgres` user to run PostgreSQL as (chown failed)"
            );
        }
        let pg = OwnPostgres {
            port: super::free_port(),
            data: dir.join("data"),
            bin,
            dir,
            as_postgres,
        };
        let data = pg.data.to_string_lossy().into_owned();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .await?;
        pg.start_server().await?;
        Ok(pg)
    }

    /// A URL to `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl stop -m <mode>` (`fast`: sessions are ended and the server shuts down cleanly;
    /// `immediate`: it quits at once and recovers from its WAL at the next start). Returns how
    /// long the stop took.
    pub async fn stop(&self, mode: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let data = self.data.to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", mode, "-w", "-t", "60", "stop"],
        )
        .await?;
        Ok(t.elapsed())
    }

    /// `pg_ctl start` on the same port and data; returns once it accepts connections.
    pub async fn start_server(&self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let data = self.data.to_string_lossy().into_owned();
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )
        .await?;
        Ok(t.elapsed())
    }

    /// The server's own log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            tokio::process::Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", exe.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{tool} {args:?} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(20)
        );
        Ok(())
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data.to_string_lossy().into_owned();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        } else {
            std::process::Command::new(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
    }
}
