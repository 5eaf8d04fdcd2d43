//! A small HTTP client for the CLI commands (`submit`, `watch`): the same public API a browser
//! uses, with the same token, over http:// or https:// (rustls; the system's roots plus
//! `--ca-cert`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server base URL (http:// or https://).
    #[arg(
        long,
        visible_alias = "api-url",
        env = "JOBPULSE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// PEM file of the certificate authority (or authorities) that signed the server's
    /// certificate, trusted in addition to the system's roots.
    #[arg(long, env = "JOBPULSE_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Access token (`jobpulse up` prints one; `jobpulse token` mints one).
    #[arg(long, env = "JOBPULSE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON lines instead of progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// When watching: give up (non-zero exit) when the server still knows nothing about the
    /// task after this long, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", global = true)]
    pub give_up_after: crate::config::Dur,
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
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .with_context(|| {
                    format!("--ca-cert {}: no PEM certificate in it", path.display())
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().context("building the HTTP client")?;
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

    /// A transport error in words: a certificate the client does not trust says so (and how to
    /// trust it) instead of reqwest's "error sending request".
    pub fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let mut chain = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            chain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate")
            || lower.contains("invalidcert")
            || lower.contains("unknownissuer")
        {
            anyhow::anyhow!(
                "cannot reach {}: the server's TLS certificate is not trusted{chain} (pass the \
                 PEM of the CA that signed it with --ca-cert)",
                self.base
            )
        } else {
            anyhow::anyhow!("cannot reach {}{chain}", self.base)
        }
    }

    /// Sends and turns a non-2xx answer into an error carrying the server's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let res = req.send().await.map_err(|e| self.transport_error(e))?;
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
