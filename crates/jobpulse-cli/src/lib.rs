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

/// The multi-threaded runtime a command runs on; when it cannot start, the error line is
/// written and the exit code to return is given back.
pub fn runtime() -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            logging::stderr_line(format_args!("error: cannot start the async runtime: {e}"));
            std::process::ExitCode::FAILURE
        })
}

/// The exit code of a command's result; an error is written as one line (see [`error_chain`]).
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            logging::stderr_line(format_args!("error: {}", error_chain(&e)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `context: cause: cause…` without repeats: many errors (the database's among them) include
/// their source in their own message *and* return it as `source()`, which `{:#}` would print
/// again — the same database error three times.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(msg.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}
