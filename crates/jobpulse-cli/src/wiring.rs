//! Building the long-lived parts from settings: database, read model, media storage.

use std::sync::Arc;

use anyhow::Context;
use jobpulse_api::auth::Verifier;
use jobpulse_api::signing::MediaSigner;
use jobpulse_api::state::{AppState, Limits};
use jobpulse_db::{CredentialSeal, Db};
use jobpulse_domain::keys::KeySpace;
use jobpulse_media::storage::{S3Options, StorageUrl};
use jobpulse_media::{MediaStorage, Toolchain};
use jobpulse_store::{MemoryStore, RedisOptions, RedisStore, RedisTarget, SharedStore};
use jobpulse_sync::Relay;
use jobpulse_worker::ai::{HandlerSettings, Registry};

use crate::config::Settings;

/// The database URL: `DATABASE_URL`, else the embedded SQLite file in the data dir.
pub fn database_url(settings: &Settings) -> anyhow::Result<String> {
    if let Some(url) = &settings.database_url {
        return Ok(url.clone());
    }
    crate::config::ensure_dir(&settings.data_dir, "data dir")?;
    let path = settings.data_dir.join("jobpulse.db");
    Ok(format!("sqlite://{}", path.display()))
}

/// Connects to the database and applies migrations.
pub async fn database(settings: &Settings) -> anyhow::Result<Db> {
    let url = database_url(settings)?;
    let db = Db::connect(&url)
        .await
        .with_context(|| format!("connecting to the database ({})", redact(&url)))?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// What a process does with the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUse {
    /// Answers polls (`serve`, `up`): reads are cached, kept exact by the change feed.
    Serve,
    /// Writes and repairs (workers, admin commands): no cache.
    Write,
}

/// The read model: Redis when `REDIS_URL` (one server) or `JOBPULSE_REDIS_CLUSTER_NODES` (a
/// cluster) is set; the in-process store only when allowed.
pub async fn store(
    settings: &Settings,
    allow_memory: bool,
    usage: StoreUse,
) -> anyhow::Result<SharedStore> {
    match settings.redis_target() {
        Some(target) => {
            let keys = KeySpace::new(&settings.key_prefix).context("--key-prefix")?;
            let config = match usage {
                StoreUse::Serve => settings.serving_store_config(),
                StoreUse::Write => settings.store_config(),
            };
            let what = match &target {
                RedisTarget::Single(url) => format!("Redis ({})", redact(url)),
                RedisTarget::Cluster(nodes) => {
                    format!("the Redis Cluster ({})", redact(&nodes.join(",")))
                }
            };
            let store = RedisStore::connect_to(&target, keys, config, RedisOptions::default())
                .await
                .with_context(|| format!("connecting to {what}"))?;
            Ok(Arc::new(store))
        }
        None if allow_memory => Ok(Arc::new(MemoryStore::new(settings.store_config()))),
        None => anyhow::bail!(
            "this command needs REDIS_URL or JOBPULSE_REDIS_CLUSTER_NODES (the shared read \
             model); the in-process store only exists inside `jobpulse up`"
        ),
    }
}

/// Media storage: `--storage-url` / `JOBPULSE_STORAGE_URL` (`file:///path` or
/// `s3://bucket[/prefix]` with the standard `AWS_*` variables), else the local directory
/// `<data dir>/media`. Nothing is contacted here (`jobpulse storage check` does).
pub fn media(settings: &Settings) -> anyhow::Result<MediaStorage> {
    match &settings.storage_url {
        Some(url) => {
            let parsed = StorageUrl::parse(url)
                .with_context(|| format!("opening media storage {}", redact(url)))?;
            let s3 = match &parsed {
                StorageUrl::S3 { .. } => settings.s3_options()?,
                StorageUrl::File(root) => {
                    crate::private::dir(root, "media dir")?;
                    S3Options::default()
                }
            };
            MediaStorage::open(&parsed, &s3)
                .with_context(|| format!("opening media storage {}", redact(url)))
        }
        None => {
            let dir = settings.data_dir.join("media");
            crate::private::dir(&dir, "media dir")?;
            MediaStorage::local(&dir)
                .with_context(|| format!("opening media storage at {}", dir.display()))
        }
    }
}

/// ffmpeg/ffprobe, or a clear warning when they are missing.
pub fn toolchain(settings: &Settings) -> Option<Toolchain> {
    match settings.toolchain() {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "video transcoding is unavailable");
            None
        }
    }
}

