//! Assembling and binding the HTTP application (shared by `serve` and `up`).

use std::sync::Arc;

use anyhow::Context;
use jobpulse_api::auth::Verifier;
use jobpulse_api::routes::ops::ReadyCheck;
use jobpulse_api::routes::stream::StreamState;
use jobpulse_api::state::AppState;
use jobpulse_api::{Application, HttpConfig, MissHook, Parts, ReadState, RouterConfig};
use jobpulse_db::Db;
use jobpulse_store::SharedStore;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// Streams one process holds per tenant.
pub(crate) const SSE_PER_TENANT: usize = 2_000;

/// Whether this process can transcode the videos it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcoding {
    /// Workers elsewhere transcode (`serve`): nothing to check here.
    Elsewhere,
    /// This process runs a video worker (`up` with ffmpeg).
    Here,
    /// This process is the only worker and has no ffmpeg (`up` without it): video uploads are
    /// refused with 503 and `/readyz` reports the transcoder missing.
    Missing,
}

/// What a client is told when no worker can transcode.
const NO_TRANSCODER: &str = "video transcoding is unavailable: ffmpeg/ffprobe were not found \
     (install ffmpeg, or set JOBPULSE_FFMPEG / JOBPULSE_FFPROBE, and restart jobpulse)";

/// Refuses requests that would queue a transcode (`POST` under `/api/v1/media/`: uploads,
/// direct-upload completions, retries) when nothing can transcode them.
async fn refuse_transcodes(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.method() == axum::http::Method::POST && req.uri().path().starts_with("/api/v1/media/") {
        return jobpulse_api::error::error_response(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            NO_TRANSCODER.to_owned(),
        );
    }
    next.run(req).await
}

/// Builds the router and binds the listener.
#[allow(clippy::too_many_arguments)] // One call per serving command; each part is distinct.
pub async fn bind(
    settings: &Settings,
    store: &SharedStore,
    verifier: &Arc<Verifier>,
    on_miss: Option<MissHook>,
    db: Option<&Db>,
    app: Option<AppState>,
    transcoding: Transcoding,
    shutdown: &CancellationToken,
) -> anyhow::Result<Application> {
    let mut read = ReadState::new(store.clone(), verifier.clone())
        .with_credentials(crate::wiring::credential_seal(settings));
    if let Some(hook) = on_miss {
        read = read.with_miss_hook(hook);
    }
    let mut checks: Vec<(&'static str, ReadyCheck)> = Vec::new();
    if let Some(db) = db {
        let db = db.clone();
        checks.push((
            "database",
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        ));
    }
    if transcoding == Transcoding::Missing {
        checks.push((
            "transcoder",
            Arc::new(|| Box::pin(async { Err(NO_TRANSCODER.to_owned()) })),
        ));
    }
    let ops = jobpulse_api::ops_state(store.clone(), checks);
    // The dashboard's player fetches media from the public URL and, on S3, from the bucket.
    let mut media_origins = Vec::new();
    if let Some(a) = &app {
        media_origins.extend(
            url::Url::parse(&a.public_url)
                .ok()
                .map(|u| u.origin().ascii_serialization()),
        );
        media_origins.extend(a.storage.presign_origin().await);
    }
    spawn_gauges(
        store.clone(),
        db.cloned(),
        settings.tenant_caps(),
        shutdown.clone(),
    );
    let mut stream = StreamState::start(read.clone(), SSE_PER_TENANT, shutdown.clone());
    stream.hub = stream.hub.with_per_user_cap(settings.sse_streams_per_user);
    let router = jobpulse_api::router(
        Parts {
            read,
            ops,
            long_running: Some(jobpulse_api::routes::stream::router(stream)),
            extra: None,
            app,
        },
        &RouterConfig {
            cors: settings.cors(),
            cors_headers: settings.cors_headers.0.clone(),
            media_origins,
            ..RouterConfig::default()
        },
    );
    let router = if transcoding == Transcoding::Missing {
        router.layer(axum::middleware::from_fn(refuse_transcodes))
    } else {
        router
    };
    Application::bind(
        HttpConfig {
            bind: settings.bind,
            port: settings.port,
            ..HttpConfig::default()
        },
        router,
    )
    .await
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (in use? pick another with --port)",
            settings.bind, settings.port
        )
    })
}

/// How often the gauges read from the database (queues, outbox) are refreshed.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes the gauges `/metrics` shows but nothing else updates: whether the read model and
/// the database answer, the queues and the outbox (from the database, when there is one), and
/// the dropped log lines.
fn spawn_gauges(
    store: SharedStore,
    db: Option<Db>,
    tenant_caps: jobpulse_db::TenantCaps,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut failing = false;
        let limit = std::time::Duration::from_secs(5);
        loop {
            metrics::counter!("jobpulse_log_lines_dropped_total")
                .absolute(crate::logging::dropped_lines());
            let store_up = matches!(tokio::time::timeout(limit, store.ping()).await, Ok(Ok(())));
            metrics::gauge!("jobpulse_dependency_up", "dependency" => "read_model")
                .set(if store_up { 1.0 } else { 0.0 });
            if let Some(db) = &db {
                let db_up = matches!(tokio::time::timeout(limit, db.ping()).await, Ok(Ok(())));
                metrics::gauge!("jobpulse_dependency_up", "dependency" => "database")
                    .set(if db_up { 1.0 } else { 0.0 });
                match db.ops_stats().await {
                    Ok(stats) => {
                        jobpulse_api::metrics::record_ops_stats(&stats, tenant_caps);
                        failing = false;
                    }
                    Err(e) => {
                        metrics::counter!("jobpulse_ops_stats_errors_total").increment(1);
                        if !failing {
                            tracing::warn!(error = %e, "reading queue statistics failed");
                            failing = true;
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(GAUGES_EVERY) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        jobpulse_api::shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}
