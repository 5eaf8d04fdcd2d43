//! The `jobpulse` binary: parses the command line and calls library code.
//!
//! Every subcommand lives in [`commands`] and is a few lines of wiring.

mod bench;
mod catalog;
mod client;
mod commands;
mod config;
mod http;
mod logging;
mod services;
mod wiring;

use clap::{Parser, Subcommand};

use crate::config::CommonArgs;

/// jobpulse: where your long-running jobs are.
#[derive(Debug, Parser)]
#[command(name = "jobpulse", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process with embedded defaults (SQLite + in-process store): API,
    /// dashboard, video and AI workers. Prints the URL and a ready-made token.
    Up(commands::up::UpArgs),
    /// Run the HTTP API (stateless; scale by replicas). Needs REDIS_URL.
    Serve(commands::serve::ServeArgs),
    /// Run a job worker: `worker video` (transcoding) or `worker ai` (tool jobs).
    Worker(commands::worker::WorkerArgs),
    /// Print a signed access token for a tenant/user/role (and nothing else) on stdout.
    Token(commands::token::TokenArgs),
    /// Upload a video or submit an excel import through the API (optionally --watch it).
    Submit(commands::submit::SubmitArgs),
    /// Follow a video or job with a progress bar until it ends.
    Watch(commands::watch::WatchArgs),
    /// Load benchmarks of the real server over loopback (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Apply the database schema (DATABASE_URL, or the embedded SQLite file in the data dir).
    Migrate,
    /// Rebuild the Redis read model from the database (idempotent, safe while workers run).
    Repair(commands::admin::RepairArgs),
    /// Manage tenants.
    Tenant(commands::admin::TenantArgs),
    /// Media storage: `storage check` verifies access and the bucket's CORS rule.
    Storage(commands::storage::StorageArgs),
    /// Print the OpenAPI document (what `/api/openapi.json` serves) without starting a server.
    Openapi,
    /// Print a shell completion script, e.g. `jobpulse completions bash > /etc/bash_completion.d/jobpulse`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Openapi) {
        // Needs no configuration, runtime or service: the document is compiled in.
        return commands::admin::openapi();
    }
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "jobpulse", &mut out);
        logging::stdout_bytes(&out);
        return std::process::ExitCode::SUCCESS;
    }
    let settings = match config::Settings::resolve(&cli.common) {
        Ok(s) => s,
        Err(e) => {
            logging::stderr_line(format_args!("error: {e:#}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    // Kept until `main` returns: dropping it flushes the queued log lines.
    let _log = logging::init(
        settings.log_format,
        !matches!(cli.command, Command::Bench(_)),
    );
    if matches!(
        cli.command,
        Command::Up(_) | Command::Serve(_) | Command::Worker(_)
    ) {
        // Before anything records a metric: what is recorded earlier is lost.
        jobpulse_api::metrics::install();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logging::stderr_line(format_args!("error: cannot start the async runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => commands::up::run(settings, args).await,
            Command::Serve(args) => commands::serve::run(settings, args).await,
            Command::Worker(args) => commands::worker::run(settings, args).await,
            Command::Token(args) => commands::token::run(settings, args),
            Command::Submit(args) => commands::submit::run(args).await,
            Command::Watch(args) => commands::watch::run(args).await,
            Command::Bench(args) => bench::run(settings, args).await,
            Command::Migrate => commands::admin::migrate(settings).await,
            Command::Repair(args) => commands::admin::repair(settings, args).await,
            Command::Tenant(args) => commands::admin::tenant(settings, args).await,
            Command::Storage(args) => {
                if commands::storage::run(settings, args).await? {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "the storage check found problems (see above)"
                    ))
                }
            }
            Command::Openapi | Command::Completions { .. } => Ok(()),
        }
    });
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
fn error_chain(e: &anyhow::Error) -> String {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "jobpulse", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
