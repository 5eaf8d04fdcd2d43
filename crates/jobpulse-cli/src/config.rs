//! Configuration: flags override environment, environment overrides a config file
//! (CONTRACT.md §6). clap reads flags and environment; [`FileConfig`] fills what both left
//! unset; defaults come last.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Settings shared by the long-running commands. Every field is optional here; see
/// [`Settings::resolve`] for the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "JOBPULSE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL or SQLite URL (postgres://… or sqlite://…).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Redis URL; absent means the in-process store (only valid for `up`).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// HS256 secret (at least 32 bytes).
    #[arg(
        long,
        env = "JOBPULSE_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key file to verify tokens with instead of a secret.
    #[arg(long, env = "JOBPULSE_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of the public key: RS256, ES256 or EdDSA.
    #[arg(long, env = "JOBPULSE_JWT_ALGORITHM", global = true)]
    pub jwt_algorithm: Option<String>,
    /// Required `aud` of browser tokens.
    #[arg(long, env = "JOBPULSE_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// Required `iss` of every token.
    #[arg(long, env = "JOBPULSE_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Where embedded data lives (SQLite file, media, generated secret).
    #[arg(long, env = "JOBPULSE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Port of the HTTP listener (default 8080; 0 picks a free one).
    #[arg(long, env = "JOBPULSE_PORT", global = true)]
    pub port: Option<u16>,
    /// Address of the HTTP listener (default 127.0.0.1; 0.0.0.0 for every interface).
    #[arg(long, env = "JOBPULSE_BIND", global = true)]
    pub bind: Option<IpAddr>,
    /// Comma-separated browser origins allowed by CORS; `*` (default) allows any.
    #[arg(long, env = "JOBPULSE_CORS_ORIGINS", global = true)]
    pub cors_origins: Option<String>,
    /// Comma-separated request headers CORS allows beyond the built-in list (Authorization,
    /// Content-Type, X-Client, X-Client-Version, X-Tenant-Code, If-None-Match, Last-Event-ID,
    /// Idempotency-Key).
    #[arg(long, env = "JOBPULSE_CORS_HEADERS", global = true)]
    pub cors_headers: Option<String>,
    /// Media storage: file:///absolute/path or s3://bucket[/prefix] (S3 settings from the
    /// AWS_* variables); default file://<data dir>/media.
    #[arg(long, env = "JOBPULSE_STORAGE_URL", global = true)]
    pub storage_url: Option<String>,
    /// The API's public base URL as browsers reach it, e.g. https://api.example.com (absolute
    /// upload and media URLs start with it); default http://<bind>:<port>.
    #[arg(long, env = "JOBPULSE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// How long a direct upload may stay unfinished (PENDING) before its object, multipart
    /// upload and video are removed, e.g. 24h (the default).
    #[arg(long, env = "JOBPULSE_UPLOAD_RETENTION", global = true)]
    pub upload_retention: Option<String>,
    /// Prefix of every Redis key (lets several deployments or tests share one Redis).
    #[arg(long, env = "JOBPULSE_KEY_PREFIX", global = true)]
    pub key_prefix: Option<String>,
    /// Sliding TTL of in-progress records, e.g. 6h.
    #[arg(long, env = "JOBPULSE_LIVE_TTL", global = true)]
    pub live_ttl: Option<String>,
    /// Optional bound on how long terminal records stay in the read model, e.g. 30d.
    #[arg(long, env = "JOBPULSE_TERMINAL_RETENTION", global = true)]
    pub terminal_retention: Option<String>,
    /// Also read the old system's `tenant:{tid}:…:status|progress` keys on a miss.
    #[arg(long, env = "JOBPULSE_LEGACY_READ", global = true)]
    pub legacy_read: Option<bool>,
    /// Entries of the API's in-process read cache, kept exact by the change feed (0 turns it
    /// off; default 100000).
    #[arg(long, env = "JOBPULSE_READ_CACHE_ENTRIES", global = true)]
    pub read_cache_entries: Option<usize>,
    /// Longest a cached read is served before Redis is asked again, e.g. 60s (the default).
    #[arg(long, env = "JOBPULSE_READ_CACHE_MAX_AGE", global = true)]
    pub read_cache_max_age: Option<String>,
    /// How long workers keep the initial passwords of a finished import for staff to
    /// download, e.g. 7d (the default); `off` keeps them.
    #[arg(long, env = "JOBPULSE_CREDENTIALS_RETENTION", global = true)]
    pub credentials_retention: Option<String>,
    /// Key for signed media URLs (shared by all API replicas); default: derived from the
    /// HS256 secret.
    #[arg(
        long,
        env = "JOBPULSE_MEDIA_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub media_secret: Option<String>,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line).
    #[arg(long, env = "JOBPULSE_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<crate::logging::LogFormat>,
    /// Key sealing the initial passwords of imports at rest (shared by the API and the AI
    /// workers, any length ≥ 32 bytes); default: derived from the HS256 secret.
    #[arg(
        long,
        env = "JOBPULSE_CREDENTIALS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub credentials_key: Option<String>,
}

