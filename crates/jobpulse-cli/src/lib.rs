//! The `jobpulse` command's library: its settings ([`config`]), the assembly of a process from
//! them ([`app`]: database, read model, background services, the HTTP application, the
//! workers) and one module per subcommand ([`commands`]). The `jobpulse` binary parses the
//! command line and calls these; `jobpulse-bench` reuses the settings and the log setup.

pub mod app;
pub mod catalog;
pub mod client;
pub mod commands;
pub mod config;
pub mod gauges;
pub mod logging;
pub mod private;
pub mod wiring;
