//! `jobpulse storage check`: can this process reach the configured media storage, and may the
//! front end's origins upload to it and play from it?
//!
//! Writes, reads back and deletes a probe object; on S3 also reads the bucket's CORS rules and
//! evaluates them for `--cors-origins` (any origin when none are configured), printing the rule
//! to set when something is missing. Exits non-zero unless everything is fine.

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::wiring;

#[derive(Debug, Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    cmd: StorageCmd,
}

#[derive(Debug, Subcommand)]
enum StorageCmd {
    /// Verify access to the media storage and (on S3) the bucket's CORS rule for the
    /// configured origins; prints the rule to set when it is missing.
    Check,
}

/// Runs the subcommand; `Ok(false)` when the check found a problem (the report says which).
pub async fn run(settings: Settings, args: StorageArgs) -> anyhow::Result<bool> {
    match args.cmd {
        StorageCmd::Check => {
            let storage = wiring::media(&settings)?;
            let origins = settings.cors_origins.0.clone().unwrap_or_default();
            let report = storage.check(&origins).await;
            #[allow(clippy::print_stdout)] // The report is this command's output.
            {
                print!("{report}");
            }
            Ok(report.is_ok())
        }
    }
}
