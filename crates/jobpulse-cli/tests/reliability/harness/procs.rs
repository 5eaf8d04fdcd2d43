//! Child processes of a test: spawned with their own environment, stderr captured to a file,
//! signalled (SIGKILL, SIGSTOP/SIGCONT, SIGTERM) through `nix`, and always cleaned up.
//!
//! A [`Proc`] kills its process and every descendant (found through `/proc`, including children
//! in process groups of their own, such as ffmpeg) when dropped, and reaps it, so a failing test
//! leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running child process. See the module docs.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    reaped: bool,
    /// Descendants left running by [`Proc::kill`] (a crash leaves them), killed on drop if
    /// the test did not see to them.
    orphans: Vec<u32>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed, stdout discarded and stderr into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            reaped: false,
            orphans: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.pid()).unwrap_or(i32::MAX))
    }

    /// Sends a signal to the process itself (not its children).
    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        if self.reaped {
            anyhow::bail!("{} already exited", self.name);
        }
        kill(self.nix_pid(), sig).with_context(|| format!("{sig} to {}", self.name))
    }

    /// Pauses the process (SIGSTOP); its children keep running.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a paused process (SIGCONT).
    pub fn cont(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Kills the process (SIGKILL) — a crash: its children are left as they are — and reaps it.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        self.orphans = self.descendants();
        let _ = kill(self.nix_pid(), Signal::SIGKILL);
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` before killing it.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        if self.reaped {
            return true;
        }
        let _ = kill(self.nix_pid(), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped = true;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Whether the process still runs (a stopped process runs).
    pub fn alive(&mut self) -> bool {
        if self.reaped {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            _ => {
                self.reaped = true;
                false
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "--- {} (last {} lines) ---\n{}",
            self.name,
            n,
            lines[from..].join("\n")
        )
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Live descendants (children of children…), by walking `/proc`.
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.pid())
    }

    /// Waits until the log contains `needle`; fails with the log tail otherwise.
    pub async fn wait_for_log(&mut self, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if !self.alive() {
                anyhow::bail!(
                    "{} exited before logging {needle:?}\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if start.elapsed() > limit {
                anyhow::bail!(
                    "{} did not log {needle:?} within {limit:?}\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        for pid in std::mem::take(&mut self.orphans) {
            if is_running(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        if self.reaped {
            return;
        }
        // Children first (they may be in process groups of their own, e.g. ffmpeg), then the
        // process; a stopped process dies of SIGKILL too.
        for pid in self.descendants() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        self.kill();
    }
}

/// `(state, ppid)` of a process from `/proc/<pid>/stat`.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(") ")?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether a process runs (zombies and dead processes do not).
pub fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Live descendants of `root`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some((state, ppid)) = stat(pid)
                && state != 'Z'
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// Pids of running processes whose command line has an argument containing `needle`.
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let hit = cmdline
            .split(|b| *b == 0)
            .any(|a| String::from_utf8_lossy(a).contains(needle));
        if hit && is_running(pid) {
            out.push(pid);
        }
    }
    out
}

/// Resident memory of a process, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open file descriptors of a process (sockets included).
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|rd| rd.count())
}
