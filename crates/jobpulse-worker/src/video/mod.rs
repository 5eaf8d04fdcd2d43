//! The video worker: claims transcode jobs and runs [`pipeline`] for each.

pub mod pipeline;
