//! The ffmpeg run: spawned in its own process group under the toolchain's memory budget, its
//! progress parsed from `-progress pipe:1`, stopped on cancellation or past the time budget.

use std::path::Path;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{HlsJob, MASTER_PLAYLIST, TranscodeOutcome, hls_args};
use crate::probe::absolute_input;
use crate::process::{Running, collect_tail, command};
use crate::progress::{ProgressParser, ProgressTracker, TranscodeProgress};
use crate::toolchain::FFMPEG_ENV;
use crate::{MediaError, Toolchain};

impl Toolchain {
    /// Runs the HLS transcode described by `job` (see the [`transcode`](crate::transcode) module
    /// docs), publishing progress on `progress` and stopping promptly when `cancel` fires.
    ///
    /// On success the master playlist exists; validate the output with
    /// [`crate::validate_hls`] before publishing it. On any error the output directory may hold
    /// partial files: the caller owns that directory and removes it.
    pub async fn transcode_hls(
        &self,
        job: &HlsJob,
        progress: &watch::Sender<TranscodeProgress>,
        cancel: &CancellationToken,
    ) -> Result<TranscodeOutcome, MediaError> {
        if cancel.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        let input = absolute_input(&job.input).await?;
        tokio::fs::create_dir_all(&job.out_dir)
            .await
            .map_err(|e| MediaError::io(format!("creating {}", job.out_dir.display()), e))?;
        let out_dir = std::path::absolute(&job.out_dir)
            .map_err(|e| MediaError::io(format!("resolving {}", job.out_dir.display()), e))?;
        let resolved = HlsJob {
            input,
            out_dir,
            ..job.clone()
        };
        let args = hls_args(&resolved)?;

        let started = Instant::now();
        let budget = job.options.time_budget(job.duration_secs);
        let deadline = tokio::time::sleep(budget);
        tokio::pin!(deadline);
        let mut cmd = command(self.ffmpeg().as_os_str());
        cmd.args(&args);
        let mut running =
            Running::spawn_limited("ffmpeg", FFMPEG_ENV, &mut cmd, self.memory_limit())?;
        tracing::debug!(
            ffmpeg.pid = running.child.id(),
            renditions = job.renditions.len(),
            budget_secs = budget.as_secs(),
            memory_limit = self.memory_limit(),
            "transcode started"
        );
        let timed_out = || MediaError::TimedOut {
            tool: "ffmpeg",
            secs: budget.as_secs(),
        };
        let stderr = running.child.stderr.take().map(collect_tail);
        let mut stdout = running.child.stdout.take();

        let mut parser = ProgressParser::new();
        let mut tracker = ProgressTracker::new(job.duration_secs);
        progress.send_replace(tracker.current());
        let mut buf = [0u8; 4096];
        if let Some(pipe) = stdout.as_mut() {
            loop {
                let read = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        running.kill().await;
                        return Err(MediaError::Cancelled);
                    }
                    () = &mut deadline => {
                        running.kill().await;
                        return Err(timed_out());
                    }
                    r = pipe.read(&mut buf) => r,
                };
                match read {
                    Ok(0) => break,
                    Ok(n) => {
                        for block in parser.push(&buf[..n]) {
                            progress.send_replace(tracker.update(&block));
                        }
                    }
                    Err(e) => {
                        running.kill().await;
                        return Err(MediaError::io("reading ffmpeg progress", e));
                    }
                }
            }
        }
        if let Some(block) = parser.finish() {
            progress.send_replace(tracker.update(&block));
        }
        let status = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                running.kill().await;
                return Err(MediaError::Cancelled);
            }
            () = &mut deadline => {
                running.kill().await;
                return Err(timed_out());
            }
            s = running.wait() => s?,
        };
        let stderr_tail = match stderr {
            Some(h) => h.await.unwrap_or_default(),
            None => Default::default(),
        };
        if !status.success() {
            return Err(running.failure(status.code(), stderr_tail));
        }
        let master = job.master_playlist();
        if !is_file(&master).await {
            return Err(MediaError::BadToolOutput {
                tool: "ffmpeg",
                detail: format!("exited successfully but wrote no {MASTER_PLAYLIST}"),
            });
        }
        Ok(TranscodeOutcome {
            master_playlist: master,
            elapsed: started.elapsed(),
            progress: tracker.current(),
        })
    }
}

async fn is_file(p: &Path) -> bool {
    tokio::fs::metadata(p).await.is_ok_and(|m| m.is_file())
}
