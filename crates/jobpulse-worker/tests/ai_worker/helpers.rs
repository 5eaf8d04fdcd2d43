//! Test fixtures: a fresh database per test with its read model — PostgreSQL with the Redis store
//! under a key prefix of its own, or SQLite with the in-process store — local media storage,
//! a tenant, and helpers to submit jobs, run workers and watch what a client would see.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use jobpulse_db::{Backoff, Db, DbOptions, NewAiJob, QueueConfig, TenantSeed};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{JobId, JobStatus, JobType, State, Status, TaskKey, TenantId};
use jobpulse_media::{MediaStorage, StorageKey};
use jobpulse_store::{MemoryStore, RedisStore, SharedStore, StoreConfig, Subscription};
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig, HandlerSettings, Registry};
use jobpulse_worker::claim_loop::WorkerConfig;
use tokio::sync::broadcast::error::RecvError;

/// Which database and read model a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL + the Redis store (the production pairing).
    PgRedis,
    /// SQLite + the in-process store (`jobpulse up`).
    SqliteMemory,
}

/// Runs one async test body (`async fn name(b: Backend) -> anyhow::Result<()>`) on both
/// pairings: `name::pg_redis` and `name::sqlite_memory`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg_redis() -> anyhow::Result<()> {
                super::$name($crate::helpers::Backend::PgRedis).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() -> anyhow::Result<()> {
                super::$name($crate::helpers::Backend::SqliteMemory).await
            }
        }
    };
}
pub(crate) use both;

fn redis_url() -> String {
    jobpulse_testkit::redis_url()
}

/// One test's world.
#[derive(Debug)]
pub struct Env {
    pub backend: Backend,
    pub db: Db,
    pub url: String,
    pub store: SharedStore,
    redis: Option<Arc<RedisStore>>,
    redis_keys: Option<KeySpace>,
    pub storage: MediaStorage,
    pub seed: TenantSeed,
    /// The key the standard handlers seal initial passwords with (`env.registry()`).
    pub seal: jobpulse_db::CredentialSeal,
    _dir: tempfile::TempDir,
    // Dropped with the test: its database and its Redis keys go too.
    _database: jobpulse_testkit::TestDatabase,
    _redis: Option<jobpulse_testkit::TestRedis>,
}

pub fn db_options() -> DbOptions {
    DbOptions {
        max_connections: 8,
        acquire_timeout: Duration::from_secs(30),
        busy_timeout: Duration::from_secs(30),
        queue: QueueConfig {
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_millis(300),
                jitter: 0.0,
            },
            default_max_attempts: 5,
        },
        ..DbOptions::default()
    }
}

