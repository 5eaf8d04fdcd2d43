//! Child-process plumbing shared by every tool invocation: spawning in a process group of its own,
//! killing that whole group on cancel/timeout/drop, and bounded capture of output.
//!
//! Why a process group: `JOBPULSE_FFMPEG` may point at a wrapper script (`nice`, a container
//! shim) that starts the real ffmpeg as *its* child. Killing only the pid we spawned would leave
//! that grandchild encoding for minutes. With `process_group(0)` the child leads a new group and
//! `killpg` reaches everything it started. It also keeps a terminal's Ctrl-C away from ffmpeg:
//! the worker decides how to shut down, not the tty. `kill_on_drop(true)` stays on as a backstop.
//!
//! Memory is bounded everywhere: lines are cut at [`MAX_LINE`] bytes, the stderr tail keeps
//! [`TAIL_LINES`] lines, and whole-stdout capture (ffprobe JSON) stops at a fixed limit.
//!
//! The tools' own memory: [`Running::spawn_limited`] gives the child an address-space budget
//! (`RLIMIT_AS`, set with `prlimit(2)` on the child's pid right after the spawn — no `unsafe`
//! `pre_exec`, no cgroups, works unprivileged). The window between `exec` and that call is a
//! few hundred microseconds in which ffmpeg is still loading its libraries; whatever it maps
//! then still counts against the budget afterwards, so it cannot be used to escape it. glibc
//! reserves 64 MiB of address space per malloc arena (up to 8 per core), which counts against
//! `RLIMIT_AS` without being memory; `MALLOC_ARENA_MAX=2` keeps the budget about memory. A
//! tool that hits the budget reports an allocation failure on stderr ("Cannot allocate
//! memory"); [`StderrTail::alloc_failed`] notices it on any line, not only in the tail.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

use crate::MediaError;

/// Longest line kept from a tool's output; the rest of an overlong line is dropped.
pub(crate) const MAX_LINE: usize = 512;
/// How many stderr lines are kept for error messages.
pub(crate) const TAIL_LINES: usize = 20;
/// Largest stdout accepted when the whole output is needed (ffprobe JSON).
const MAX_STDOUT: usize = 8 * 1024 * 1024;

/// Splits a byte stream into lines, whatever the chunk boundaries, in bounded memory.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// The current line passed [`MAX_LINE`]; its remainder is discarded up to the newline.
    overlong: bool,
}

impl LineSplitter {
    /// Feeds a chunk; calls `on_line` for each completed line (without `\n` / `\r\n`).
    pub(crate) fn push(&mut self, chunk: &[u8], mut on_line: impl FnMut(&str)) {
        for &b in chunk {
            if b == b'\n' {
                self.emit(&mut on_line);
            } else if self.buf.len() < MAX_LINE {
                self.buf.push(b);
            } else {
                self.overlong = true;
            }
        }
    }

    /// Emits a trailing line that had no newline (the stream ended).
    pub(crate) fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            self.emit(&mut on_line);
        }
    }

    fn emit(&mut self, on_line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.buf);
        on_line(text.trim_end_matches('\r'));
        self.buf.clear();
        self.overlong = false;
    }
}

/// The last [`TAIL_LINES`] non-empty lines of a stream.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    splitter: LineSplitter,
    alloc_failed: bool,
}

/// What a tool wrote to stderr, as far as jobpulse keeps it.
#[derive(Debug, Default, Clone)]
pub(crate) struct StderrTail {
    /// The last [`TAIL_LINES`] non-empty lines.
    pub(crate) text: String,
    /// Some line (anywhere in the stream) reported a failed allocation.
    pub(crate) alloc_failed: bool,
}

/// How ffmpeg, its libraries and the dynamic loader say that an allocation failed. Only read when
/// the child ran under a memory budget. `get_buffer() failed` is libavcodec failing to allocate a
/// frame: with frame threads, an 8192×8192 picture under a 600 MiB budget sometimes fails there
/// ("… no frame!") and exits before the encoder's own `malloc of size …` line is printed — it
/// was then retried as an ordinary ffmpeg failure.
const ALLOC_FAILURES: [&str; 6] = [
    "cannot allocate memory",
    "could not allocate",
    "malloc of size",
    "failed to map segment",
    "out of memory",
    "get_buffer() failed",
];

impl Tail {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let (lines, flag) = (&mut self.lines, &mut self.alloc_failed);
        self.splitter.push(chunk, |l| keep(lines, flag, l));
    }

    pub(crate) fn finish(mut self) -> StderrTail {
        let (lines, flag) = (&mut self.lines, &mut self.alloc_failed);
        self.splitter.finish(|l| keep(lines, flag, l));
        StderrTail {
            text: self.lines.into_iter().collect::<Vec<_>>().join("\n"),
            alloc_failed: self.alloc_failed,
        }
    }
}

