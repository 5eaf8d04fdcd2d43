//! The video worker: claims transcode jobs and runs [`pipeline`] for each.
//!
//! - [`pipeline`]: the seven steps of one attempt.
//! - [`worker`]: the loop around it — claims, leases and heartbeats, retries, cancel, graceful
//!   shutdown ([`VideoWorker`]).

pub mod pipeline;
pub mod worker;

pub use pipeline::{PipelineContext, PipelineError, VideoOutput, VideoTask};
pub use worker::{VideoWorker, VideoWorkerConfig, WorkerError, WorkerHandle};

pub use crate::claim_loop::{WorkerConfig, default_worker_id};
