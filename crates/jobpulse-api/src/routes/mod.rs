//! Route modules; each exports a `router()` over its own state.

pub mod batch;
pub mod dashboard;
pub mod direct_upload;
pub mod enroll;
pub mod files;
pub mod ingest;
pub mod jobs;
pub mod media;
pub mod ops;
pub mod playback;
pub mod progress;
pub mod stream;
mod upload;
pub mod webhooks;
