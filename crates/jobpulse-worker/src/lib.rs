//! jobpulse's job runners: the video transcoding worker and the AI/tool job dispatcher with its
//! handlers.
//!
//! # Layout
//!
//! - [`claim_loop`]: the claim loop of every task kind — reaping, claiming up to `concurrency`,
//!   backoff, wake-ups, graceful shutdown — over what a [`claim_loop::TaskKind`] supplies, and
//!   the settings every worker shares ([`claim_loop::WorkerConfig`]).
//! - [`lease`]: the lease protocol of every task kind — keep-alive, why an attempt stopped, and
//!   its one final write with the retry loop.
//! - [`progress`]: the context object running work reports progress through (fenced, coalesced
//!   writes to the read model; the attempt's seq counter).
//! - [`video`]: the video worker and its seven-step transcode pipeline.
//! - [`ai`]: the AI/tool job worker (one handler per job type) and its handlers: the excel
//!   student import and the attendance export.
//! - [`excel`]: the pure spreadsheet parts of the excel import and attendance export jobs.

pub mod ai;
pub mod claim_loop;
pub mod excel;
pub mod lease;
pub mod progress;
pub mod video;
