//! `jobpulse webhook add|list|remove|deliveries`: a tenant's webhook endpoints, straight in the
//! database (like `tenant add`); JSON on stdout. `add` applies the same URL check as the API
//! (SSRF rule, `webhook_allow_hosts`) and prints the signing secret (shown this once).

use clap::{Args, Subcommand};
use jobpulse_db::WebhookEvent;
use jobpulse_domain::TenantId;

use crate::config::Settings;
use crate::wiring;

#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    cmd: WebhookCmd,
}

#[derive(Debug, Subcommand)]
enum WebhookCmd {
    /// Registers an endpoint; prints it with its secret (whsec_…) as JSON.
    Add {
        /// The tenant whose endpoints these are (its numeric id).
        #[arg(long)]
        tenant_id: i64,
        /// http(s) URL the deliveries are POSTed to.
        #[arg(long)]
        url: String,
        /// An event to send (repeatable): video.ready, video.failed, video.retry_wait,
        /// job.done, job.failed, job.retrying.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
    },
    /// Lists the tenant's endpoints as JSON (without secrets).
    List {
        /// The tenant whose endpoints these are (its numeric id).
        #[arg(long)]
        tenant_id: i64,
    },
    /// Removes an endpoint; its pending deliveries go dead ("endpoint removed").
    Remove {
        /// The tenant whose endpoints these are (its numeric id).
        #[arg(long)]
        tenant_id: i64,
        /// The endpoint id (ep_…).
        id: String,
    },
    /// Lists an endpoint's latest deliveries with their attempts as JSON.
    Deliveries {
        /// The tenant whose endpoints these are (its numeric id).
        #[arg(long)]
        tenant_id: i64,
        /// The endpoint id (ep_…).
        id: String,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn tenant(id: i64) -> anyhow::Result<TenantId> {
    TenantId::new(id).map_err(|e| anyhow::anyhow!("--tenant-id: {e}"))
}

#[allow(clippy::print_stdout)] // The JSON is this command's output.
fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

pub async fn run(settings: Settings, args: WebhookArgs) -> anyhow::Result<()> {
    let db = wiring::database(&settings).await?;
    let err = |e: jobpulse_db::DbError| anyhow::anyhow!("{e}");
    match args.cmd {
        WebhookCmd::Add {
            tenant_id,
            url,
            events,
        } => {
            let events = events
                .iter()
                .map(|n| {
                    WebhookEvent::parse(n).ok_or_else(|| {
                        let known: Vec<&str> =
                            WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                        anyhow::anyhow!("unknown event {n:?}; known: {}", known.join(", "))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            jobpulse_webhooks::check_url(&url, &settings.webhook_allow_hosts.list())
                .await
                .map_err(|e| anyhow::anyhow!("--url: {e}"))?;
            let created = db
                .create_webhook_endpoint(tenant(tenant_id)?, &url, &events)
                .await
                .map_err(err)?;
            print(&created)
        }
        WebhookCmd::List { tenant_id } => {
            let list = db
                .list_webhook_endpoints(tenant(tenant_id)?)
                .await
                .map_err(err)?;
            print(&list)
        }
        WebhookCmd::Remove { tenant_id, id } => {
            db.remove_webhook_endpoint(tenant(tenant_id)?, &id)
                .await
                .map_err(err)?;
            print(&serde_json::json!({ "removed": id }))
        }
        WebhookCmd::Deliveries {
            tenant_id,
            id,
            limit,
        } => {
            let page = db
                .webhook_deliveries(tenant(tenant_id)?, &id, None, limit)
                .await
                .map_err(err)?;
            print(&page)
        }
    }
}
