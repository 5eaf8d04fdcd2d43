//! jobpulse's domain: the vocabulary every other crate speaks, with no I/O.
//!
//! Everything that crosses a trust boundary (a path segment, a token claim, a worker's report) is
//! parsed into one of these types at the edge; past the edge nothing re-validates.
//!
//! # Layout
//!
//! - [`ids`]: `TenantId`, `VideoId`, `JobId`, `JobType` and [`ids::TaskKey`], the address of one
//!   tracked task inside one tenant.
//! - [`status`]: the video and AI-job status sets of docs/contract.md §2–4, which are terminal, and the
//!   transition rules the source of truth (the database) enforces.
//! - [`progress`]: the progress schema (overall percent, step detail, remaining seconds, bounded
//!   texts) and [`progress::State`], one task's visible state.
//! - [`fence`]: `(generation, attempt, seq)`, the write [`fence::Write`] and [`fence::decide`], the
//!   ordering rule every store implements (the in-process store calls it directly; the Redis
//!   store's Lua script mirrors it and is differentially tested against it).
//! - [`steps`]: the named steps of the video pipeline and of the excel import.
//! - [`enroll`]: the options of an Excel enroll (password mode, session) carried in the
//!   `excel_parsing` payload.
//! - [`eta`]: the smoothed remaining-time estimator workers use.
//! - [`keys`]: Redis key naming, built only from validated ids.

pub mod enroll;
pub mod eta;
pub mod fence;
pub mod ids;
pub mod keys;
pub mod progress;
pub mod status;
pub mod steps;

pub use fence::{Decision, Fence, Origin, Outcome, RejectReason, Stored, Write, WriteKind, decide};
pub use ids::{IdError, JobId, JobType, TaskId, TaskKey, TenantId, VideoId};
pub use progress::{JobResult, Percent, PreviousAttempt, ProgressError, State, StepProgress, Text};
pub use status::{JobStatus, Status, TaskKind, VideoStatus};

/// Largest inline job result the read model holds, in bytes of compact JSON (docs/contract.md §3).
/// A larger result is stored as a reference and served from the result endpoint.
pub const MAX_INLINE_RESULT_BYTES: usize = 10 * 1024;