impl Env {
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::TempDir::new()?;
        let database = jobpulse_testkit::TestDatabase::with_options(
            match backend {
                Backend::PgRedis => jobpulse_testkit::Backend::Postgres,
                Backend::SqliteMemory => jobpulse_testkit::Backend::Sqlite,
            },
            db_options(),
        )
        .await?;
        let (db, url) = (database.db.clone(), database.url.clone());
        let (store, redis, redis_keys, test_redis): (SharedStore, _, _, _) = match backend {
            Backend::PgRedis => {
                let keys = KeySpace::new(&format!("t-ai-{:016x}", rand::random::<u64>()))?;
                let r =
                    jobpulse_testkit::TestRedis::with_keys(keys.clone(), StoreConfig::default())
                        .await?;
                (
                    r.store.clone() as SharedStore,
                    Some(r.store.clone()),
                    Some(keys),
                    Some(r),
                )
            }
            Backend::SqliteMemory => (
                Arc::new(MemoryStore::default()) as SharedStore,
                None,
                None,
                None,
            ),
        };
        let storage = MediaStorage::local(dir.path().join("media"))?;
        let seed = db.create_tenant("academy", "Academy").await?;
        Ok(Self {
            backend,
            db,
            url,
            store,
            redis,
            redis_keys,
            storage,
            seed,
            seal: jobpulse_db::CredentialSeal::random(),
            _dir: dir,
            _database: database,
            _redis: test_redis,
        })
    }

    pub fn tenant(&self) -> TenantId {
        self.seed.tenant_id
    }

    /// Worker settings scaled down for tests. The lease is long — a worker that cannot confirm
    /// it in time rightly gives its job up, and on a loaded machine the database took longer
    /// than a 6 s lease (an import ran its steps three times over in a CI run); tests about
    /// leases set a short one — while heartbeats go every 2 s, so a cancel is seen as soon.
    pub fn config(&self, id: &str) -> AiWorkerConfig {
        let mut config = AiWorkerConfig::default().with_lease(Duration::from_secs(30));
        config.common = WorkerConfig {
            worker_id: id.to_owned(),
            idle_wait: Duration::from_millis(200),
            reap_every: Duration::from_millis(200),
            progress_every: Duration::from_millis(50),
            heartbeat_every: Duration::from_secs(2),
            ..config.common
        };
        config
    }

    pub fn worker(&self, registry: Registry, config: AiWorkerConfig) -> AiWorker {
        AiWorker::new(
            self.db.clone(),
            self.store.clone(),
            jobpulse_sync::Relay::new(self.db.clone(), self.store.clone()),
            self.storage.clone(),
            registry,
            config,
        )
    }

    /// The standard handlers, sealing with this env's key.
    pub fn registry(&self) -> Registry {
        let mut settings = HandlerSettings::default();
        settings.excel_import.seal = self.seal.clone();
        Registry::standard(settings)
    }

    /// A worker with the standard handlers.
    pub fn standard_worker(&self, id: &str) -> AiWorker {
        self.worker(self.registry(), self.config(id))
    }

    /// A storage key for an upload (the object need not exist yet).
    pub fn upload_key(&self) -> anyhow::Result<StorageKey> {
        Ok(StorageKey::parse(&format!(
            "tenants/{}/uploads/{:016x}.xlsx",
            self.tenant(),
            rand::random::<u64>()
        ))?)
    }

    pub async fn put(&self, key: &StorageKey, bytes: Vec<u8>) -> anyhow::Result<()> {
        let body =
            futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(bytes))]);
        self.storage.put_stream(key, body, u64::MAX).await?;
        Ok(())
    }

    /// Submits a job as the API would: the type's attempts and timeout from `registry`,
    /// published at once.
    pub async fn submit(&self, registry: &Registry, mut job: NewAiJob) -> anyhow::Result<JobId> {
        if let Some(info) = registry.describe(job.job_type.as_str()) {
            info.apply_to(&mut job);
        }
        let out = self.db.submit_ai_job(job).await?;
        jobpulse_sync::Relay::new(self.db.clone(), self.store.clone())
            .publish_now(&out.outbox)
            .await?;
        Ok(out.value.job.job_id)
    }

    /// Uploads `bytes` and submits an `excel_parsing` job for the tenant's lecture.
    pub async fn submit_excel(&self, registry: &Registry, bytes: Vec<u8>) -> anyhow::Result<JobId> {
        let key = self.upload_key()?;
        self.put(&key, bytes).await?;
        self.submit_excel_at(registry, &key).await
    }

    pub async fn submit_excel_at(
        &self,
        registry: &Registry,
        key: &StorageKey,
    ) -> anyhow::Result<JobId> {
        let mut job = NewAiJob::new(self.tenant(), JobType::parse(JobType::EXCEL_PARSING)?);
        job.lecture_id = Some(self.seed.lecture_id);
        job.input_file_key = Some(key.as_str().to_owned());
        self.submit(registry, job).await
    }

    pub fn key(&self, job: &JobId) -> TaskKey {
        TaskKey::job(self.tenant(), job.clone())
    }

    /// What a poller sees now.
    pub async fn state(&self, job: &JobId) -> anyhow::Result<Option<State>> {
        Ok(self.store.get(&self.key(job)).await?.map(|s| s.state))
    }

    /// Polls the read model until `cond` holds for the job's state.
    pub async fn wait_for(
        &self,
        job: &JobId,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&State) -> bool,
    ) -> anyhow::Result<State> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.state(job).await?
                && cond(&s)
            {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last state {:?}",
                    self.state(job).await?
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for a terminal state.
    pub async fn wait_terminal(&self, job: &JobId, timeout: Duration) -> anyhow::Result<State> {
        self.wait_for(
            job,
            timeout,
            "a terminal state",
            |s| matches!(s.status, Status::Job(st) if st.is_terminal()),
        )
        .await
    }

    /// Every change of the read model from now on (for Redis, once the feed is subscribed).
    pub async fn subscribe(&self) -> anyhow::Result<Subscription> {
        Ok(match &self.redis {
            Some(r) => r.subscribe_ready().await?,
            None => self.store.subscribe(),
        })
    }

    /// The job's record as the read model stores it: the Redis hash's fields, or the in-process
    /// snapshot as JSON.
    pub async fn raw_record(&self, job: &JobId) -> anyhow::Result<String> {
        match (&self.redis_keys, self.backend) {
            (Some(keys), Backend::PgRedis) => {
                let client = redis::Client::open(redis_url())?;
                let mut con = client.get_multiplexed_async_connection().await?;
                let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(keys.record(&self.key(job)))
                    .query_async(&mut con)
                    .await?;
                if fields.is_empty() {
                    bail!("no Redis record for job {job}");
                }
                Ok(fields
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
            _ => {
                let snap = self
                    .store
                    .get(&self.key(job))
                    .await?
                    .context("the job is in the read model")?;
                Ok(serde_json::to_string(&snap)?)
            }
        }
    }

    /// One integer from raw SQL.
    pub async fn sql_int(&self, sql: &str) -> anyhow::Result<i64> {
        use sqlx::{Connection, Row};
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match self.backend {
            Backend::PgRedis => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_one(&mut c)
                    .await?
                    .try_get::<i64, _>(0)?
            }
            Backend::SqliteMemory => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_one(&mut c)
                    .await?
                    .try_get::<i64, _>(0)?
            }
        })
    }

    /// `(login_id, password_hash)` of every student of the tenant.
    pub async fn password_hashes(&self) -> anyhow::Result<Vec<(String, String)>> {
        use sqlx::{Connection, Row};
        let sql = format!(
            "SELECT login_id, password_hash FROM students WHERE tenant_id = {}",
            self.tenant()
        );
        let sql = sqlx::AssertSqlSafe(sql);
        let rows: Vec<(String, String)> = match self.backend {
            Backend::PgRedis => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_all(&mut c)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()?
            }
            Backend::SqliteMemory => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql)
                    .fetch_all(&mut c)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()?
            }
        };
        Ok(rows)
    }
}

/// Collects every state the read model applies for one job until it is terminal.
pub async fn watch_until_terminal(
    mut feed: Subscription,
    key: TaskKey,
    timeout: Duration,
) -> anyhow::Result<Vec<State>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let change = match tokio::time::timeout_at(deadline, feed.recv()).await {
            Err(_) => bail!("no terminal state within {timeout:?}; saw {seen:?}"),
            Ok(Err(RecvError::Lagged(n))) => bail!("the change feed lagged by {n}"),
            Ok(Err(RecvError::Closed)) => bail!("the change feed closed"),
            Ok(Ok(c)) => c,
        };
        if change.key != key {
            continue;
        }
        let Some(snap) = change.snapshot else {
            continue;
        };
        let done = matches!(snap.state.status, Status::Job(s) if s.is_terminal());
        seen.push(snap.state);
        if done {
            return Ok(seen);
        }
    }
}

pub fn job_status(s: &State) -> Option<JobStatus> {
    match s.status {
        Status::Job(j) => Some(j),
        Status::Video(_) => None,
    }
}
