//! `jobpulse serve`: the API alone — stateless, scale by replicas. Needs Redis; with a database
//! configured it also serves the media/job routes and runs the relay and the reconciler.

use std::sync::Arc;

use jobpulse_api::auth::Verifier;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{http, services, wiring};

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    if settings.redis_url.is_none() {
        anyhow::bail!(
            "`jobpulse serve` needs REDIS_URL (the shared read model); \
             for an all-in-one run without services use `jobpulse up`"
        );
    }
    let store = wiring::store(&settings, false, wiring::StoreUse::Serve).await?;
    let verifier = Arc::new(Verifier::new(settings.auth(false)?));
    let shutdown = CancellationToken::new();
    http::cancel_on_signal(&shutdown);
    let (db, background, app) = match &settings.database_url {
        Some(_) => {
            // The upload spool lives in the data dir.
            crate::private::secure_data_dir(&settings)?;
            let db = wiring::database(&settings).await?;
            let bg = services::start(&settings, &db, &store, &shutdown);
            let app = wiring::app_state(&settings, &db, &store, &bg.relay, &verifier)?;
            wiring::sweep_abandoned_uploads(&settings, &app, &shutdown);
            tracing::info!(storage = app.storage.describe(), public_url = %app.public_url, "media storage");
            (Some(db), Some(bg), Some(app))
        }
        None => {
            tracing::info!(
                "no DATABASE_URL: serving progress reads only (media and job routes are off)"
            );
            (None, None, None)
        }
    };
    let on_miss = background.as_ref().map(|b| b.on_miss.clone());
    let server = http::bind(
        &settings,
        &store,
        &verifier,
        on_miss,
        db.as_ref(),
        app,
        http::Transcoding::Elsewhere,
        &shutdown,
    )
    .await?;
    tracing::info!(addr = %server.local_addr(), database = db.is_some(), "jobpulse serve listening");
    server.run_until_stopped(shutdown.clone()).await?;
    shutdown.cancel();
    if let Some(bg) = background {
        services::drain(bg.tasks).await;
    }
    Ok(())
}