/// The same settings from a TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_algorithm: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub cors_origins: Option<String>,
    pub cors_headers: Option<String>,
    pub storage_url: Option<String>,
    pub public_url: Option<String>,
    pub upload_retention: Option<String>,
    pub key_prefix: Option<String>,
    pub live_ttl: Option<String>,
    pub terminal_retention: Option<String>,
    pub legacy_read: Option<bool>,
    pub read_cache_entries: Option<usize>,
    pub read_cache_max_age: Option<String>,
    pub credentials_retention: Option<String>,
    pub media_secret: Option<String>,
    pub log_format: Option<crate::logging::LogFormat>,
    pub credentials_key: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_algorithm: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub bind: IpAddr,
    pub cors_origins: Option<Vec<String>>,
    /// Extra request headers allowed by CORS.
    pub cors_headers: Vec<String>,
    /// `None`: file storage under `<data dir>/media`.
    pub storage_url: Option<String>,
    /// `None`: derived from the listen address ([`Settings::public_base`]).
    pub public_url: Option<String>,
    /// How long a PENDING upload may stay unfinished.
    pub upload_retention: Duration,
    pub key_prefix: String,
    pub live_ttl: Duration,
    pub terminal_retention: Option<Duration>,
    pub legacy_read: bool,
    /// The API's read cache (see `jobpulse_store::ReadCacheConfig`); `entries == 0` is off.
    pub read_cache: jobpulse_store::ReadCacheConfig,
    /// How long initial passwords of finished imports are kept (`None`: forever).
    pub credentials_retention: Option<Duration>,
    pub media_secret: Option<String>,
    /// Key sealing initial passwords (see `wiring::credential_seal`).
    pub credentials_key: Option<String>,
    /// The HS256 secret in use once [`Settings::auth`] resolved it (configured or from the
    /// data dir); `None` with a public key.
    pub hs256_secret: Option<String>,
    pub log_format: crate::logging::LogFormat,
}

