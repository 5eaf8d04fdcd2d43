//! Per-worker work directories and the removal of dead workers' leftovers.
//!
//! A worker runs its attempts in `work_root/<worker id>/` (each attempt in a `TempDir` there,
//! removed when the attempt ends however it ends — except when the whole process dies). At
//! start a worker therefore removes, under `work_root`:
//!
//! - its own directory's old contents (a previous process with the same id, e.g. a restarted
//!   container that kept its hostname and pid);
//! - directories named `<this hostname>-<pid>` (the default worker id) whose process is gone
//!   (`/proc/<pid>` absent or a zombie; only where `/proc` exists);
//! - any other directory in which nothing changed for 24 hours (other hosts sharing the
//!   directory, custom worker ids).
//!
//! Before a dead worker's directory is removed, the processes still working in it are killed:
//! an ffmpeg runs in a process group of its own, so it outlives a worker killed with SIGKILL
//! and would otherwise transcode to the end for nobody (hours, for a long lecture). They are
//! found through `/proc` — any process with a command-line argument inside the directory — and
//! killed with their process group. Nothing in the child can do this more directly: a
//! parent-death signal needs `unsafe` code between fork and exec. A running worker repeats this
//! sweep (without touching its own directory) every time it reaps leases, so a crashed worker's
//! leftovers go as soon as any other video worker runs on the host.
//!
//! Directories of live workers of this process are registered, so two workers of one process
//! can never share (and wipe) one directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::WorkerError;
use crate::claim_loop::hostname;

/// Work directories untouched for this long are presumed dead.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Bounds the walk that finds a directory's newest change.
const MAX_WALK: usize = 10_000;

static ACTIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn active() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a work directory as used by a live worker of this process until dropped.
#[derive(Debug)]
pub(super) struct Registration(PathBuf);

impl Registration {
    pub(super) fn new(dir: &Path) -> Result<Self, WorkerError> {
        if active().insert(dir.to_path_buf()) {
            Ok(Self(dir.to_path_buf()))
        } else {
            Err(WorkerError::WorkDirInUse(dir.to_path_buf()))
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        active().remove(&self.0);
    }
}

/// A worker id as a single safe path component.
pub(super) fn dir_name(worker_id: &str) -> String {
    let name: String = worker_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        format!("w{name}")
    } else {
        name
    }
}

/// Creates `own` under `root` after removing leftovers (see the module docs).
pub(super) async fn prepare(root: &Path, own: &Path) -> Result<(), WorkerError> {
    let (root, own) = (root.to_path_buf(), own.to_path_buf());
    let result = tokio::task::spawn_blocking(move || prepare_blocking(&root, &own)).await;
    match result {
        Ok(r) => r,
        Err(e) => Err(WorkerError::Task(format!(
            "preparing the work directory: {e}"
        ))),
    }
}

/// Removes dead workers' directories under `root` (not `own`) and kills what still runs in
/// them; for the periodic sweep of a running worker.
pub(super) async fn sweep(root: &Path, own: &Path) {
    let (root, own) = (root.to_path_buf(), own.to_path_buf());
    let _ = tokio::task::spawn_blocking(move || remove_leftovers(&root, &own, false)).await;
}

fn prepare_blocking(root: &Path, own: &Path) -> Result<(), WorkerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkerError::WorkDir { path, source }
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    remove_leftovers(root, own, true).map_err(io(root))?;
    std::fs::create_dir_all(own).map_err(io(own))
}

/// See the module docs; `own` is wiped only with `wipe_own`.
fn remove_leftovers(root: &Path, own: &Path, wipe_own: bool) -> std::io::Result<()> {
    let host = hostname();
    let live = active().clone();
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let stale = if path == own {
            wipe_own
        } else if live.contains(&path) {
            false
        } else {
            is_stale(&path, &host)
        };
        if !stale {
            continue;
        }
        let killed = kill_processes_in(&path);
        if killed > 0 {
            tracing::warn!(
                dir = %path.display(),
                processes = killed,
                "killed processes a dead worker left running"
            );
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(dir = %path.display(), "removed a stale work directory"),
            Err(e) => tracing::warn!(
                dir = %path.display(),
                error = %e,
                "cannot remove a stale work directory"
            ),
        }
    }
    Ok(())
}

