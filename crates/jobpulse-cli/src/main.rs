//! The `jobpulse` binary: parses the command line and calls the library (`jobpulse_cli`).
//!
//! Every subcommand lives in [`commands`] and is a few lines over [`jobpulse_cli::app`].

mod allocator;

use jobpulse_cli::{commands, config, logging, private};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::ServerArgs;

/// jobpulse: where your long-running jobs are.
#[derive(Debug, Parser)]
#[command(name = "jobpulse", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process with embedded defaults (SQLite + in-process store): API,
    /// dashboard, video and AI workers. Prints the URL and a ready-made token.
    Up {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::up::UpArgs,
    },
    /// Run the HTTP API (stateless; scale by replicas). Needs REDIS_URL or JOBPULSE_REDIS_CLUSTER_NODES.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a job worker: `worker video` (transcoding) or `worker ai` (tool jobs).
    Worker {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::worker::WorkerArgs,
    },
    /// Print a signed access token for a tenant/user/role (and nothing else) on stdout.
    Token {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::token::TokenArgs,
    },
    /// Upload a video or submit an excel import through the API (optionally --watch it).
    Submit(commands::submit::SubmitArgs),
    /// Follow a video or job with a progress bar until it ends.
    Watch(commands::watch::WatchArgs),
    /// Apply the database schema (DATABASE_URL, or the embedded SQLite file in the data dir).
    Migrate {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Rebuild the Redis read model from the database (idempotent, safe while workers run).
    Repair {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::admin::RepairArgs,
    },
    /// Manage tenants.
    Tenant {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::admin::TenantArgs,
    },
    /// Manage a tenant's webhook endpoints: `webhook add|list|remove|deliveries`.
    Webhook {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::webhook::WebhookArgs,
    },
    /// Media storage: `storage check` verifies access and the bucket's CORS rule.
    Storage {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: commands::storage::StorageArgs,
    },
    /// Print the effective configuration: every setting with its value and where it came
    /// from (flag, env, file, default), secrets redacted. The output is a valid config file.
    Config {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the OpenAPI document (what `/api/openapi.json` serves) without starting a server.
    Openapi,
    /// Print a shell completion script, e.g. `jobpulse completions bash > /etc/bash_completion.d/jobpulse`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The server settings of a server command; `None` for the client and offline commands.
    fn server_mut(&mut self) -> Option<&mut ServerArgs> {
        match self {
            Command::Up { server, .. }
            | Command::Serve { server }
            | Command::Worker { server, .. }
            | Command::Token { server, .. }
            | Command::Migrate { server }
            | Command::Repair { server, .. }
            | Command::Tenant { server, .. }
            | Command::Webhook { server, .. }
            | Command::Storage { server, .. }
            | Command::Config { server } => Some(server),
            Command::Submit(_)
            | Command::Watch(_)
            | Command::Openapi
            | Command::Completions { .. } => None,
        }
    }
}

/// Parses the command line; server settings learn which values came from the environment.
fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let (Some(server), Some((_, sub))) = (cli.command.server_mut(), matches.subcommand()) {
        server.record_sources(sub);
    }
    cli
}

fn main() -> std::process::ExitCode {
    let mut cli = parse();
    if matches!(cli.command, Command::Openapi) {
        // Needs no configuration, runtime or service: the document is compiled in.
        return commands::admin::openapi();
    }
    if let Command::Completions { shell } = cli.command {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "jobpulse", &mut out);
        logging::stdout_bytes(&out);
        return std::process::ExitCode::SUCCESS;
    }
    let settings = match cli
        .command
        .server_mut()
        .map(|s| config::Settings::resolve(s))
    {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            logging::stderr_line(format_args!("error: {e:#}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    if let (Command::Config { .. }, Some(s)) = (&cli.command, &settings) {
        logging::stdout_bytes(s.report().as_bytes());
        return std::process::ExitCode::SUCCESS;
    }
    // Kept until `main` returns: dropping it flushes the queued log lines.
    let _log = logging::init(
        settings.as_ref().map(|s| s.log_format).unwrap_or_default(),
        true,
    );
    if matches!(
        cli.command,
        Command::Up { .. } | Command::Serve { .. } | Command::Worker { .. }
    ) {
        // Before anything records a metric: what is recorded earlier is lost.
        jobpulse_api::metrics::install();
    }
    if matches!(
        cli.command,
        Command::Up { .. }
            | Command::Serve { .. }
            | Command::Worker { .. }
            | Command::Migrate { .. }
            | Command::Repair { .. }
            | Command::Tenant { .. }
            | Command::Webhook { .. }
            | Command::Token { .. }
    ) {
        // Before any file is created: the data dir's files are private (`private`).
        private::restrict_umask();
    }
    let runtime = match jobpulse_cli::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut settings = settings;
    let mut take = move || {
        settings
            .take()
            .ok_or_else(|| anyhow::anyhow!("this command has no server settings"))
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up { args, .. } => commands::up::run(take()?, args).await,
            Command::Serve { .. } => commands::serve::run(take()?).await,
            Command::Worker { args, .. } => commands::worker::run(take()?, args).await,
            Command::Token { args, .. } => commands::token::run(take()?, args),
            Command::Submit(args) => commands::submit::run(args).await,
            Command::Watch(args) => commands::watch::run(args).await,
            Command::Migrate { .. } => commands::admin::migrate(take()?).await,
            Command::Repair { args, .. } => commands::admin::repair(take()?, args).await,
            Command::Tenant { args, .. } => commands::admin::tenant(take()?, args).await,
            Command::Webhook { args, .. } => commands::webhook::run(take()?, args).await,
            Command::Storage { args, .. } => {
                if commands::storage::run(take()?, args).await? {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "the storage check found problems (see above)"
                    ))
                }
            }
            Command::Config { .. } | Command::Openapi | Command::Completions { .. } => Ok(()),
        }
    });
    // Tasks still running (a blocking task in the middle of a file, say) do not hold the exit:
    // the commands have already waited, bounded, for what they own.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    jobpulse_cli::exit_code(result)
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
