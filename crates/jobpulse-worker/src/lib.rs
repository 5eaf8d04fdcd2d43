//! jobpulse's job runners.
//!
//! # Layout
//!
//! - [`progress`]: the context object running work reports progress through (fenced, coalesced
//!   writes to the read model; the attempt's seq counter).
//! - [`video`]: the video worker and its seven-step transcode pipeline.

pub mod progress;
pub mod video;