/// `(state, process group)` of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether a process runs: it exists and is not a zombie (a killed worker whose parent does not
/// reap it stays a zombie, with a `/proc` entry, forever).
fn runs(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Kills (SIGKILL) every process with a command-line argument inside `dir`, with its process
/// group when it leads one; how many were found. Only where `/proc` exists.
fn kill_processes_in(dir: &Path) -> usize {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;

    let mut needles = vec![format!("{}/", dir.display())];
    if let Ok(canonical) = dir.canonicalize() {
        needles.push(format!("{}/", canonical.display()));
    }
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let inside = cmdline.split(|b| *b == 0).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            needles.iter().any(|n| arg.contains(n.as_str()))
        });
        let Some((state, pgrp)) = proc_stat(pid).filter(|_| inside) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        // ESRCH (gone meanwhile) and EPERM (not ours) are both fine to ignore.
        if pgrp == raw {
            let _ = killpg(Pid::from_raw(pgrp), Signal::SIGKILL);
        } else {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
        killed += 1;
    }
    killed
}

fn is_stale(dir: &Path, host: &str) -> bool {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let pid = name
        .strip_prefix(host)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|p| p.parse::<u32>().ok());
    if let Some(pid) = pid
        && Path::new("/proc/self").exists()
    {
        // Our own pid: an earlier worker of this process (live ones are registered).
        if pid == std::process::id() || !runs(pid) {
            return true;
        }
    }
    newest_change(dir)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

/// The newest modification time of `dir` and everything under it (bounded walk).
fn newest_change(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK {
                return Some(newest);
            }
            let Ok(meta) = e.metadata() else { continue };
            if let Ok(t) = meta.modified() {
                newest = newest.max(t);
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Some(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_become_one_safe_path_component() {
        assert_eq!(dir_name("vm-1234"), "vm-1234");
        assert_eq!(dir_name("a/b c"), "a_b_c");
        assert_eq!(dir_name(".."), "w..");
        assert_eq!(dir_name("한"), "_");
    }

    #[test]
    fn leftovers_of_dead_workers_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().expect("temp dir");
        let host = hostname();
        let me = std::process::id();
        // A pid that is certainly not running: above the kernel's pid_max limit.
        let dead = root.path().join(format!("{host}-4194305"));
        let alive = root.path().join(format!("{host}-1"));
        let other_host = root.path().join("elsewhere-77");
        let own = root.path().join("own");
        let mine_earlier = root.path().join(format!("{host}-{me}"));
        for d in [&dead, &alive, &other_host, &own, &mine_earlier] {
            std::fs::create_dir_all(d.join("t1-v2-x")).expect("mkdir");
            std::fs::write(d.join("t1-v2-x/source.mp4"), b"x").expect("write");
        }
        prepare_blocking(root.path(), &own).expect("prepared");
        assert!(!dead.exists(), "a dead worker's directory is removed");
        assert!(alive.exists(), "pid 1 runs: its directory stays");
        assert!(
            other_host.exists(),
            "recent directories of other hosts stay"
        );
        assert!(
            !mine_earlier.exists(),
            "an unregistered directory of this pid"
        );
        assert!(own.exists());
        assert_eq!(std::fs::read_dir(&own).expect("own").count(), 0);

        // Registered directories of live workers of this process are never touched.
        let live = root.path().join(format!("{host}-{me}"));
        std::fs::create_dir_all(live.join("t1")).expect("mkdir");
        let reg = Registration::new(&live).expect("free");
        assert!(matches!(
            Registration::new(&live),
            Err(WorkerError::WorkDirInUse(_))
        ));
        prepare_blocking(root.path(), &own).expect("prepared");
        assert!(live.join("t1").exists());
        drop(reg);
        assert!(Registration::new(&live).is_ok());

        // Anything else is removed once nothing in it changed for a day.
        let old = root.path().join("custom-id");
        std::fs::create_dir_all(&old).expect("mkdir");
        let file = old.join("seg.ts");
        std::fs::write(&file, b"x").expect("write");
        let day_ago = SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        for p in [&file, &old] {
            std::fs::File::open(p)
                .and_then(|f| f.set_modified(day_ago))
                .expect("set mtime");
        }
        prepare_blocking(root.path(), &own).expect("prepared");
        assert!(!old.exists(), "untouched for a day");
        assert!(other_host.exists(), "still recent");
    }
}
