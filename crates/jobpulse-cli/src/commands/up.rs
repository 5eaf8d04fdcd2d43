//! `jobpulse up`: everything in one process with embedded defaults — SQLite file + in-process
//! read model, the API with the dashboard, a video worker, an AI worker and the outbox relay.
//! No services needed. Prints the URL and a ready-made token.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jobpulse_api::auth::{TokenSpec, Verifier};
use jobpulse_db::DbError;
use jobpulse_media::TranscodeOptions;
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig};
use jobpulse_worker::video::pipeline::PipelineContext;
use jobpulse_worker::video::{VideoWorker, VideoWorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{http, services, wiring};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Lifetime of the printed token.
    #[arg(long, default_value = "30d")]
    token_ttl: String,
}

pub async fn run(mut settings: Settings, args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
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
    let report = jobpulse_db::repair(&db, store.as_ref(), settings.terminal_retention)
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
    let storage = app.storage.clone();
    let toolchain = app.toolchain.clone();
    let server = http::bind(
        &settings,
        &store,
        &verifier,
        Some(bg.on_miss.clone()),
        Some(&db),
        Some(app),
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
                options: TranscodeOptions::default(),
            };
            let worker = VideoWorker::new(
                db.clone(),
                store.clone(),
                bg.relay.clone(),
                ctx,
                VideoWorkerConfig::new(settings.data_dir.join("work")),
            );
            let token = shutdown.clone();
            workers.spawn(async move {
                if let Err(e) = worker.run(token).await {
                    tracing::error!(error = %e, "video worker stopped");
                }
            });
        }
        None => eprintln!(
            "warning: ffmpeg/ffprobe not found — uploads are accepted and queued, but no video \
             is transcoded until ffmpeg is installed (apt-get install ffmpeg) and jobpulse \
             restarted."
        ),
    }
    let ai = AiWorker::new(
        db.clone(),
        store.clone(),
        storage,
        wiring::registry(&settings),
        AiWorkerConfig {
            credentials_retention: settings.credentials_retention,
            ..AiWorkerConfig::default()
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
        #[allow(clippy::print_stdout)] // The URL and token are this command's output.
        {
            println!("jobpulse is up — API, dashboard and workers in one process");
            println!("  data:       {}", settings.data_dir.display());
            println!("  dashboard:  {base}/#token={token}");
            println!("  API:        {base}/api/v1/  (OpenAPI: {base}/api/openapi.json)");
            println!(
                "  tenant:     demo (id {}), lecture {}, session {}",
                seed.tenant_id, seed.lecture_id, seed.session_id
            );
            println!("  token:      export JOBPULSE_TOKEN={token}");
            println!(
                "  try:        curl -H \"Authorization: Bearer $JOBPULSE_TOKEN\" -F file=@clip.mp4 {base}/api/v1/media/videos/"
            );
            println!("Ctrl-C stops.");
        }
    } else {
        #[allow(clippy::print_stdout)]
        {
            println!("jobpulse is up at {base} (mint a token with `jobpulse token`)");
        }
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
