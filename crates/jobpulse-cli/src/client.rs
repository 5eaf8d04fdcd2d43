//! A small HTTP client for the CLI commands (`submit`, `watch`): the same public API a browser
//! uses, with the same token.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server base URL.
    #[arg(
        long,
        env = "JOBPULSE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Access token (`jobpulse up` prints one; `jobpulse token` mints one).
    #[arg(long, env = "JOBPULSE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON lines instead of progress bars.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    token: String,
    pub http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: String,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let Some(token) = args.token.clone().filter(|t| !t.trim().is_empty()) else {
            bail!("no token: pass --token or set JOBPULSE_TOKEN (`jobpulse up` prints one)");
        };
        let base = args.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url must start with http:// or https://");
        }
        if base.starts_with("https://") {
            bail!(
                "this build of the CLI speaks plain HTTP only; reach the server through \
                 http:// (e.g. on the same host or through a tunnel)"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base,
            token: token.trim().to_owned(),
            http,
        })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends and turns a non-2xx answer into an error carrying the server's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let text = res.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorEnvelope>(&text)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| text.chars().take(300).collect());
        bail!("server answered {status}: {message}")
    }
}
