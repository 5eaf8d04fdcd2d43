//! `jobpulse serve`: the API alone — stateless, scale by replicas. Needs Redis; with a database
//! configured it also serves the media/job routes and runs the relay and the reconciler.

use std::sync::Arc;

use jobpulse_api::Transcoding;
use jobpulse_api::auth::Verifier;

use crate::app::{Role, Stack};
use crate::config::Settings;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    if settings.redis_target().is_none() {
        anyhow::bail!(
            "`jobpulse serve` needs REDIS_URL or JOBPULSE_REDIS_CLUSTER_NODES (the shared read \
             model); \
             for an all-in-one run without services use `jobpulse up`"
        );
    }
    if settings.database_url.is_some() {
        // The upload spool lives in the data dir.
        crate::private::secure_data_dir(&settings)?;
    }
    let mut stack = Stack::open(settings, Role::Serve).await?;
    let verifier = Arc::new(Verifier::new(stack.settings.auth(false)?));
    stack.start_services();
    let app = stack.app_state(&verifier)?;
    match &app {
        Some(app) => {
            tracing::info!(storage = app.storage.describe(), public_url = %app.public_url, "media storage");
        }
        None => tracing::info!(
            "no DATABASE_URL: serving progress reads only (media and job routes are off)"
        ),
    }
    let server = stack
        .application(verifier, app, Transcoding::Elsewhere)
        .await?;
    tracing::info!(addr = %server.local_addr(), database = stack.db.is_some(), "jobpulse serve listening");
    server.run_until_stopped(stack.shutdown.clone()).await?;
    stack.stop().await;
    Ok(())
}
