//! `jobpulse serve`: the API alone, stateless, against Redis (and the database when configured).

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jobpulse_api::auth::Verifier;
use jobpulse_api::{Application, HttpConfig, Parts, ReadState, RouterConfig};
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisStore, SharedStore};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub async fn run(settings: Settings, _args: ServeArgs) -> anyhow::Result<()> {
    let Some(redis_url) = settings.redis_url.clone() else {
        anyhow::bail!(
            "`jobpulse serve` needs REDIS_URL (the shared read model); \
             for an all-in-one run without services use `jobpulse up`"
        );
    };
    let keys = KeySpace::new(&settings.key_prefix).context("--key-prefix")?;
    let store: SharedStore = Arc::new(
        RedisStore::connect(&redis_url, keys, settings.store_config())
            .await
            .context("connecting to Redis")?,
    );
    let verifier = Arc::new(Verifier::new(settings.auth(false)?));
    let read = ReadState::new(store.clone(), verifier);
    let ops = jobpulse_api::ops_state(store.clone(), Vec::new());
    let router = jobpulse_api::router(
        Parts {
            read,
            ops,
            long_running: None,
            extra: None,
            app: None,
        },
        &RouterConfig {
            cors: settings.cors(),
            ..RouterConfig::default()
        },
    );
    let app = Application::bind(
        HttpConfig {
            bind: settings.bind,
            port: settings.port,
            ..HttpConfig::default()
        },
        router,
    )
    .await
    .with_context(|| format!("binding {}:{}", settings.bind, settings.port))?;
    tracing::info!(addr = %app.local_addr(), store = "redis", "jobpulse serve listening");
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        jobpulse_api::shutdown_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    app.run_until_stopped(stop).await?;
    Ok(())
}
