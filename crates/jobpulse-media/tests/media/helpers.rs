//! Shared test support: the toolchain, clip generation, and process inspection through /proc.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobpulse_media::Toolchain;
use jobpulse_media::testing::{ClipSpec, generate_clip};

/// The installed toolchain; fails the test with instructions when ffmpeg is missing.
pub fn tools() -> Toolchain {
    Toolchain::detect().expect(
        "these tests need ffmpeg and ffprobe: apt-get install ffmpeg (or set JOBPULSE_FFMPEG)",
    )
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Generates `spec` as `dir/name`.
pub async fn clip(dir: &Path, name: &str, spec: ClipSpec) -> PathBuf {
    let path = dir.join(name);
    generate_clip(&tools(), &path, &spec)
        .await
        .expect("generating a test clip");
    path
}

/// What plain ffprobe (no whitelist: it also reads JPEGs and segments) says about a file:
/// the codec types of its streams and the first video stream's size.
pub fn streams_of(path: &Path) -> (Vec<String>, Option<(u64, u64)>) {
    let out = std::process::Command::new(tools().ffprobe())
        .args(["-v", "error", "-print_format", "json", "-show_streams"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {:?}",
        path.display(),
        out
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let types = streams
        .iter()
        .filter_map(|s| s["codec_type"].as_str().map(str::to_owned))
        .collect();
    let size = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .and_then(|s| Some((s["width"].as_u64()?, s["height"].as_u64()?)));
    (types, size)
}

/// Pids of live processes whose command line contains `needle` (zombies count as gone: they
/// run nothing, and reaping orphans is PID 1's job, not ours).
pub fn pids_running_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let matches = cmdline
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(needle));
        if matches && is_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// True while `/proc/<pid>` exists and the process is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns the time it took.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A storage under test and, for file storage, its directory (for checks on the files).
pub struct Store {
    pub storage: jobpulse_media::MediaStorage,
    pub root: Option<tempfile::TempDir>,
}

impl Store {
    /// File storage in a new temporary directory.
    pub fn file() -> Self {
        let root = tempdir();
        let storage = jobpulse_media::MediaStorage::local(root.path()).expect("file storage");
        Self {
            storage,
            root: Some(root),
        }
    }

    /// S3 storage on a new bucket of the test server, keys under a prefix.
    pub async fn s3() -> Self {
        Self {
            storage: jobpulse_media::testing::s3::fresh_storage("jp/test").await,
            root: None,
        }
    }

    /// Files left in the storage directory (file storage), to prove nothing was left behind.
    pub fn files(&self) -> Vec<PathBuf> {
        self.root
            .as_ref()
            .map(|r| files_under(r.path()))
            .unwrap_or_default()
    }
}

/// Runs the async test body `$name(Store)` once on file storage and once on S3, as
/// `$name::file` and `$name::s3`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn file() {
                super::$name($crate::helpers::Store::file()).await;
            }
            #[tokio::test]
            async fn s3() {
                super::$name($crate::helpers::Store::s3().await).await;
            }
        }
    )*};
}