/// How long a direct upload may stay PENDING by default.
pub const DEFAULT_UPLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// An absolute `http(s)://host[:port][/path]` without query or fragment; returned without a
/// trailing `/`.
fn check_public_url(u: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(u.trim())
        .map_err(|e| anyhow::anyhow!("public_url: {u:?} is not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
    {
        bail!(
            "public_url: {u:?} must be http(s)://host[:port][/path] without query or credentials"
        );
    }
    Ok(u.trim().trim_end_matches('/').to_owned())
}

fn duration(s: &str, what: &str) -> anyhow::Result<Duration> {
    jobpulse_api::auth::parse_ttl(s)
        .map(Duration::from_secs)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

impl Settings {
    pub fn resolve(args: &CommonArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($f:ident) => {
                args.$f.clone().or(file.$f.clone())
            };
        }
        let cors = pick!(cors_origins).filter(|s| s.trim() != "*").map(|s| {
            s.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        });
        let cors_headers = match pick!(cors_headers) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| {
                    axum::http::HeaderName::from_bytes(h.as_bytes())
                        .map(|n| n.as_str().to_owned())
                        .map_err(|_| anyhow::anyhow!("cors_headers: {h:?} is not a header name"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        let public_url = pick!(public_url)
            .map(|u| check_public_url(&u))
            .transpose()?;
        let upload_retention = pick!(upload_retention)
            .map(|s| duration(&s, "upload_retention"))
            .transpose()?
            .unwrap_or(DEFAULT_UPLOAD_RETENTION);
        if upload_retention < Duration::from_secs(3 * 3600) {
            bail!(
                "upload_retention: at least 3h (upload URLs live 2 h; an upload still running \
                 must not be removed)"
            );
        }
        Ok(Settings {
            database_url: pick!(database_url),
            redis_url: pick!(redis_url),
            jwt_secret: pick!(jwt_secret),
            jwt_public_key: pick!(jwt_public_key),
            jwt_algorithm: pick!(jwt_algorithm),
            jwt_audience: pick!(jwt_audience),
            jwt_issuer: pick!(jwt_issuer),
            data_dir: pick!(data_dir).unwrap_or_else(|| PathBuf::from("./jobpulse-data")),
            port: pick!(port).unwrap_or(8080),
            bind: pick!(bind).unwrap_or(IpAddr::from([127, 0, 0, 1])),
            cors_origins: cors,
            cors_headers,
            storage_url: pick!(storage_url),
            public_url,
            upload_retention,
            key_prefix: pick!(key_prefix).unwrap_or_else(|| "jp".into()),
            live_ttl: pick!(live_ttl)
                .map(|s| duration(&s, "live_ttl"))
                .transpose()?
                .unwrap_or(Duration::from_secs(6 * 3600)),
            terminal_retention: pick!(terminal_retention)
                .map(|s| duration(&s, "terminal_retention"))
                .transpose()?,
            legacy_read: pick!(legacy_read).unwrap_or(false),
            read_cache: jobpulse_store::ReadCacheConfig {
                entries: pick!(read_cache_entries)
                    .unwrap_or(jobpulse_store::ReadCacheConfig::default().entries),
                max_age: pick!(read_cache_max_age)
                    .map(|s| duration(&s, "read_cache_max_age"))
                    .transpose()?
                    .unwrap_or(jobpulse_store::ReadCacheConfig::default().max_age),
            },
            credentials_retention: match pick!(credentials_retention) {
                Some(s) if s.trim().eq_ignore_ascii_case("off") => None,
                Some(s) => Some(duration(&s, "credentials_retention")?),
                None => Some(jobpulse_worker::ai::DEFAULT_CREDENTIALS_RETENTION),
            },
            media_secret: pick!(media_secret),
            credentials_key: pick!(credentials_key),
            hs256_secret: None,
            log_format: pick!(log_format).unwrap_or_default(),
        })
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
        } else if let Some(secret) = &self.jwt_secret {
            self.hs256_secret = Some(secret.clone());
            AuthConfig::hs256(secret.as_bytes()).context("JOBPULSE_JWT_SECRET")?
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

    /// The store settings of a process that writes (workers, admin commands): no read cache,
    /// so it does not follow every change of every tenant.
    pub fn store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            live_ttl: self.live_ttl,
            terminal_retention: self.terminal_retention,
            legacy_read: self.legacy_read,
            ..jobpulse_store::StoreConfig::default()
        }
    }

    /// The store settings of a process that answers polls: with the read cache.
    pub fn serving_store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            read_cache: (self.read_cache.entries > 0).then_some(self.read_cache),
            ..self.store_config()
        }
    }

    /// The API's public base URL: `--public-url`, else `http://<bind>:<port>` (an unspecified
    /// bind address becomes 127.0.0.1).
    pub fn public_base(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
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
        match &self.cors_origins {
            Some(list) => jobpulse_api::CorsOrigins::List(list.clone()),
            None => jobpulse_api::CorsOrigins::Any,
        }
    }
}

/// Creates `dir` if needed; a path that exists but is not a directory is an error that says so
/// (rather than the OS's "File exists").
pub fn ensure_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("the {what} {} exists but is not a directory", dir.display()),
        Err(_) => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the {what} {}", dir.display())),
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn generate_secret(file: &Path) -> anyhow::Result<String> {
    use rand::RngExt;
    if let Some(dir) = file.parent() {
        ensure_dir(dir, "data dir")?;
    }
    let mut rng = rand::rng();
    let secret: String = (0..48)
        .map(|_| {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            char::from(CHARS[rng.random_range(0..CHARS.len())])
        })
        .collect();
    write_private(file, &secret)?;
    Ok(secret)
}

fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(f: impl FnOnce(&mut CommonArgs)) -> anyhow::Result<Settings> {
        let mut args = CommonArgs::default();
        f(&mut args);
        Settings::resolve(&args)
    }

    #[test]
    fn upload_settings_default_and_validate() -> anyhow::Result<()> {
        let s = resolve(|_| {})?;
        assert_eq!(s.public_base(), "http://127.0.0.1:8080");
        assert_eq!(s.upload_retention, DEFAULT_UPLOAD_RETENTION);
        assert!(s.storage_url.is_none() && s.cors_headers.is_empty());

        let s = resolve(|a| {
            a.bind = Some("0.0.0.0".parse().expect("ip"));
            a.port = Some(9000);
            a.cors_headers = Some(" X-Request-Trace , x-other ".into());
        })?;
        assert_eq!(s.public_base(), "http://127.0.0.1:9000");
        assert_eq!(s.cors_headers, ["x-request-trace", "x-other"]);

        let s = resolve(|a| a.public_url = Some("https://api.example.com/jp/".into()))?;
        assert_eq!(s.public_base(), "https://api.example.com/jp");

        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://u:p@x",
        ] {
            assert!(
                resolve(|a| a.public_url = Some(bad.into())).is_err(),
                "{bad} must be refused"
            );
        }
        assert!(resolve(|a| a.cors_headers = Some("bad header".into())).is_err());
        assert!(resolve(|a| a.upload_retention = Some("1h".into())).is_err());
        assert_eq!(
            resolve(|a| a.upload_retention = Some("2d".into()))?.upload_retention,
            Duration::from_secs(2 * 86_400)
        );
        Ok(())
    }
}