/// The key signing media URLs: `JOBPULSE_MEDIA_SECRET`, else derived from the HS256 secret,
/// else random for this process (URLs then only work against this process).
pub fn signer(settings: &Settings) -> MediaSigner {
    if let Some(secret) = &settings.media_secret {
        return MediaSigner::derived(secret.as_bytes());
    }
    if let Some(secret) = settings.hs256_secret.as_deref() {
        return MediaSigner::derived(secret.as_bytes());
    }
    tracing::warn!(
        "no JOBPULSE_MEDIA_SECRET and no HS256 secret: media URLs are signed with a random key \
         and only work against this process"
    );
    let key: [u8; 32] = rand::random();
    MediaSigner::new(&key)
}

/// The job handlers this build runs.
pub fn registry(settings: &Settings) -> Registry {
    let mut handlers = HandlerSettings::default();
    if let Some(seal) = credential_seal(settings) {
        handlers.excel_import.seal = seal;
    }
    handlers.excel_import.credentials_retention = settings.credentials_retention.0;
    Registry::standard(handlers)
}

/// The key sealing initial passwords at rest (`jobpulse_db::sealed`):
/// `JOBPULSE_CREDENTIALS_KEY`, else derived from the HS256 secret; `None` without either (a
/// public-key deployment must set the key, the same for the API and the AI workers).
pub fn credential_seal(settings: &Settings) -> Option<CredentialSeal> {
    let secret = settings
        .credentials_key
        .as_deref()
        .or(settings.hs256_secret.as_deref())
        .or(settings.jwt_secret.as_deref())?;
    Some(CredentialSeal::derived(secret.as_bytes()))
}

/// Warns when media links would travel over plain http to another host: the front end's
/// Content-Security-Policy allows only https media, and an https page cannot load http media.
fn warn_if_insecure(public_url: &str) {
    let Ok(url) = url::Url::parse(public_url) else {
        return;
    };
    let local = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => true,
    };
    if url.scheme() == "http" && !local {
        tracing::warn!(
            public_url,
            "media links (hls_url, thumbnail_url) use plain http: set an https --public-url in \
             production"
        );
    }
}

/// State of the database-backed routes.
pub fn app_state(
    settings: &Settings,
    db: &Db,
    store: &SharedStore,
    relay: &Relay,
    verifier: &Arc<Verifier>,
) -> anyhow::Result<AppState> {
    let public_url = settings.public_base();
    warn_if_insecure(&public_url);
    let limits = Limits {
        submits: jobpulse_api::rate::RateLimit {
            per_minute: settings.submit_rate_per_minute,
            burst: settings.submit_burst,
        },
        probes: jobpulse_api::probe_pool::ProbeLimits {
            running: settings.upload_probes,
            waiting: settings.upload_probe_queue,
            ..Limits::default().probes
        },
        spool: jobpulse_api::spool::SpoolLimits {
            max_bytes: settings.spool_max_bytes,
            min_free_bytes: settings.spool_min_free_bytes,
        },
        media: settings.media_limits(),
        webhook_allow: settings.webhook_allow_hosts.list(),
        ..Limits::default()
    };
    Ok(AppState {
        db: db.clone(),
        store: store.clone(),
        relay: relay.clone(),
        storage: media(settings)?,
        auth: verifier.clone(),
        signer: signer(settings),
        toolchain: toolchain(settings),
        catalog: Arc::new(crate::catalog::RegistryCatalog(registry(settings))),
        credentials: credential_seal(settings),
        submit_rate: jobpulse_api::rate::UserRate::new(limits.submits, "job submits"),
        probes: jobpulse_api::probe_pool::ProbePool::new(limits.probes),
        spool: jobpulse_api::spool::SpoolBudget::new(limits.spool),
        limits,
        spool_dir: settings.data_dir.join("spool"),
        public_url,
    })
}

/// How often abandoned direct uploads are looked for.
const UPLOAD_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts the clean-up of direct uploads never completed within `--upload-retention`
/// (object, multipart upload, video row); it stops with `shutdown`.
pub fn sweep_abandoned_uploads(
    settings: &Settings,
    app: &AppState,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    jobpulse_api::routes::direct_upload::spawn_sweeper(
        app.clone(),
        settings.upload_retention.0,
        UPLOAD_SWEEP_EVERY,
        shutdown.clone(),
    );
}

/// A URL (or a comma-separated list of them, such as Redis Cluster seed nodes) without its
/// password, for messages.
pub fn redact(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            super::redact("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            super::redact("redis://:pw@a:7000, redis://u:pw@b:7001"),
            "redis://:***@a:7000, redis://u:***@b:7001"
        );
    }
}
