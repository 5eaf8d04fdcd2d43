//! Route modules; each exports a `router()` over its own state.

pub mod ops;
pub mod progress;
