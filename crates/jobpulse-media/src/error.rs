//! The error type of the ffmpeg/ffprobe side of this crate ([`MediaError`]).
//!
//! Messages are written for the person who uploaded the file or runs the worker: "the file is not a
//! video ffmpeg can read", "ffmpeg is not installed; install it …". Tool output that explains a
//! failure is kept (bounded) in [`MediaError::Failed::stderr_tail`] for logs.

use std::path::PathBuf;

/// Everything that can go wrong while probing, transcoding, thumbnailing or validating.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The ffmpeg or ffprobe executable could not be found or started.
    #[error(
        "{tool} is not installed; install it (e.g. apt-get install ffmpeg) or set {env} to its path"
    )]
    ToolMissing {
        /// `"ffmpeg"` or `"ffprobe"`.
        tool: &'static str,
        /// The environment variable that overrides the executable's path.
        env: &'static str,
    },
    /// An explicit executable path (from the environment) does not point to an executable file.
    #[error("{env}={} does not point to an executable {tool}", path.display())]
    ToolPathInvalid {
        /// `"ffmpeg"` or `"ffprobe"`.
        tool: &'static str,
        /// The environment variable that was set.
        env: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// ffmpeg runs but lacks something jobpulse needs (an encoder such as libx264).
    #[error("ffmpeg is missing a required feature: {0}")]
    ToolIncomplete(String),
    /// ffprobe could not read the file at all: not a media file, or damaged beyond use.
    #[error("the file is not a video ffmpeg can read ({detail})")]
    NotMedia {
        /// ffprobe's own explanation, e.g. "Invalid data found when processing input".
        detail: String,
    },
    /// The file is a media file without a (non cover-art) video stream, e.g. plain audio.
    #[error("the file has no video stream")]
    NoVideoStream,
    /// The file has no measurable duration (empty, a still image, or a broken index).
    #[error("the video has no duration (it is empty, a still image, or damaged)")]
    ZeroDuration,
    /// The video stream reports a size that cannot be encoded.
    #[error("the video has an unusable size {width}x{height}")]
    BadDimensions {
        /// Reported width.
        width: u32,
        /// Reported height.
        height: u32,
    },
    /// The video is over one of the configured [`crate::MediaLimits`].
    #[error("{0}")]
    OverLimit(#[from] crate::limits::LimitViolation),
    /// A tool failed because it reached its address-space budget (`RLIMIT_AS`, see
    /// [`crate::Toolchain::with_memory_limit`]): the video needs more memory than allowed.
    #[error(
        "{tool} ran out of its memory budget ({limit_mib} MiB) on this video; it is too large or \
         too complex to process here"
    )]
    OutOfMemory {
        /// The tool that failed.
        tool: &'static str,
        /// The budget in MiB.
        limit_mib: u64,
    },
    /// The caller asked for the work to stop; the child process has been killed and reaped.
    #[error("cancelled")]
    Cancelled,
    /// A tool did not finish within its time budget and was killed.
    #[error("{tool} did not finish within {secs} s")]
    TimedOut {
        /// The tool that was killed.
        tool: &'static str,
        /// The budget in seconds.
        secs: u64,
    },
    /// A tool ran and exited unsuccessfully.
    #[error("{tool} failed ({}): {}", exit_text(*code), last_line(stderr_tail))]
    Failed {
        /// The tool that failed.
        tool: &'static str,
        /// Its exit code; `None` when it was ended by a signal.
        code: Option<i32>,
        /// The last lines (at most 20, each at most 512 bytes) it wrote to stderr.
        stderr_tail: String,
    },
    /// A tool's output (ffprobe JSON) was not what it documents.
    #[error("unexpected {tool} output: {detail}")]
    BadToolOutput {
        /// The tool.
        tool: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The request itself cannot be run (e.g. no renditions, an output path ffmpeg would misread).
    #[error("invalid media request: {0}")]
    InvalidRequest(String),
    /// An HLS output directory failed validation.
    #[error("invalid HLS output: {0}")]
    InvalidHls(String),
    /// Local file-system or pipe I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl MediaError {
    /// True when the input file itself is at fault, so retrying the same file cannot help.
    /// Workers use this to fail a job permanently instead of scheduling a retry.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            MediaError::NotMedia { .. }
                | MediaError::NoVideoStream
                | MediaError::ZeroDuration
                | MediaError::BadDimensions { .. }
                | MediaError::OverLimit(_)
                | MediaError::OutOfMemory { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        MediaError::Io {
            context: context.into(),
            source,
        }
    }
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_owned(),
    }
}

fn last_line(tail: &str) -> &str {
    tail.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no error output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let e = MediaError::ToolMissing {
            tool: "ffmpeg",
            env: "JOBPULSE_FFMPEG",
        };
        assert!(
            e.to_string()
                .starts_with("ffmpeg is not installed; install it (e.g. apt-get install ffmpeg)")
        );
        let e = MediaError::Failed {
            tool: "ffmpeg",
            code: Some(1),
            stderr_tail: "first\nError opening output file x\n\n".to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "ffmpeg failed (exit code 1): Error opening output file x"
        );
        assert!(MediaError::NoVideoStream.is_bad_input());
        assert!(!MediaError::Cancelled.is_bad_input());
    }
}