fn keep(lines: &mut VecDeque<String>, alloc_failed: &mut bool, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    if !*alloc_failed {
        let lower = line.to_ascii_lowercase();
        *alloc_failed = ALLOC_FAILURES.iter().any(|m| lower.contains(m));
    }
    if lines.len() == TAIL_LINES {
        lines.pop_front();
    }
    lines.push_back(line.to_owned());
}

/// Reads a child's stderr to the end in the background, keeping only its tail.
pub(crate) fn collect_tail(mut stderr: ChildStderr) -> JoinHandle<StderrTail> {
    tokio::spawn(async move {
        let mut tail = Tail::default();
        let mut buf = [0u8; 4096];
        // A read error means the pipe is gone; whatever was read so far is the tail.
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        tail.finish()
    })
}

/// A command prepared the way every tool runs: own process group, no stdin, piped output,
/// killed if its handle is dropped.
pub(crate) fn command(program: &OsStr) -> Command {
    let mut cmd = Command::new(program);
    cmd.process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A spawned tool: the child plus a guard that kills its whole process group unless the child
/// has been reaped (after which the group id may no longer be ours to signal).
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) tool: &'static str,
    pub(crate) child: Child,
    group: GroupGuard,
    /// The address-space budget given to the child, bytes.
    pub(crate) memory_limit: Option<u64>,
}

#[derive(Debug)]
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group already gone) is the expected outcome after a normal exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Reached when a caller drops the future mid-run: the child is not reaped yet, so its
        // pid (= the group id) cannot have been reused.
        self.kill();
    }
}

impl Running {
    /// Spawns `cmd` (built with [`command`]), mapping "no such executable" to
    /// [`MediaError::ToolMissing`].
    pub(crate) fn spawn(
        tool: &'static str,
        env: &'static str,
        cmd: &mut Command,
    ) -> Result<Self, MediaError> {
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                MediaError::ToolMissing { tool, env }
            }
            _ => MediaError::io(format!("starting {tool}"), e),
        })?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(Self {
            tool,
            child,
            group: GroupGuard { pgid },
            memory_limit: None,
        })
    }

    /// [`Running::spawn`] with an address-space budget of `memory_limit` bytes (`None`: none);
    /// see the module docs. A budget that cannot be set kills the child and fails: running
    /// unbounded when a bound was configured would be a silent downgrade.
    pub(crate) fn spawn_limited(
        tool: &'static str,
        env: &'static str,
        cmd: &mut Command,
        memory_limit: Option<u64>,
    ) -> Result<Self, MediaError> {
        if memory_limit.is_some() {
            cmd.env("MALLOC_ARENA_MAX", "2");
        }
        let mut running = Self::spawn(tool, env, cmd)?;
        let Some(bytes) = memory_limit else {
            return Ok(running);
        };
        running.memory_limit = Some(bytes);
        let pid = running
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        let limit = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        let set = match pid {
            Some(pid) => rustix::process::prlimit(Some(pid), rustix::process::Resource::As, limit)
                .map(|_| ()),
            // Already reaped: nothing left to limit.
            None => Ok(()),
        };
        match set {
            // ESRCH: the child already exited; its status tells the rest.
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(running),
            Err(e) => {
                running.group.kill();
                let _ = running.child.start_kill();
                Err(MediaError::io(
                    format!("limiting {tool}'s memory"),
                    std::io::Error::from(e),
                ))
            }
        }
    }

    /// The error for an unsuccessful exit: [`MediaError::OutOfMemory`] when the child had a
    /// budget and reported a failed allocation, else [`MediaError::Failed`].
    pub(crate) fn failure(&self, code: Option<i32>, stderr: StderrTail) -> MediaError {
        match self.memory_limit {
            Some(bytes) if stderr.alloc_failed => MediaError::OutOfMemory {
                tool: self.tool,
                limit_mib: bytes / (1024 * 1024),
            },
            _ => MediaError::Failed {
                tool: self.tool,
                code,
                stderr_tail: stderr.text,
            },
        }
    }

    /// Kills the process group and reaps the child. Used on cancel, timeout and errors.
    pub(crate) async fn kill(&mut self) {
        self.group.kill();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.group.pgid = None;
    }

    /// Waits for a normal exit.
    pub(crate) async fn wait(&mut self) -> Result<ExitStatus, MediaError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| MediaError::io(format!("waiting for {}", self.tool), e))?;
        self.group.pgid = None;
        Ok(status)
    }
}

/// What a short tool run produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr_tail: String,
    /// The child ran with a memory budget and reported a failed allocation.
    pub(crate) out_of_memory: Option<MediaError>,
}

