//! The resolved [`Settings`]: the merged [`Config`] plus what is found at run time (the config
//! file read, the HS256 secret), and what a process builds from them (the token verifier, the
//! store settings, the public URL, CORS, the toolchain).

use std::net::IpAddr;
use std::ops::Deref;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::declare::Source;
use super::file::{generate_secret, load_file};
use super::table::{Config, FileConfig, KEYS, ServerArgs};
use super::values::TenantCap;

/// Resolved settings: the merged [`Config`] (read through `Deref`) plus what is found at run
/// time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// The HS256 secret in use once [`Settings::auth`] resolved it (configured or from the
    /// data dir); `None` with a public key.
    pub hs256_secret: Option<String>,
}

impl Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Settings {
    /// The webhook sender's configuration (`webhook_*` settings).
    pub fn webhook_sender(&self) -> jobpulse_webhooks::SenderConfig {
        let timeout = self.webhook_timeout.0;
        jobpulse_webhooks::SenderConfig {
            schedule: self.webhook_retry_schedule.0.clone(),
            retry_window: self.webhook_retry_window.0,
            timeout,
            // A claim outlives the request it covers (and the DNS check before it, 5 s at most).
            lease: self
                .webhook_lease
                .0
                .max(timeout + std::time::Duration::from_secs(6)),
            allow: self.webhook_allow_hosts.list(),
            ..jobpulse_webhooks::SenderConfig::default()
        }
    }

    /// The shared read model's Redis (`None`: the in-process store).
    pub fn redis_target(&self) -> Option<jobpulse_store::RedisTarget> {
        match (&self.redis_url, &self.redis_cluster_nodes) {
            (Some(url), _) => Some(jobpulse_store::RedisTarget::Single(url.clone())),
            (None, Some(nodes)) => jobpulse_store::RedisTarget::cluster_from_list(nodes).ok(),
            (None, None) => None,
        }
    }

    /// Reads the config file (when one is named), merges and validates.
    pub fn resolve(args: &ServerArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };

        let config = Config::merge(args, file);
        super::validate::validate(&config)?;

        Ok(Settings {
            config,
            config_file: args.config.clone(),
            hs256_secret: None,
        })
    }

    /// `jobpulse config`'s report: every setting as a TOML line with its source, secrets
    /// redacted; unset settings commented out.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if let Some(path) = &self.config_file {
            out.push_str(&format!("# config file: {}\n", path.display()));
        }
        let width = KEYS.iter().map(|k| k.name.len()).max().unwrap_or(0);
        for (key, (name, shown)) in KEYS.iter().zip(self.shown()) {
            let source = self.sources.get(name).copied().unwrap_or(Source::Unset);
            let origin = match source {
                Source::Env => format!("env {}", key.env),
                other => other.to_string(),
            };
            match shown {
                None => out.push_str(&format!("# {name:width$} (unset; env {})\n", key.env)),
                Some(v) => out.push_str(&format!("{name:width$} = {v}  # {origin}\n")),
            }
        }
        out
    }

    /// The per-tenant caps of both queues: each queue's own setting when given (flag, env,
    /// file), else the deprecated `tenant_concurrency` when given, else the default.
    pub fn tenant_caps(&self) -> jobpulse_db::TenantCaps {
        let pick =
            |name: &str, own: TenantCap| match (self.sources.get(name), self.tenant_concurrency) {
                (Some(Source::Default), Some(both)) => both.0,
                _ => own.0,
            };
        jobpulse_db::TenantCaps {
            video: pick("tenant_video_concurrency", self.tenant_video_concurrency),
            ai: pick("tenant_job_concurrency", self.tenant_job_concurrency),
        }
    }

    /// The secret file `jobpulse up` generates in the data dir.
    pub fn secret_file(&self) -> PathBuf {
        self.data_dir.join("jwt-secret")
    }

    /// The token verifier from the configured secret or public key; with `generate`, a missing
    /// secret is created in the data dir (embedded mode) so later runs and `jobpulse token`
    /// agree.
    pub fn auth(&mut self, generate: bool) -> anyhow::Result<jobpulse_api::auth::AuthConfig> {
        use jobpulse_api::auth::AuthConfig;
        let mut cfg = if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the public key {}", path.display()))?;
            let alg = self.jwt_algorithm.as_deref().unwrap_or("RS256");
            AuthConfig::public_key(alg, &pem)?
        } else if let Some(secret) = self.jwt_secret.clone() {
            let cfg = AuthConfig::hs256(secret.as_bytes()).context("JOBPULSE_JWT_SECRET")?;
            self.hs256_secret = Some(secret);
            cfg
        } else {
            let file = self.secret_file();
            let secret = match std::fs::read_to_string(&file) {
                Ok(s) => s.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
                    generate_secret(&file)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "no JWT secret: set JOBPULSE_JWT_SECRET (or --jwt-secret), or point \
                     --data-dir at the directory `jobpulse up` created ({} not found)",
                    file.display()
                ),
                // It exists but cannot be read: say why (permission denied, a directory, …).
                Err(e) => bail!("cannot read the JWT secret {}: {e}", file.display()),
            };
            let cfg = AuthConfig::hs256(secret.as_bytes())
                .with_context(|| format!("the secret in {}", file.display()))?;
            self.hs256_secret = Some(secret);
            cfg
        };
        cfg.audience = self.jwt_audience.clone();
        cfg.issuer = self.jwt_issuer.clone();
        Ok(cfg)
    }

    /// The read cache of a serving process (`entries == 0` is off).
    pub fn read_cache(&self) -> jobpulse_store::ReadCacheConfig {
        jobpulse_store::ReadCacheConfig {
            entries: self.read_cache_entries,
            max_age: self.read_cache_max_age.0,
        }
    }

    /// The store settings of a process that writes (workers, admin commands): no read cache,
    /// so it does not follow every change of every tenant.
    pub fn store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            live_ttl: self.live_ttl.0,
            terminal_retention: self.terminal_retention.map(|d| d.0),
            legacy_read: self.legacy_read.0,
            ..jobpulse_store::StoreConfig::default()
        }
    }

    /// The store settings of a process that answers polls: with the read cache.
    pub fn serving_store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            read_cache: (self.read_cache_entries > 0).then_some(self.read_cache()),
            ..self.store_config()
        }
    }

    /// The API's public base URL: `--public-url`, else `http://<bind>:<port>` (an unspecified
    /// bind address becomes 127.0.0.1).
    pub fn public_base(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.0.clone();
        }
        let host = match self.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{}", self.port)
    }

    pub fn cors(&self) -> jobpulse_api::CorsOrigins {
        match &self.cors_origins.0 {
            Some(list) => jobpulse_api::CorsOrigins::List(list.clone()),
            None => jobpulse_api::CorsOrigins::Any,
        }
    }

    /// ffmpeg/ffprobe from the settings, else from PATH, with the memory budget.
    pub fn toolchain(&self) -> Result<jobpulse_media::Toolchain, jobpulse_media::MediaError> {
        jobpulse_media::Toolchain::detect_from(
            self.ffmpeg.clone().map(Into::into),
            self.ffprobe.clone().map(Into::into),
            std::env::var_os("PATH"),
        )
        .map(|t| t.with_memory_limit(Some(self.ffmpeg_memory_limit)))
    }
}
