//! `jobpulse token`: mint a signed access token so a person can call the API by hand.

use clap::Args;
use jobpulse_api::auth::{TokenSpec, Verifier, parse_ttl};
use jobpulse_domain::TenantId;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The tenant the token is for (`tenant_id` claim).
    #[arg(long)]
    tenant_id: i64,
    /// The tenant's code (`tenant_code` claim), checked against `X-Tenant-Code` when sent.
    #[arg(long)]
    tenant_code: Option<String>,
    /// The user (`user_id` claim).
    #[arg(long)]
    user_id: Option<String>,
    /// The role claim: owner, admin, teacher and staff are staff; student and parent are not.
    #[arg(
        long,
        default_value = "staff",
        value_parser = ["owner", "admin", "teacher", "staff", "student", "parent"]
    )]
    role: String,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// A worker token (aud "worker") for the ingest routes instead of a browser token.
    #[arg(long)]
    worker: bool,
}

pub fn run(mut settings: Settings, args: TokenArgs) -> anyhow::Result<()> {
    let tenant = TenantId::new(args.tenant_id).map_err(|e| anyhow::anyhow!("--tenant-id: {e}"))?;
    let ttl_secs = parse_ttl(&args.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let verifier = Verifier::new(settings.auth(false)?);
    let token = verifier
        .mint(&TokenSpec {
            tenant,
            tenant_code: args.tenant_code,
            user_id: args.user_id,
            role: Some(args.role),
            ttl_secs,
            worker: args.worker,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    #[allow(clippy::print_stdout)] // The token is this command's output.
    {
        println!("{token}");
    }
    Ok(())
}
