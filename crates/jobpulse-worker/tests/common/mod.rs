//! Test support for the video worker: a fresh database per test on either backend (PostgreSQL
//! with a Redis read model under a key prefix of its own, or SQLite with the in-process store),
//! the real relay, local media storage, cached test clips, what a poller sees, and process
//! inspection through /proc.
//!
//! Services: `JOBPULSE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `JOBPULSE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); a missing one fails the test
//! with a message saying so.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobpulse_db::{Backoff, Db, DbOptions, QueueConfig, Video, VideoJob};
use jobpulse_domain::keys::KeySpace;
use jobpulse_domain::{TaskKey, TenantId, VideoId};
use jobpulse_media::testing::{ClipSpec, generate_clip};
use jobpulse_media::{MediaStorage, Preset, Toolchain, TranscodeOptions, keys};
use jobpulse_store::{MemoryStore, RedisStore, SharedStore, Snapshot, StoreConfig, Subscription};
use jobpulse_sync::Relay;
use jobpulse_worker::video::{PipelineContext, VideoWorker, VideoWorkerConfig, WorkerConfig};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Which backends a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL + Redis.
    Postgres,
    /// SQLite + the in-process store.
    Sqlite,
}

/// Runs `async fn name(b: Backend) -> anyhow::Result<()>` on both backends: `name::postgres`
/// and `name::sqlite`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name($crate::common::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::common::Backend::Sqlite).await
            }
        }
    };
}
pub(crate) use both;

/// Queue settings of the tests: a 1 s retry backoff (long enough for a 50 ms poller to see
/// RETRY_WAIT, short enough for quick tests), no jitter.
pub fn db_options() -> DbOptions {
    DbOptions {
        max_connections: 5,
        acquire_timeout: Duration::from_secs(30),
        busy_timeout: Duration::from_secs(30),
        queue: QueueConfig {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(2),
                jitter: 0.0,
            },
            default_max_attempts: 5,
        },
        ..DbOptions::default()
    }
}

/// One test's world: database, read model, background relay, media storage, work root.
pub struct Env {
    pub backend: Backend,
    pub db: Db,
    pub db_url: String,
    pub store: SharedStore,
    /// The Redis store (PostgreSQL backend), for feeds that must be subscribed before writes.
    redis: Option<Arc<RedisStore>>,
    /// The in-process store (SQLite backend), shared with isolated workers.
    memory: Option<Arc<MemoryStore>>,
    redis_keys: Option<KeySpace>,
    pub relay: Relay,
    pub storage: MediaStorage,
    pub tools: Toolchain,
    pub tenant: TenantId,
    dir: tempfile::TempDir,
    uploads: std::sync::atomic::AtomicI64,
    _relay_stop: DropGuard,
    // Dropped last: the database and the Redis keys go with them.
    _database: jobpulse_testkit::TestDatabase,
    _redis: Option<jobpulse_testkit::TestRedis>,
}

/// Logs of the code under test, captured with the test's output (shown when it fails);
/// `RUST_LOG` overrides the default level (warn).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

