//! `jobpulse worker video|ai`: job runners against the shared database and read model.

use anyhow::Context;
use clap::{Args, ValueEnum};
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig};
use jobpulse_worker::video::pipeline::PipelineContext;
use jobpulse_worker::video::{VideoWorker, VideoWorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{http, services, wiring};

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
    if settings.database_url.is_none() || settings.redis_url.is_none() {
        anyhow::bail!(
            "`jobpulse worker` needs DATABASE_URL and REDIS_URL (shared with the API); \
             for an all-in-one run use `jobpulse up`"
        );
    }
    let lease = settings.lease.map(|d| d.0);
    // Work files (and, with file storage there, media) live in the data dir.
    crate::private::secure_data_dir(&settings)?;
    let db = wiring::database(&settings).await?;
    let store = wiring::store(&settings, false, wiring::StoreUse::Write).await?;
    let storage = wiring::media(&settings)?;
    let shutdown = CancellationToken::new();
    http::cancel_on_signal(&shutdown);
    if let Some(port) = settings.metrics_port {
        serve_metrics(settings.bind, port, shutdown.clone()).await?;
    }
    let bg = services::start(&settings, &db, &store, &shutdown);
    match args.kind {
        Kind::Video => {
            let toolchain = wiring::toolchain(&settings).ok_or_else(|| {
                anyhow::anyhow!(
                    "ffmpeg and ffprobe are needed by the video worker: install them (e.g. \
                     apt-get install ffmpeg) or set JOBPULSE_FFMPEG / JOBPULSE_FFPROBE"
                )
            })?;
            let mut config = VideoWorkerConfig::new(settings.data_dir.join("work"));
            config.caps.per_tenant = settings.tenant_caps().video;
            if let Some(c) = settings.concurrency {
                config.concurrency = c;
            }
            if let Some(lease) = lease {
                config = config.with_lease(lease);
            }
            let ctx = PipelineContext {
                toolchain,
                storage,
                work_root: settings.data_dir.join("work"),
                options: settings.transcode_options(),
                limits: settings.media_limits(),
            };
            VideoWorker::new(db, store, bg.relay.clone(), ctx, config)
                .run(shutdown.clone())
                .await?;
        }
        Kind::Ai => {
            if wiring::credential_seal(&settings).is_none() {
                anyhow::bail!(
                    "the AI worker seals the initial passwords of imports: set \
                     JOBPULSE_CREDENTIALS_KEY (the same as the API's), or JOBPULSE_JWT_SECRET \
                     to derive it from"
                );
            }
            let mut config = AiWorkerConfig {
                credentials_retention: settings.credentials_retention.0,
                input_retention: settings.job_input_retention.0,
                ..AiWorkerConfig::default()
            };
            config.caps.per_tenant = settings.tenant_caps().ai;
            if let Some(c) = settings.concurrency {
                config.concurrency = c;
            }
            if let Some(lease) = lease {
                config = config.with_lease(lease);
            }
            AiWorker::new(db, store, storage, wiring::registry(&settings), config)
                .run(shutdown.clone())
                .await;
        }
    }
    shutdown.cancel();
    services::drain(bg.tasks).await;
    Ok(())
}
