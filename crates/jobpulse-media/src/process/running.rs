//! A spawned tool ([`Running`]): its own process group, killed as a whole on cancel, timeout
//! or drop, and an optional address-space budget set right after the spawn.

use std::process::ExitStatus;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::StderrTail;
#[cfg(doc)]
use super::command;
use crate::MediaError;

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
    /// see the [`process`](super) module docs. A budget that cannot be set kills the child and
    /// fails: running unbounded when a bound was configured would be a silent downgrade.
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
