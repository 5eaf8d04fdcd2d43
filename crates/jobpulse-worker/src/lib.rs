//! jobpulse-worker: job runners (the video transcoding worker and the AI/tool job dispatcher with
//! its handlers).
//!
//! # Layout
//!
//! - [`excel`]: the pure spreadsheet parts of the excel import and attendance export jobs.

pub mod excel;
