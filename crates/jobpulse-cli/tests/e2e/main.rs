//! End-to-end tests of the `jobpulse` binary: `jobpulse up` as a child process, driven over
//! HTTP, by the CLI client, and by headless Chromium.

mod browser;
mod cli;
mod flow;
mod harness;
mod playback;
mod private;
mod upload_browser;
mod webhooks;
