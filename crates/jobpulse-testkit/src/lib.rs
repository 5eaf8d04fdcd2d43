//! Test support shared by jobpulse's integration tests (a dev-dependency only).
//!
//! - [`TestDatabase`]: a migrated database of the test's own — a fresh PostgreSQL database
//!   (`CREATE DATABASE jp_<random>`, dropped when the guard drops, even after a panic) or a
//!   SQLite file in a temp dir — so tests run in parallel.
//! - [`TestRedis`]: a Redis read model under a random key prefix.
//! - [`both!`]: runs one async test body on both backends.
//! - [`cluster::OwnCluster`]: a Redis Cluster of the test's own, to kill nodes in.
//! - [`seed`](mod@seed): replayable randomness — every randomized test's seed comes from
//!   `JOBPULSE_TEST_SEED` or is drawn and printed with the command that replays it.
//!
//! Services come from `JOBPULSE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `JOBPULSE_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). A missing service fails the test with a message saying so.

use std::sync::Arc;

pub mod cluster;
pub mod seed;

pub use seed::{proptest_config, seed};

use anyhow::Context;
use jobpulse_db::{Db, DbOptions};
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisStore, StoreConfig};

/// Which database and read model a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL + Redis (production).
    Postgres,
    /// SQLite + the in-process store (embedded mode).
    Sqlite,
}

/// Runs `async fn name(b: Backend) -> anyhow::Result<()>` as `name::postgres` and
/// `name::sqlite`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name($crate::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::Backend::Sqlite).await
            }
        }
    };
}

pub fn admin_url() -> String {
    std::env::var("JOBPULSE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("JOBPULSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

#[derive(Debug)]
enum Guard {
    /// A database created on the server of `admin` (a connection URL to its `postgres` db).
    Postgres {
        name: String,
        admin: String,
    },
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { name, admin } = self {
            let (name, admin) = (name.clone(), admin.clone());
            // On a thread of its own: the test's runtime may be shutting down.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

/// A migrated database of the test's own; dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    pub backend: Backend,
    pub db: Db,
    pub url: String,
    _guard: Guard,
}

/// Small pools: many tests share one PostgreSQL server.
pub fn test_options() -> DbOptions {
    DbOptions {
        max_connections: 5,
        ..DbOptions::default()
    }
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> anyhow::Result<TestDatabase> {
        Self::with_options(backend, test_options()).await
    }

    pub async fn with_options(
        backend: Backend,
        options: DbOptions,
    ) -> anyhow::Result<TestDatabase> {
        Self::create(backend, &admin_url(), options).await
    }

    /// A fresh database on the PostgreSQL server `admin` connects to (e.g. a server the test
    /// started itself, to restart it).
    pub async fn on_server(admin: &str) -> anyhow::Result<TestDatabase> {
        Self::create(Backend::Postgres, admin, test_options()).await
    }

    async fn create(
        backend: Backend,
        admin: &str,
        options: DbOptions,
    ) -> anyhow::Result<TestDatabase> {
        let (url, guard) = match backend {
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = admin.to_owned();
                let mut c = sqlx::PgConnection::connect(&admin).await.with_context(|| {
                    format!(
                        "PostgreSQL is not reachable at {admin}; start it (scripts/test does) \
                         or set JOBPULSE_TEST_DATABASE_URL"
                    )
                })?;
                let name = format!("jp_{:016x}", rand::random::<u64>());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut c)
                    .await
                    .context("CREATE DATABASE")?;
                c.close().await?;
                (
                    with_database(&admin, &name),
                    Guard::Postgres { name, admin },
                )
            }
            Backend::Sqlite => {
                let dir = tempfile::TempDir::new()?;
                let url = format!("sqlite://{}/jobpulse.db", dir.path().display());
                (url, Guard::Sqlite(dir))
            }
        };
        let db = Db::connect_with(&url, options)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        db.migrate().await.context("migrating")?;
        Ok(TestDatabase {
            backend,
            db,
            url,
            _guard: guard,
        })
    }
}

/// A random key prefix for one test.
pub fn unique_prefix() -> String {
    format!("t-{:016x}", rand::random::<u64>())
}

/// Deletes every key under a prefix when dropped (terminal records have no TTL, so a test that
/// did not clean up would leave them in the shared Redis for good).
#[derive(Debug)]
struct RedisGuard {
    prefix: String,
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut con) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(&mut con)
                .map(|it| it.filter_map(Result::ok).collect())
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut con);
            }
        })
        .join();
    }
}

/// A Redis read model under a key prefix of its own, whose keys are deleted with it.
#[derive(Debug)]
pub struct TestRedis {
    pub store: Arc<RedisStore>,
    pub keys: KeySpace,
    _guard: RedisGuard,
}

impl TestRedis {
    pub async fn new(config: StoreConfig) -> anyhow::Result<TestRedis> {
        let keys = KeySpace::new(&unique_prefix()).context("prefix")?;
        Self::with_keys(keys, config).await
    }

    pub async fn with_keys(keys: KeySpace, config: StoreConfig) -> anyhow::Result<TestRedis> {
        let url = redis_url();
        let guard = RedisGuard {
            prefix: keys.prefix().to_owned(),
        };
        let store = RedisStore::connect(&url, keys.clone(), config)
            .await
            .with_context(|| {
                format!(
                    "Redis is not reachable at {url}; start it (scripts/test does) or set \
                     JOBPULSE_TEST_REDIS_URL"
                )
            })?;
        Ok(TestRedis {
            store: Arc::new(store),
            keys,
            _guard: guard,
        })
    }
}

/// The read model that goes with a backend — Redis for PostgreSQL, in-process for SQLite —
/// and the guard that cleans the Redis keys up (keep it alive as long as the store).
pub async fn store_for(
    backend: Backend,
) -> anyhow::Result<(jobpulse_store::SharedStore, Option<TestRedis>)> {
    Ok(match backend {
        Backend::Postgres => {
            let r = TestRedis::new(StoreConfig::default()).await?;
            (r.store.clone(), Some(r))
        }
        Backend::Sqlite => (Arc::new(jobpulse_store::MemoryStore::default()), None),
    })
}
