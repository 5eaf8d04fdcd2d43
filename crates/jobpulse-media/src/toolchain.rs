//! Where ffmpeg and ffprobe are, and whether they are usable.
//!
//! [`Toolchain::detect`] takes `JOBPULSE_FFMPEG` / `JOBPULSE_FFPROBE` when set (an explicit path
//! that must exist) and otherwise searches `PATH`. Nothing here shells out through a shell: every
//! invocation in this crate is `Command::new(path).args(..)`, so file names are never
//! re-interpreted. The probing, transcoding and thumbnail operations are methods on
//! [`Toolchain`] (see the `probe`, `transcode` and `thumbnail` modules).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::MediaError;
use crate::process::{command, run_to_end};

/// Environment variable naming the ffmpeg executable.
pub const FFMPEG_ENV: &str = "JOBPULSE_FFMPEG";
/// Environment variable naming the ffprobe executable.
pub const FFPROBE_ENV: &str = "JOBPULSE_FFPROBE";

/// Budget for `-version` / `-encoders` queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The ffmpeg and ffprobe executables every operation of this crate runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    /// Address-space budget of every ffmpeg/ffprobe run on media (bytes); `None`: unbounded.
    memory_limit: Option<u64>,
}

impl Toolchain {
    /// Uses these executables as given, without checking them; a missing one surfaces as
    /// [`MediaError::ToolMissing`] when first run.
    pub fn new(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>) -> Self {
        Self {
            ffmpeg: ffmpeg.into(),
            ffprobe: ffprobe.into(),
            memory_limit: None,
        }
    }

    /// The same tools, each probe, transcode and thumbnail run with an address-space budget of
    /// `bytes` (`RLIMIT_AS`; `None` or 0: unbounded). A run that needs more fails with
    /// [`MediaError::OutOfMemory`] instead of growing without bound. With two threads ffmpeg
    /// maps about 410 MiB to transcode a 640x360 clip and 670 MiB for 1080p or 4K (its libraries
    /// alone take a good part), so budgets below ~1 GiB refuse ordinary videos.
    pub fn with_memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes.filter(|b| *b > 0);
        self
    }

    /// The budget set by [`Toolchain::with_memory_limit`], bytes.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// Finds the tools from `JOBPULSE_FFMPEG` / `JOBPULSE_FFPROBE`, else from `PATH`.
    ///
    /// Fails with "ffmpeg is not installed; install it (e.g. apt-get install ffmpeg) …" when a
    /// tool is nowhere to be found.
    pub fn detect() -> Result<Self, MediaError> {
        Self::detect_from(
            std::env::var_os(FFMPEG_ENV),
            std::env::var_os(FFPROBE_ENV),
            std::env::var_os("PATH"),
        )
    }

    /// [`Toolchain::detect`] with the environment passed in (tests cannot safely mutate the
    /// process environment). Empty values count as unset.
    pub fn detect_from(
        ffmpeg_env: Option<OsString>,
        ffprobe_env: Option<OsString>,
        path: Option<OsString>,
    ) -> Result<Self, MediaError> {
        let ffmpeg = locate("ffmpeg", FFMPEG_ENV, ffmpeg_env, path.as_ref())?;
        let ffprobe = locate("ffprobe", FFPROBE_ENV, ffprobe_env, path.as_ref())?;
        Ok(Self {
            ffmpeg,
            ffprobe,
            memory_limit: None,
        })
    }

    /// The ffmpeg executable.
    pub fn ffmpeg(&self) -> &Path {
        &self.ffmpeg
    }

    /// The ffprobe executable.
    pub fn ffprobe(&self) -> &Path {
        &self.ffprobe
    }

    /// ffmpeg's version string, e.g. `"5.1.9-0+deb12u1"` (the word after `ffmpeg version`).
    pub async fn version(&self) -> Result<String, MediaError> {
        let out = run_to_end(
            "ffmpeg",
            FFMPEG_ENV,
            command(self.ffmpeg.as_os_str()).arg("-version"),
            QUERY_TIMEOUT,
        )
        .await?
        .check("ffmpeg")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        first
            .strip_prefix("ffmpeg version ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .ok_or_else(|| MediaError::BadToolOutput {
                tool: "ffmpeg",
                detail: format!("unrecognised -version output: {first:?}"),
            })
    }

    /// Checks that ffmpeg and ffprobe run and that ffmpeg has the encoders the HLS ladder uses
    /// (libx264, aac). Call at worker start-up so a broken install fails fast and clearly.
    pub async fn verify(&self) -> Result<String, MediaError> {
        let version = self.version().await?;
        run_to_end(
            "ffprobe",
            FFPROBE_ENV,
            command(self.ffprobe.as_os_str()).arg("-version"),
            QUERY_TIMEOUT,
        )
        .await?
        .check("ffprobe")?;
        let out = run_to_end(
            "ffmpeg",
            FFMPEG_ENV,
            command(self.ffmpeg.as_os_str()).args(["-hide_banner", "-encoders"]),
            QUERY_TIMEOUT,
        )
        .await?
        .check("ffmpeg")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let has = |name: &str| {
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name))
        };
        for encoder in ["libx264", "aac"] {
            if !has(encoder) {
                return Err(MediaError::ToolIncomplete(format!(
                    "ffmpeg {version} at {} has no {encoder} encoder; install a full build \
                     (e.g. Debian's ffmpeg package)",
                    self.ffmpeg.display()
                )));
            }
        }
        Ok(version)
    }
}

fn locate(
    tool: &'static str,
    env: &'static str,
    explicit: Option<OsString>,
    path: Option<&OsString>,
) -> Result<PathBuf, MediaError> {
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(MediaError::ToolPathInvalid { tool, env, path: p })
        };
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
        .ok_or(MediaError::ToolMissing { tool, env })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
