//! Integration tests of the HTTP API over a real socket.

mod app;
mod auth;
mod contract;
mod dashboard;
mod enroll;
mod hardening;
mod helpers;
mod ingest;
mod push;