impl Output {
    /// Turns an unsuccessful exit into [`MediaError::OutOfMemory`] (budget hit) or
    /// [`MediaError::Failed`].
    pub(crate) fn check(self, tool: &'static str) -> Result<Self, MediaError> {
        if self.status.success() {
            Ok(self)
        } else if let Some(oom) = self.out_of_memory {
            Err(oom)
        } else {
            Err(MediaError::Failed {
                tool,
                code: self.status.code(),
                stderr_tail: self.stderr_tail,
            })
        }
    }
}

/// Runs a short-lived tool to completion, capturing all of stdout (bounded) and the stderr tail,
/// killing it when `timeout` passes.
pub(crate) async fn run_to_end(
    tool: &'static str,
    env: &'static str,
    cmd: &mut Command,
    timeout: Duration,
) -> Result<Output, MediaError> {
    run_limited(tool, env, cmd, timeout, None).await
}

/// [`run_to_end`] with an address-space budget (see [`Running::spawn_limited`]).
pub(crate) async fn run_limited(
    tool: &'static str,
    env: &'static str,
    cmd: &mut Command,
    timeout: Duration,
    memory_limit: Option<u64>,
) -> Result<Output, MediaError> {
    let mut running = Running::spawn_limited(tool, env, cmd, memory_limit)?;
    let stderr = running.child.stderr.take().map(collect_tail);
    let mut stdout = running.child.stdout.take();
    let work = async {
        let mut out = Vec::new();
        if let Some(pipe) = stdout.as_mut() {
            read_bounded(pipe, &mut out, tool).await?;
        }
        let status = running.wait().await?;
        Ok::<_, MediaError>((status, out))
    };
    let result = tokio::time::timeout(timeout, work).await;
    let (status, stdout) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            running.kill().await;
            return Err(e);
        }
        Err(_) => {
            running.kill().await;
            return Err(MediaError::TimedOut {
                tool,
                secs: timeout.as_secs(),
            });
        }
    };
    let stderr = match stderr {
        Some(h) => h.await.unwrap_or_default(),
        None => StderrTail::default(),
    };
    let out_of_memory = match running.failure(status.code(), stderr.clone()) {
        e @ MediaError::OutOfMemory { .. } if !status.success() => Some(e),
        _ => None,
    };
    Ok(Output {
        status,
        stdout,
        stderr_tail: stderr.text,
        out_of_memory,
    })
}

async fn read_bounded(
    pipe: &mut (impl AsyncRead + Unpin),
    out: &mut Vec<u8>,
    tool: &'static str,
) -> Result<(), MediaError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe
            .read(&mut buf)
            .await
            .map_err(|e| MediaError::io(format!("reading {tool} output"), e))?;
        if n == 0 {
            return Ok(());
        }
        if out.len() + n > MAX_STDOUT {
            return Err(MediaError::BadToolOutput {
                tool,
                detail: format!("more than {MAX_STDOUT} bytes of output"),
            });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_any_chunking_and_stay_bounded() {
        let input = b"alpha\r\nbeta\n\ngamma-without-newline";
        for split in 0..input.len() {
            let mut s = LineSplitter::default();
            let mut got = Vec::new();
            s.push(&input[..split], |l| got.push(l.to_owned()));
            s.push(&input[split..], |l| got.push(l.to_owned()));
            s.finish(|l| got.push(l.to_owned()));
            assert_eq!(
                got,
                ["alpha", "beta", "", "gamma-without-newline"],
                "{split}"
            );
        }
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        let long = vec![b'x'; 10 * MAX_LINE];
        s.push(&long, |l| got.push(l.len()));
        s.push(b"\nshort\n", |l| got.push(l.len()));
        assert_eq!(got, [MAX_LINE, 5]);
    }

    #[test]
    fn an_allocation_failure_is_noticed_anywhere_in_the_stream() {
        let mut t = Tail::default();
        t.push(b"[h264 @ 0x55] Could not allocate memory\n");
        for i in 0..100 {
            t.push(format!("later line {i}\n").as_bytes());
        }
        let tail = t.finish();
        assert!(tail.alloc_failed, "the line is long gone from the tail");
        assert!(!tail.text.contains("allocate"));
        let mut t = Tail::default();
        t.push(b"Error while decoding stream #0:0: Cannot allocate memory");
        assert!(
            t.finish().alloc_failed,
            "a last line without newline counts"
        );
        let mut t = Tail::default();
        // A frame that could not be allocated, the decoder giving up before the encoder opens.
        t.push(b"[h264 @ 0x5604] get_buffer() failed\n[h264 @ 0x5604] no frame!\n");
        assert!(t.finish().alloc_failed);
        let mut t = Tail::default();
        t.push(b"Invalid data found when processing input\n");
        assert!(!t.finish().alloc_failed);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n\n").as_bytes());
        }
        t.push(b"last without newline");
        let tail = t.finish();
        assert!(!tail.alloc_failed);
        let lines: Vec<_> = tail.text.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 81");
        assert_eq!(lines[TAIL_LINES - 1], "last without newline");
    }
}
