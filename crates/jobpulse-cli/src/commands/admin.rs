//! Operations commands: `migrate`, `repair`, `tenant add`, `openapi`.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::wiring;

/// `jobpulse migrate`: applies the schema to DATABASE_URL (or the embedded SQLite file).
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let url = wiring::database_url(&settings)?;
    let db = wiring::database(&settings).await?;
    db.check_writable().await.with_context(|| {
        format!(
            "the schema of {} is up to date, but the database is read-only: jobpulse cannot run \
             on it",
            wiring::redact(&url)
        )
    })?;
    crate::logging::stderr_line(format_args!(
        "the schema of {} is up to date (every migration applied)",
        wiring::redact(&url)
    ));
    Ok(())
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Only terminal records updated within this window (e.g. 30d); live ones always.
    #[arg(long)]
    retention: Option<String>,
}

/// `jobpulse repair`: rebuilds the Redis read model from the database.
pub async fn repair(settings: Settings, args: RepairArgs) -> anyhow::Result<()> {
    let retention = args
        .retention
        .as_deref()
        .map(|s| jobpulse_api::auth::parse_ttl(s).map(std::time::Duration::from_secs))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--retention: {e}"))?
        .or(settings.terminal_retention.map(|d| d.0));
    let db = wiring::database(&settings).await?;
    let store = wiring::store(&settings, false, wiring::StoreUse::Write).await?;
    let report = jobpulse_sync::repair(&db, store.as_ref(), retention)
        .await
        .context("repairing the read model")?;
    #[allow(clippy::print_stdout)] // The report is this command's output.
    {
        println!(
            "{}",
            serde_json::json!({
                "videos": report.videos, "jobs": report.jobs, "tombstones": report.tombstones,
                "applied": report.applied, "stale": report.stale, "rejected": report.rejected,
            })
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    cmd: TenantCmd,
}

#[derive(Debug, Subcommand)]
enum TenantCmd {
    /// Creates a tenant with one lecture and one session; prints their ids as JSON.
    Add {
        /// Short unique code of the tenant (the `tenant_code` claim of its tokens).
        #[arg(long)]
        code: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

pub async fn tenant(settings: Settings, args: TenantArgs) -> anyhow::Result<()> {
    let db = wiring::database(&settings).await?;
    match args.cmd {
        TenantCmd::Add { code, name } => {
            let seed = db
                .create_tenant(&code, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            #[allow(clippy::print_stdout)] // The ids are this command's output.
            {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant_id": seed.tenant_id.get(),
                        "lecture_id": seed.lecture_id,
                        "session_id": seed.session_id,
                    })
                );
            }
        }
    }
    Ok(())
}

/// `jobpulse openapi`: the OpenAPI document on stdout (the JS client's types are generated from
/// it, see `clients/js`).
pub fn openapi() -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth a panic: report it through the exit code.
    match writeln!(out, "{}", jobpulse_api::openapi::document()).and_then(|()| out.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
