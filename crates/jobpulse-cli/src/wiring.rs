//! Building the long-lived parts from settings: database, read model, media storage.

use std::sync::Arc;

use anyhow::Context;
use jobpulse_db::Db;
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{MemoryStore, RedisStore, SharedStore};

use crate::config::Settings;

/// The database URL: `DATABASE_URL`, else the embedded SQLite file in the data dir.
pub fn database_url(settings: &Settings) -> anyhow::Result<String> {
    if let Some(url) = &settings.database_url {
        return Ok(url.clone());
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
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

/// The read model: Redis when `REDIS_URL` is set; the in-process store only when allowed.
pub async fn store(settings: &Settings, allow_memory: bool) -> anyhow::Result<SharedStore> {
    match &settings.redis_url {
        Some(url) => {
            let keys = KeySpace::new(&settings.key_prefix).context("--key-prefix")?;
            let store = RedisStore::connect(url, keys, settings.store_config())
                .await
                .with_context(|| format!("connecting to Redis ({})", redact(url)))?;
            Ok(Arc::new(store))
        }
        None if allow_memory => Ok(Arc::new(MemoryStore::new(settings.store_config()))),
        None => anyhow::bail!(
            "this command needs REDIS_URL (the shared read model); the in-process store only \
             exists inside `jobpulse up`"
        ),
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
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
    }
}
