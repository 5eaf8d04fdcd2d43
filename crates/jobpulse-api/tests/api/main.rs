//! Integration tests of the HTTP API over a real socket.

mod app;
mod auth;
mod contract;
mod dashboard;
mod direct_upload;
mod enroll;
mod fanout;
mod hardening;
mod helpers;
mod hostile;
mod ingest;
mod liveness;
mod media_limits;
mod playback;
mod push;
mod replicas;
mod resets;
