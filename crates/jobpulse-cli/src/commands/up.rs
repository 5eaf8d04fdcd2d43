//! `jobpulse up`: everything in one process with embedded defaults — SQLite file + in-process
//! read model, the API with the dashboard, a video worker, an AI worker and the outbox relay.
//! No services needed. Prints the URL and a ready-made token.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jobpulse_api::auth::{TokenSpec, Verifier};
use jobpulse_db::DbError;
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig};
use jobpulse_worker::video::pipeline::PipelineContext;
use jobpulse_worker::video::{VideoWorker, VideoWorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{http, logging, services, wiring};

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

pub async fn run(mut settings: Settings, args: UpArgs) -> anyhow::Result<()> {
    crate::private::secure_data_dir(&settings)?;
    // One `up` per data dir: two would each hold an in-process read model over one SQLite file.
    let _lock = lock_data_dir(&settings.data_dir)?;
    let db = wiring::database(&settings).await?;
    let tenant = match db.ensure_demo_tenant().await {
        Ok(seed) => Some(seed),
        Err(DbError::Conflict(why)) => {
            tracing::info!(%why, "no demo tenant created (the database has other tenants)");
            None
        }
        Err(e) => return Err(e).context("creating the demo tenant"),
    };
    let store = wiring::store(&settings, true, wiring::StoreUse::Serve).await?;
    // An in-process read model starts empty: rebuild it from the database.
    let report = jobpulse_db::repair(
        &db,
        store.as_ref(),
        settings.terminal_retention.map(|d| d.0),
    )
    .await
    .context("rebuilding the read model")?;
    tracing::info!(
        videos = report.videos,
        jobs = report.jobs,
        "read model rebuilt"
    );
    let verifier = Arc::new(Verifier::new(settings.auth(true)?));
    let shutdown = CancellationToken::new();
    http::cancel_on_signal(&shutdown);
    let bg = services::start(&settings, &db, &store, &shutdown);
    let app = wiring::app_state(&settings, &db, &store, &bg.relay, &verifier)?;
    wiring::sweep_abandoned_uploads(&settings, &app, &shutdown);
    let storage = app.storage.clone();
    let toolchain = app.toolchain.clone();
    let server = http::bind(
        &settings,
        &store,
        &verifier,
        Some(bg.on_miss.clone()),
        Some(&db),
        Some(app),
        if toolchain.is_some() {
            http::Transcoding::Here
        } else {
            http::Transcoding::Missing
        },
        &shutdown,
    )
    .await?;

    let mut workers = tokio::task::JoinSet::new();
    match toolchain {
        Some(toolchain) => {
            let ctx = PipelineContext {
                toolchain,
                storage: storage.clone(),
                work_root: settings.data_dir.join("work"),
                options: settings.transcode_options(),
                limits: settings.media_limits(),
            };
            let mut config = VideoWorkerConfig::new(settings.data_dir.join("work"));
            config.caps.per_tenant = settings.tenant_caps().video;
            if let Some(c) = settings.concurrency {
                config.concurrency = c;
            }
            if let Some(lease) = settings.lease {
                config = config.with_lease(lease.0);
            }
            let worker = VideoWorker::new(db.clone(), store.clone(), bg.relay.clone(), ctx, config);
            let token = shutdown.clone();
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
    let ai = AiWorker::new(
        db.clone(),
        store.clone(),
        storage,
        wiring::registry(&settings),
        {
            let mut config = AiWorkerConfig {
                credentials_retention: settings.credentials_retention.0,
                input_retention: settings.job_input_retention.0,
                ..AiWorkerConfig::default()
            };
            config.caps.per_tenant = settings.tenant_caps().ai;
            if let Some(c) = settings.concurrency {
                config.concurrency = c;
            }
            if let Some(lease) = settings.lease {
                config = config.with_lease(lease.0);
            }
            config
        },
    );
    workers.spawn(ai.run(shutdown.clone()));

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
            format!("  data:       {}", settings.data_dir.display()),
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
    server.run_until_stopped(shutdown.clone()).await?;
    shutdown.cancel();
    let stop = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(15), stop)
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop within 15 s");
    }
    services::drain(bg.tasks).await;
    Ok(())
}
