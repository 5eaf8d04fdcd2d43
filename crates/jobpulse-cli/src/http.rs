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

/// Builds the router and binds the listener.
pub async fn bind(
    settings: &Settings,
    store: &SharedStore,
    verifier: &Arc<Verifier>,
    on_miss: Option<MissHook>,
    db: Option<&Db>,
    app: Option<AppState>,
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
    let ops = jobpulse_api::ops_state(store.clone(), checks);
    let stream = StreamState::start(read.clone(), SSE_PER_TENANT, shutdown.clone());
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
            ..RouterConfig::default()
        },
    );
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

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        jobpulse_api::shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}