impl Env {
    pub async fn new(backend: Backend) -> anyhow::Result<Env> {
        init_logs();
        let dir = tempfile::tempdir()?;
        let database = jobpulse_testkit::TestDatabase::with_options(
            match backend {
                Backend::Postgres => jobpulse_testkit::Backend::Postgres,
                Backend::Sqlite => jobpulse_testkit::Backend::Sqlite,
            },
            db_options(),
        )
        .await?;
        let (db, db_url) = (database.db.clone(), database.url.clone());
        let (store, redis, memory, test_redis): (SharedStore, _, _, _) = match backend {
            Backend::Postgres => {
                let keys = KeySpace::new(&format!("vw-{:016x}", rand::random::<u64>()))
                    .context("key prefix")?;
                let r =
                    jobpulse_testkit::TestRedis::with_keys(keys, StoreConfig::default()).await?;
                (
                    r.store.clone() as SharedStore,
                    Some(r.store.clone()),
                    None,
                    Some(r),
                )
            }
            Backend::Sqlite => {
                let m = Arc::new(MemoryStore::default());
                (m.clone() as SharedStore, None, Some(m), None)
            }
        };
        let redis_keys = test_redis.as_ref().map(|r| r.keys.clone());
        let relay = Relay::new(db.clone(), store.clone());
        let relay_stop = CancellationToken::new();
        tokio::spawn(relay.clone().run(relay_stop.clone()));
        let storage = MediaStorage::local(dir.path().join("media")).context("media storage")?;
        let seed = db.create_tenant("t", "Test academy").await?;
        Ok(Env {
            backend,
            db,
            db_url,
            store,
            redis,
            memory,
            redis_keys,
            relay,
            storage,
            tools: tools(),
            tenant: seed.tenant_id,
            dir,
            uploads: std::sync::atomic::AtomicI64::new(0),
            _relay_stop: relay_stop.drop_guard(),
            _database: database,
            _redis: test_redis,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn work_root(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn media_dir(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    /// A worker configuration for tests: short timings, 100 ms progress writes.
    pub fn config(&self, worker_id: &str) -> VideoWorkerConfig {
        let mut config = VideoWorkerConfig::new(self.work_root());
        config.common = WorkerConfig {
            worker_id: worker_id.to_owned(),
            lease: Duration::from_secs(10),
            heartbeat_every: Duration::from_millis(300),
            idle_wait: Duration::from_millis(500),
            reap_every: Duration::from_millis(200),
            progress_every: Duration::from_millis(100),
            ..config.common
        };
        config
    }

    pub fn pipeline(&self, options: TranscodeOptions) -> PipelineContext {
        PipelineContext {
            toolchain: self.tools.clone(),
            storage: self.storage.clone(),
            work_root: self.work_root(),
            options,
            limits: jobpulse_media::MediaLimits::default(),
        }
    }

    /// A worker on this test's database, read model and storage.
    pub fn worker(&self, config: VideoWorkerConfig, options: TranscodeOptions) -> VideoWorker {
        VideoWorker::new(
            self.db.clone(),
            self.store.clone(),
            self.relay.clone(),
            self.pipeline(options),
            config,
        )
    }

    /// Stores `clip` as the raw upload of the next video and records the video (UPLOADED, its
    /// job queued), published before returning — as the upload endpoint does.
    pub async fn upload(&self, clip: &Path) -> anyhow::Result<Video> {
        // Fresh database: ids are 1, 2, … in creation order (checked below).
        let n = self
            .uploads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let id = VideoId::new(n)?;
        let key = keys::raw_key(self.tenant, id, "clip.mp4");
        self.storage.put_file(&key, clip).await.context("store")?;
        let created = self
            .db
            .create_video(self.tenant, None, &format!("video {n}"), key.as_str())
            .await?;
        anyhow::ensure!(created.value.id == id, "video ids are sequential");
        self.relay.publish_now(&created.outbox).await?;
        Ok(created.value)
    }

    pub async fn video(&self, id: VideoId) -> anyhow::Result<Video> {
        self.db
            .get_video(self.tenant, id)
            .await?
            .with_context(|| format!("video {id}"))
    }

    pub async fn jobs(&self, id: VideoId) -> anyhow::Result<Vec<VideoJob>> {
        Ok(self.db.video_jobs(self.tenant, id).await?)
    }

    pub fn key(&self, id: VideoId) -> TaskKey {
        TaskKey::video(self.tenant, id)
    }

    pub async fn snapshot(&self, id: VideoId) -> anyhow::Result<Option<Snapshot>> {
        Ok(self.store.get(&self.key(id)).await?)
    }

    /// Every change the read model applies from now on (subscribed before returning).
    pub async fn feed(&self) -> anyhow::Result<Subscription> {
        Ok(match &self.redis {
            Some(r) => r.subscribe_ready().await?,
            None => self.store.subscribe(),
        })
    }

    /// Another handle on the same read model, as another process would have.
    pub async fn second_store(&self) -> anyhow::Result<SharedStore> {
        Ok(match (&self.redis_keys, &self.memory) {
            (Some(keys), _) => Arc::new(connect_redis(keys).await?),
            (None, Some(m)) => m.clone(),
            (None, None) => bail!("no store"),
        })
    }

    /// Waits until the read model shows `pred` for `id`.
    pub async fn until_snapshot(
        &self,
        id: VideoId,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> anyhow::Result<Snapshot> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.snapshot(id).await?
                && pred(&s)
            {
                return Ok(s);
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {what}; last: {:?}",
                    self.snapshot(id).await?
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the video's row shows `pred`.
    pub async fn until_video(
        &self,
        id: VideoId,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Video) -> bool,
    ) -> anyhow::Result<Video> {
        let start = Instant::now();
        loop {
            let v = self.video(id).await?;
            if pred(&v) {
                return Ok(v);
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?} waiting for {what}; last: {v:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The HLS output of `id` in storage is complete and valid; returns its summary.
    pub async fn valid_hls(&self, id: VideoId) -> anyhow::Result<jobpulse_media::HlsSummary> {
        let prefix = keys::hls_prefix(self.tenant, id);
        let dir = self.media_dir().join(prefix.as_str());
        let summary = jobpulse_media::validate_hls(&dir)
            .await
            .with_context(|| format!("valid HLS under {}", dir.display()))?;
        anyhow::ensure!(
            self.storage
                .exists(&keys::thumbnail_key(self.tenant, id))
                .await?,
            "thumbnail stored"
        );
        Ok(summary)
    }
}

async fn connect_redis(keys: &KeySpace) -> anyhow::Result<RedisStore> {
    let url = jobpulse_testkit::redis_url();
    RedisStore::connect(&url, keys.clone(), StoreConfig::default())
        .await
        .with_context(|| {
            format!("Redis is not reachable at {url}; start it or set JOBPULSE_TEST_REDIS_URL")
        })
}

/// The installed toolchain; fails the test with instructions when ffmpeg is missing.
pub fn tools() -> Toolchain {
    Toolchain::detect().expect(
        "these tests need ffmpeg and ffprobe: apt-get install ffmpeg (or set JOBPULSE_FFMPEG)",
    )
}

/// Fast encoder settings (the default ladder at `veryfast`).
pub fn fast() -> TranscodeOptions {
    TranscodeOptions::default()
}

/// Deliberately slow encoder settings, so that a transcode of a small clip lasts many seconds:
/// there is time to kill, cancel or stop a worker in the middle of it.
pub fn slow() -> TranscodeOptions {
    TranscodeOptions {
        preset: Preset::Veryslow,
        threads: Some(1),
        ..TranscodeOptions::default()
    }
}

/// A short clip (4 s, 640x360, with audio).
pub fn short_clip() -> ClipSpec {
    ClipSpec::new(4.0, 640, 360).with_audio()
}

/// A longer clip (10 s, 640x360, with audio): many seconds of transcoding with [`slow`], about a
/// second with [`fast`].
pub fn long_clip() -> ClipSpec {
    ClipSpec::new(10.0, 640, 360).with_audio()
}

/// The clip for `spec`, generated once and cached under the target directory (written to a
/// temporary name and renamed, so concurrent tests and runs never see half a file).
pub async fn clip(spec: &ClipSpec) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("video-worker-clips");
    std::fs::create_dir_all(&dir)?;
    let name = format!(
        "{}x{}-{}s-{}fps-{}{}.mp4",
        spec.width,
        spec.height,
        spec.seconds,
        spec.fps,
        if spec.audio { "a" } else { "na" },
        if spec.still { "-still" } else { "" }
    );
    let path = dir.join(&name);
    if path.exists() {
        return Ok(path);
    }
    let tmp = dir.join(format!("{:016x}-{name}", rand::random::<u64>()));
    generate_clip(&tools(), &tmp, spec)
        .await
        .context("generating a test clip")?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Polls the read model every `every` while it runs; `stop` returns what it saw (each distinct
/// snapshot once, in order) — what a browser's work box sees.
pub struct Poller {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<Snapshot>>,
}

impl Poller {
    /// Takes the first look before returning, so it precedes whatever the test does next.
    pub async fn start(store: SharedStore, key: TaskKey, every: Duration) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let first = store.get(&key).await.ok().flatten();
        let task = tokio::spawn(async move {
            let mut seen: Vec<Snapshot> = first.into_iter().collect();
            loop {
                if let Ok(Some(s)) = store.get(&key).await
                    && seen.last() != Some(&s)
                {
                    seen.push(s);
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = token.cancelled() => break,
                }
            }
            if let Ok(Some(s)) = store.get(&key).await
                && seen.last() != Some(&s)
            {
                seen.push(s);
            }
            seen
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> anyhow::Result<Vec<Snapshot>> {
        self.stop.cancel();
        Ok(self.task.await?)
    }
}

/// Every snapshot of `key` the feed delivered so far (in application order).
pub fn drain_feed(feed: &mut Subscription, key: &TaskKey) -> Vec<Snapshot> {
    let mut out = Vec::new();
    while let Ok(c) = feed.try_recv() {
        if &c.key == key
            && let Some(s) = c.snapshot
        {
            out.push(s);
        }
    }
    out
}

/// Pids of live processes whose command line contains `needle` (zombie processes count as
/// gone: they run nothing).
pub fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let hit = cmdline
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(needle));
        if hit && is_alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Polls `cond` every 20 ms until it holds; the time it took, or `None` after `limit`.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries directly inside `dir` (none when it does not exist).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

enum Command {
    /// Block the worker's runtime thread until the receiver yields (or its sender is dropped);
    /// the oneshot acknowledges that the pause has begun.
    Pause(
        std::sync::mpsc::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ),
    Stop,
}

/// A worker on a runtime and database connection of its own, on a thread of its own — as
/// another process would be — which the test can freeze as a whole (a stopped process, a long
/// GC or VM pause) and let go again.
pub struct Isolated {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    pub work_dir: PathBuf,
}

/// Lets a paused [`Isolated`] worker go on (also when dropped).
pub struct Paused(std::sync::mpsc::Sender<()>);

impl Paused {
    pub fn resume(self) {
        let _ = self.0.send(());
    }
}

impl Isolated {
    pub async fn start(
        env: &Env,
        config: VideoWorkerConfig,
        options: TranscodeOptions,
    ) -> anyhow::Result<Self> {
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let url = env.db_url.clone();
        let redis_keys = env.redis_keys.clone();
        let memory = env.memory.clone();
        let ctx = env.pipeline(options);
        let work_dir = config.work_dir();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let setup = async {
                    let db = Db::connect_with(&url, db_options()).await?;
                    let store: SharedStore = match (redis_keys, memory) {
                        (Some(keys), _) => Arc::new(connect_redis(&keys).await?),
                        (None, Some(m)) => m,
                        (None, None) => bail!("no store"),
                    };
                    let relay = Relay::new(db.clone(), store.clone());
                    Ok(VideoWorker::new(db, store, relay, ctx, config).spawn())
                };
                let worker = match setup.await {
                    Ok(w) => {
                        let _ = started_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return Ok(());
                    }
                };
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Command::Pause(resume, ack) => {
                            let _ = ack.send(());
                            // Blocks this current-thread runtime: none of the worker's tasks
                            // (heartbeats, progress, final writes) runs until resumed.
                            let _ = resume.recv();
                        }
                        Command::Stop => break,
                    }
                }
                worker.shutdown().await?;
                Ok(())
            })
        });
        started_rx.await.context("isolated worker thread")??;
        Ok(Self {
            commands,
            thread: Some(thread),
            work_dir,
        })
    }

    /// Freezes the worker's whole runtime; returns once it is frozen.
    pub async fn pause(&self) -> anyhow::Result<Paused> {
        let (resume_tx, resume_rx) = std::sync::mpsc::channel();
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Pause(resume_rx, ack_tx))
            .map_err(|_| anyhow::anyhow!("isolated worker gone"))?;
        ack_rx.await.context("pause acknowledged")?;
        Ok(Paused(resume_tx))
    }

    /// Shuts the worker down gracefully and waits for its thread.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.commands.send(Command::Stop);
        let thread = self.thread.take().context("thread")?;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("isolated worker thread panicked"))?
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// A transaction of another connection that blocks every write to `video_jobs` (readers go on)
/// until dropped or released: a database that accepts connections but cannot get work done.
pub enum JobsLocked {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Env {
    pub async fn lock_jobs(&self) -> anyhow::Result<JobsLocked> {
        use sqlx::Connection;
        Ok(match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.db_url).await?;
                sqlx::query("BEGIN").execute(&mut c).await?;
                sqlx::query("LOCK TABLE video_jobs IN SHARE MODE")
                    .execute(&mut c)
                    .await?;
                JobsLocked::Postgres(c)
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.db_url).await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await?;
                JobsLocked::Sqlite(c)
            }
        })
    }
}

impl JobsLocked {
    pub async fn release(self) -> anyhow::Result<()> {
        match self {
            JobsLocked::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await?;
            }
            JobsLocked::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await?;
            }
        }
        Ok(())
    }
}
