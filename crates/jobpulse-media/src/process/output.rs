//! A short-lived tool run to completion: all of stdout (bounded) and the stderr tail captured,
//! killed when its time is up.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{Running, StderrTail, collect_tail};
use crate::MediaError;

/// Largest stdout accepted when the whole output is needed (ffprobe JSON).
const MAX_STDOUT: usize = 8 * 1024 * 1024;

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
