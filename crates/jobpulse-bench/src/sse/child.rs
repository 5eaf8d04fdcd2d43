//! The SSE client process as the bench drives it: spawned from this executable
//! (`--sse-client`), spoken to over its stdin/stdout.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::Msg;

/// The load client in its own process, spoken to over stdin/stdout.
pub(super) struct ClientProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    pub(super) fn spawn() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--sse-client")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the SSE client process")?;
        let stdin = child.stdin.take().context("client stdin")?;
        let stdout = child.stdout.take().context("client stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub(super) async fn send(&mut self, msg: &Msg) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .context("writing to the SSE client process")?;
        Ok(self.stdin.flush().await?)
    }

    pub(super) async fn recv(&mut self, within: Duration) -> anyhow::Result<Msg> {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .with_context(|| format!("the SSE client did not answer within {within:?}"))??
            .context("the SSE client process exited (see its error above)")?;
        serde_json::from_str(&line).with_context(|| format!("bad line from the client: {line}"))
    }

    pub(super) async fn finish(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
