//! Test fixtures: a fresh database per test on either backend, the in-process store fed by the
//! real relay, a fault injector around that store, and read-model comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use jobpulse_db::{Backoff, Db, DbOptions, QueueConfig, Video};
use jobpulse_domain::{Outcome, TaskId, TaskKey, TenantId, VideoId, Write, WriteKind};
use jobpulse_store::{
    ChangesSince, Epoch, MemoryStore, SharedStore, Snapshot, StatusStore, StoreError, Subscription,
};
use jobpulse_sync::Relay;

/// Which database a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs one async test body (`async fn name(b: Backend) -> anyhow::Result<()>`) on both
/// backends: `name::postgres` and `name::sqlite`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name($crate::helpers::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
        }
    };
}
pub(crate) use both;

/// A migrated database of its own, an in-process read model and the relay between them.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    pub db: Db,
    pub url: String,
    pub store: Arc<FlakyStore>,
    pub memory: Arc<MemoryStore>,
    pub relay: Relay,
    _database: jobpulse_testkit::TestDatabase,
}

pub fn test_options() -> DbOptions {
    DbOptions {
        max_connections: 5,
        acquire_timeout: Duration::from_secs(30),
        busy_timeout: Duration::from_secs(30),
        queue: QueueConfig {
            backoff: Backoff {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(200),
                jitter: 0.0,
            },
            default_max_attempts: 5,
        },
        ..DbOptions::default()
    }
}

/// [`test_options`] with a jitter-free retry backoff of `base`, doubling up to `cap`.
pub fn backoff_options(base: Duration, cap: Duration) -> DbOptions {
    DbOptions {
        queue: QueueConfig {
            backoff: Backoff {
                base,
                cap,
                jitter: 0.0,
            },
            default_max_attempts: 5,
        },
        ..test_options()
    }
}

pub async fn test_db(backend: Backend) -> anyhow::Result<TestDb> {
    test_db_with(backend, test_options()).await
}

pub async fn test_db_with(backend: Backend, options: DbOptions) -> anyhow::Result<TestDb> {
    let database = jobpulse_testkit::TestDatabase::with_options(
        match backend {
            Backend::Postgres => jobpulse_testkit::Backend::Postgres,
            Backend::Sqlite => jobpulse_testkit::Backend::Sqlite,
        },
        options,
    )
    .await?;
    let (db, url) = (database.db.clone(), database.url.clone());
    let memory = Arc::new(MemoryStore::default());
    let store = Arc::new(FlakyStore::new(memory.clone()));
    let relay = Relay::new(db.clone(), store.clone() as SharedStore);
    Ok(TestDb {
        backend,
        db,
        url,
        store,
        memory,
        relay,
        _database: database,
    })
}

impl TestDb {
    pub fn shared_store(&self) -> SharedStore {
        self.store.clone()
    }

    /// Another `Db` handle on the same database (its own pool and wake-up signals), as another
    /// process would have.
    pub async fn second_handle(&self) -> anyhow::Result<Db> {
        Ok(Db::connect_with(&self.url, test_options()).await?)
    }

    /// Runs raw SQL on a connection of its own (for checks the API does not offer).
    pub async fn raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                Ok(sqlx::query(sql).execute(&mut c).await?.rows_affected())
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                Ok(sqlx::query(sql).execute(&mut c).await?.rows_affected())
            }
        }
    }

    /// One integer from raw SQL.
    pub async fn raw_int(&self, sql: &str) -> anyhow::Result<i64> {
        use sqlx::{Connection, Row};
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_one(&mut c)
                    .await?
                    .try_get::<i64, _>(0)?
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_one(&mut c)
                    .await?
                    .try_get::<i64, _>(0)?
            }
        })
    }

    /// Publishes everything pending to the read model.
    pub async fn drain(&self) -> anyhow::Result<()> {
        self.relay.drain().await?;
        let left = self.db.outbox_pending().await?;
        if left != 0 {
            bail!("{left} outbox rows left after a drain");
        }
        Ok(())
    }

    pub async fn snapshot(&self, key: &TaskKey) -> anyhow::Result<Option<Snapshot>> {
        Ok(self.memory.get(key).await?)
    }

    pub async fn video(&self, tenant: TenantId, id: VideoId) -> anyhow::Result<Video> {
        self.db
            .get_video(tenant, id)
            .await?
            .with_context(|| format!("video {id} exists"))
    }
}

pub fn tenant(id: i64) -> TenantId {
    TenantId::new(id).expect("valid tenant id")
}

/// Every way the read model disagrees with the database for `keys` (empty = consistent).
pub async fn mismatches(
    db: &Db,
    store: &dyn StatusStore,
    keys: &[TaskKey],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for key in keys {
        let write = db.current_write(key).await?;
        let snap = store.get(key).await?;
        match (write, snap) {
            (None, _) => out.push(format!("{key}: not in the database")),
            (
                Some(Write {
                    kind: WriteKind::Delete,
                    ..
                }),
                None,
            ) => {}
            (
                Some(Write {
                    kind: WriteKind::Delete,
                    ..
                }),
                Some(s),
            ) => out.push(format!(
                "{key}: deleted but the read model shows {:?}",
                s.state.status
            )),
            (Some(w), None) => out.push(format!("{key}: missing (db fence {})", w.fence)),
            (
                Some(Write {
                    fence,
                    kind: WriteKind::Set(state),
                    ..
                }),
                Some(s),
            ) => {
                // What only the read model adds (the percent held across attempts, the
                // previous attempt) is not in the database (docs/contract.md §3b).
                if s.fence != fence || s.state.as_written() != state {
                    out.push(format!(
                        "{key}: db {fence} {state:?} vs read model {} {:?}",
                        s.fence, s.state
                    ));
                }
            }
            (Some(w), Some(_)) => out.push(format!("{key}: unexpected write kind {:?}", w.kind)),
        }
    }
    Ok(out)
}

/// A fault injector around the real in-process store: while `down` is set every call fails
/// with `Unavailable` (as a Redis outage would); `lose_data` empties the store and makes the
/// next epoch check report the loss (as a restarted Redis would).
#[derive(Debug)]
pub struct FlakyStore {
    inner: Arc<MemoryStore>,
    down: AtomicBool,
    lost: AtomicBool,
}

impl FlakyStore {
    pub fn new(inner: Arc<MemoryStore>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn lose_data(&self) {
        self.inner.clear();
        self.lost.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected outage".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl StatusStore for FlakyStore {
    async fn apply(&self, write: &Write) -> Result<Outcome, StoreError> {
        self.check()?;
        self.inner.apply(write).await
    }

    async fn apply_many(&self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        self.check()?;
        self.inner.apply_many(writes).await
    }

    async fn get(&self, key: &TaskKey) -> Result<Option<Snapshot>, StoreError> {
        self.check()?;
        self.inner.get(key).await
    }

    async fn get_many(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        self.check()?;
        self.inner.get_many(tenant, tasks).await
    }

    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }

    async fn changes_since(
        &self,
        tenant: TenantId,
        cursor: &str,
        limit: usize,
    ) -> Result<ChangesSince, StoreError> {
        self.check()?;
        self.inner.changes_since(tenant, cursor, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }

    async fn check_epoch(&self) -> Result<Epoch, StoreError> {
        self.check()?;
        if self.lost.swap(false, Ordering::SeqCst) {
            return Ok(Epoch::Lost("restarted".into()));
        }
        self.inner.check_epoch().await
    }

    fn backend(&self) -> &'static str {
        "flaky-memory"
    }
}

/// Waits until `cond` holds, polling; fails after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
