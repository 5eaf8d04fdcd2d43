//! `jobpulse up`: everything in one process with embedded defaults — SQLite file + in-process
//! read model, the API with the dashboard, a video worker, an AI worker and the outbox relay.
//! No services needed. Prints the URL and a ready-made token.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jobpulse_api::Transcoding;
use jobpulse_api::auth::{TokenSpec, Verifier};
use jobpulse_db::DbError;

use crate::app::{Role, Stack};
use crate::config::Settings;
use crate::logging;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Lifetime of the printed token.
    #[arg(long, default_value = "30d")]
    token_ttl: String,
}

/// Holds an exclusive lock on `<data dir>/jobpulse.lock` for as long as the file is open (the
/// OS releases it when the process ends, however it ends).
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("jobpulse.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `jobpulse up` is running on the data dir {} (it holds {}); stop it, or \
             give this one its own --data-dir",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

pub async fn run(settings: Settings, args: UpArgs) -> anyhow::Result<()> {
    crate::private::secure_data_dir(&settings)?;
    // One `up` per data dir: two would each hold an in-process read model over one SQLite file.
    let _lock = lock_data_dir(&settings.data_dir)?;
    let mut stack = Stack::open(settings, Role::Up).await?;
    let db = stack.db.clone().context("`up` has a database")?;
    let tenant = match db.ensure_demo_tenant().await {
        Ok(seed) => Some(seed),
        Err(DbError::Conflict(why)) => {
            tracing::info!(%why, "no demo tenant created (the database has other tenants)");
            None
        }
        Err(e) => return Err(e).context("creating the demo tenant"),
    };
    // An in-process read model starts empty: rebuild it from the database.
    let report = jobpulse_sync::repair(
        &db,
        stack.store.as_ref(),
        stack.settings.terminal_retention.map(|d| d.0),
    )
    .await
    .context("rebuilding the read model")?;
    tracing::info!(
        videos = report.videos,
        jobs = report.jobs,
        "read model rebuilt"
    );
    let verifier = Arc::new(Verifier::new(stack.settings.auth(true)?));
    stack.start_services();
    let app = stack.app_state(&verifier)?.context("`up` has a database")?;
    let storage = app.storage.clone();
    let toolchain = app.toolchain.clone();
    let transcoding = if toolchain.is_some() {
        Transcoding::Here
    } else {
        Transcoding::Missing
    };
    let server = stack
        .application(verifier.clone(), Some(app), transcoding)
        .await?;

    let mut workers = tokio::task::JoinSet::new();
    match toolchain {
        Some(toolchain) => {
            let worker = stack.video_worker(toolchain, storage.clone())?;
            let token = stack.shutdown.clone();
            workers.spawn(async move {
                if let Err(e) = worker.run(token).await {
                    tracing::error!(error = %e, "video worker stopped");
                }
            });
        }
        None => logging::stderr_line(format_args!(
            "warning: ffmpeg/ffprobe not found — video uploads are refused (503) and /readyz \
             reports it until ffmpeg is installed (apt-get install ffmpeg, or JOBPULSE_FFMPEG / \
             JOBPULSE_FFPROBE) and jobpulse restarted; excel imports work."
        )),
    }
    workers.spawn(stack.ai_worker(storage)?.run(stack.shutdown.clone()));

    let addr = server.local_addr();
    let base = format!("http://{addr}");
    if let Some(seed) = tenant {
        let ttl = jobpulse_api::auth::parse_ttl(&args.token_ttl)
            .map_err(|e| anyhow::anyhow!("--token-ttl: {e}"))?;
        let token = verifier
            .mint(&TokenSpec {
                tenant: seed.tenant_id,
                tenant_code: Some(jobpulse_db::DEMO_TENANT_CODE.into()),
                user_id: Some("1".into()),
                role: Some("owner".into()),
                ttl_secs: ttl,
                worker: false,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The URL and token are this command's output. Written without `println!`: a closed
        // stdout (`jobpulse up | head -1`) must not stop the server.
        let lines = [
            "jobpulse is up — API, dashboard and workers in one process".to_owned(),
            format!("  data:       {}", stack.settings.data_dir.display()),
            format!("  dashboard:  {base}/#token={token}"),
            format!("  API:        {base}/api/openapi.json  (the OpenAPI document of every route)"),
            format!(
                "  tenant:     demo (id {}), lecture {}, session {}",
                seed.tenant_id, seed.lecture_id, seed.session_id
            ),
            format!("  token:      export JOBPULSE_TOKEN={token}"),
            format!(
                "  try:        curl -H \"Authorization: Bearer $JOBPULSE_TOKEN\" -F file=@clip.mp4 {base}/api/v1/media/videos/"
            ),
            "Ctrl-C stops.".to_owned(),
        ];
        for line in lines {
            logging::stdout_line(format_args!("{line}"));
        }
    } else {
        logging::stdout_line(format_args!(
            "jobpulse is up at {base} (mint a token with `jobpulse token`)"
        ));
    }
    server.run_until_stopped(stack.shutdown.clone()).await?;
    stack.shutdown.cancel();
    let stop = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(15), stop)
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop within 15 s");
    }
    stack.stop().await;
    Ok(())
}
