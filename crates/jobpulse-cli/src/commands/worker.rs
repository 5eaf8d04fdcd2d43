//! `jobpulse worker video|ai`: job runners against the shared database and read model.

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::app::{Role, Stack};
use crate::config::Settings;
use crate::wiring;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Video,
    Ai,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Which queue to work: video (transcoding) or ai (tool jobs).
    kind: Kind,
}

/// A small listener with `/metrics` and `/healthz` for a process without the API.
async fn serve_metrics(
    bind: std::net::IpAddr,
    port: u16,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let handle = jobpulse_api::metrics::install()
        .ok_or_else(|| anyhow::anyhow!("the metrics recorder could not be installed"))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = jobpulse_api::metrics::render(&handle);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("cannot listen on {bind}:{port} for --metrics-port"))?;
    tracing::info!(addr = %listener.local_addr()?, "worker metrics listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

pub async fn run(settings: Settings, args: WorkerArgs) -> anyhow::Result<()> {
    if settings.database_url.is_none() || settings.redis_target().is_none() {
        anyhow::bail!(
            "`jobpulse worker` needs DATABASE_URL and REDIS_URL or JOBPULSE_REDIS_CLUSTER_NODES \
             (shared with the API); \
             for an all-in-one run use `jobpulse up`"
        );
    }
    // Work files (and, with file storage there, media) live in the data dir.
    crate::private::secure_data_dir(&settings)?;
    let mut stack = Stack::open(settings, Role::Worker).await?;
    let storage = wiring::media(&stack.settings)?;
    if let Some(port) = stack.settings.metrics_port {
        serve_metrics(stack.settings.bind, port, stack.shutdown.clone()).await?;
    }
    stack.start_services();
    match args.kind {
        Kind::Video => {
            let toolchain = wiring::toolchain(&stack.settings).ok_or_else(|| {
                anyhow::anyhow!(
                    "ffmpeg and ffprobe are needed by the video worker: install them (e.g. \
                     apt-get install ffmpeg) or set JOBPULSE_FFMPEG / JOBPULSE_FFPROBE"
                )
            })?;
            stack
                .video_worker(toolchain, storage)?
                .run(stack.shutdown.clone())
                .await?;
        }
        Kind::Ai => {
            if wiring::credential_seal(&stack.settings).is_none() {
                anyhow::bail!(
                    "the AI worker seals the initial passwords of imports: set \
                     JOBPULSE_CREDENTIALS_KEY (the same as the API's), or JOBPULSE_JWT_SECRET \
                     to derive it from"
                );
            }
            stack.ai_worker(storage)?.run(stack.shutdown.clone()).await;
        }
    }
    stack.stop().await;
    Ok(())
}
