//! Child-process plumbing shared by every tool invocation: spawning in a process group of its own,
//! killing that whole group on cancel/timeout/drop, and bounded capture of output.
//!
//! Why a process group: `JOBPULSE_FFMPEG` may point at a wrapper script (`nice`, a container
//! shim) that starts the real ffmpeg as *its* child. Killing only the pid we spawned would leave
//! that grandchild encoding for minutes. With `process_group(0)` the child leads a new group and
//! `killpg` reaches everything it started. It also keeps a terminal's Ctrl-C away from ffmpeg:
//! the worker decides how to shut down, not the tty. `kill_on_drop(true)` stays on as a backstop.
//!
//! Memory is bounded everywhere: lines are cut at [`MAX_LINE`](lines::MAX_LINE) bytes, the
//! stderr tail keeps [`TAIL_LINES`](lines::TAIL_LINES) lines, and whole-stdout capture (ffprobe
//! JSON) stops at a fixed limit.
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
//!
//! The submodules: `lines` (line splitting and the stderr tail), `running` (a spawned tool, its
//! group and its budget) and `output` (a short run captured to the end).

mod lines;
mod output;
mod running;

use std::ffi::OsStr;
use std::process::Stdio;

use tokio::process::Command;

pub(crate) use self::lines::{LineSplitter, StderrTail, collect_tail};
pub(crate) use self::output::{run_limited, run_to_end};
pub(crate) use self::running::Running;

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
