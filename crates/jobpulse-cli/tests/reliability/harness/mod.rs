//! The reliability harness: real `jobpulse` processes against a database and a redis-server of
//! the test's own, with faults injected from outside.
//!
//! - [`Cluster`]: a fresh PostgreSQL database (jobpulse-testkit), an own redis-server on a free
//!   port, a temp data dir, a unique key prefix and a JWT secret; it spawns `jobpulse serve` and
//!   `jobpulse worker video|ai` with that environment (optionally through a [`proxy::Proxy`]
//!   in front of Redis and/or PostgreSQL) and mints tokens.
//! - [`procs`]: child processes (signals, logs, cleanup), [`redis`]: the own redis-server,
//!   [`proxy`]: the fault-injecting TCP proxy, [`http`]: a small API client, [`stats`]:
//!   percentiles and Prometheus text.
//!
//! Everything a test starts is stopped when its guard drops, also after a panic.

#![allow(dead_code)]

pub mod http;
pub mod load;
pub mod pg;
pub mod procs;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod runs;
pub mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_db::TenantSeed;
use jobpulse_domain::TenantId;
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisStore, StoreConfig};
use jobpulse_testkit::{Backend, TestDatabase};

use self::http::Api;
use self::procs::Proc;
use self::proxy::Proxy;
use self::redis::RedisServer;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_jobpulse");

/// The HS256 secret every process of a test shares.
pub const SECRET: &str = "reliability-suite-secret-0123456789-abcdefgh";

/// `JOBPULSE_RELIABILITY_FULL=1` runs the full counts instead of the CI-sized ones.
pub fn full() -> bool {
    std::env::var("JOBPULSE_RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

/// `ci` normally, `full` with `JOBPULSE_RELIABILITY_FULL=1`.
pub fn scaled(ci: usize, full_count: usize) -> usize {
    if full() { full_count } else { ci }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

/// Prints a measured figure (stderr: nextest shows it with `--no-capture`, and on failure).
#[macro_export]
macro_rules! figure {
    ($($arg:tt)*) => {
        eprintln!("FIGURE {}", format!($($arg)*))
    };
}

/// A correctness assertion — nothing lost, nothing duplicated, nothing shown going backwards,
/// no 5xx — as opposed to a deadline. Its message starts with `INVARIANT VIOLATED`, and
/// `scripts/test` fails the run when a try of a retried (timing-bound) scenario failed with it:
/// a retry may forgive a slow machine, never a wrong answer (docs/reliability.md).
#[macro_export]
macro_rules! invariant {
    ($cond:expr, $($arg:tt)*) => {
        anyhow::ensure!($cond, "INVARIANT VIOLATED: {}", format!($($arg)*))
    };
}

/// What a cluster puts between its processes and the services.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra `--option value` arguments of the own redis-server.
    pub redis_args: Vec<String>,
    /// Processes reach Redis through a proxy.
    pub redis_proxy: bool,
    /// Processes reach PostgreSQL through a proxy.
    pub pg_proxy: bool,
    /// The test's database on this server (an admin URL, e.g. an [`pg::OwnPostgres`]) instead
    /// of the shared one.
    pub pg_server: Option<String>,
}

/// One test's services and processes. See the module docs.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub db: TestDatabase,
    pub redis: RedisServer,
    pub prefix: String,
    pub redis_proxy: Option<Proxy>,
    pub pg_proxy: Option<Proxy>,
    /// When set, processes get these seed nodes (`JOBPULSE_REDIS_CLUSTER_NODES`) instead of
    /// `REDIS_URL`: a Redis Cluster of the test's own ([`redis_cluster::OwnRedisCluster`]).
    pub redis_cluster_nodes: Option<String>,
    verifier: Verifier,
    logs: AtomicU32,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field("db", &self.db.url)
            .field("redis", &self.redis.port)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `host:port` of a `postgres://` URL.
fn pg_addr(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let scheme_end = url.find("://").context("database URL without scheme")? + 3;
    let rest = &url[scheme_end..];
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    let hostport = &rest[host_start..host_end];
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("database host {hostport:?} is not an IP address"))?;
    let before = url[..scheme_end + host_start].to_owned();
    let after = rest[host_end..].to_owned();
    Ok((addr, before, after))
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> anyhow::Result<Cluster> {
        let mut dir = tempfile::Builder::new()
            .prefix("jp-reliability-")
            .tempdir()?;
        // `JOBPULSE_RELIABILITY_KEEP=1` keeps logs and data for a look afterwards.
        if std::env::var("JOBPULSE_RELIABILITY_KEEP").is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let db = match &options.pg_server {
            Some(admin) => TestDatabase::on_server(admin).await?,
            None => TestDatabase::new(Backend::Postgres).await?,
        };
        let args: Vec<&str> = options.redis_args.iter().map(String::as_str).collect();
        let redis = RedisServer::start(dir.path().join("redis"), &args).await?;
        let redis_proxy = match options.redis_proxy {
            true => Some(Proxy::start(redis.addr()).await?),
            false => None,
        };
        let pg_proxy = match options.pg_proxy {
            true => Some(Proxy::start(pg_addr(&db.url)?.0).await?),
            false => None,
        };
        let verifier = Verifier::new(AuthConfig::hs256(SECRET.as_bytes())?);
        Ok(Cluster {
            dir,
            data_dir,
            db,
            redis,
            prefix: jobpulse_testkit::unique_prefix(),
            redis_proxy,
            pg_proxy,
            redis_cluster_nodes: None,
            verifier,
            logs: AtomicU32::new(0),
        })
    }

    /// The Redis URL processes use (through the proxy when there is one).
    pub fn redis_url(&self) -> String {
        match &self.redis_proxy {
            Some(p) => format!("redis://127.0.0.1:{}", p.port),
            None => self.redis.url(),
        }
    }

    /// The database URL processes use (through the proxy when there is one).
    pub fn db_url(&self) -> String {
        match &self.pg_proxy {
            Some(p) => {
                let (_, before, after) = pg_addr(&self.db.url).expect("parsed before");
                format!("{before}127.0.0.1:{}{after}", p.port)
            }
            None => self.db.url.clone(),
        }
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        let n = self.logs.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{n:02}-{name}.log"))
    }

    /// `jobpulse <args>` with this cluster's environment (and nothing inherited but `PATH`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_clear();
        for var in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Ok(v) = std::env::var(var) {
                cmd.env(var, v);
            }
        }
        match &self.redis_cluster_nodes {
            Some(nodes) => cmd.env("JOBPULSE_REDIS_CLUSTER_NODES", nodes),
            None => cmd.env("REDIS_URL", self.redis_url()),
        };
        cmd.env("DATABASE_URL", self.db_url())
            .env("JOBPULSE_JWT_SECRET", SECRET)
            .env("JOBPULSE_DATA_DIR", &self.data_dir)
            .env("JOBPULSE_KEY_PREFIX", &self.prefix)
            .env("JOBPULSE_BIND", "127.0.0.1")
            .env("RUST_LOG", "info,sqlx=warn,hyper=warn")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Starts `jobpulse serve` and waits for `/readyz`.
    pub async fn serve(&self, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut last = None;
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = self.command(&["serve"]);
            cmd.env("JOBPULSE_PORT", port.to_string());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut proc = Proc::spawn("serve", cmd, &self.log_path("serve"))?;
            let api = Api::new(port);
            match api.wait_ready(&mut proc, Duration::from_secs(30)).await {
                Ok(()) => return Ok(Server { proc, port, api }),
                // Someone took the port between our check and the bind: try another.
                Err(e) if proc.log().contains("cannot listen") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("serve did not start")))
    }

    /// Starts `jobpulse worker <kind> <args>` and waits until it runs its loop.
    pub async fn worker(&self, kind: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let mut all = vec!["worker", kind];
        all.extend_from_slice(args);
        let cmd = self.command(&all);
        let mut proc = Proc::spawn(&format!("worker-{kind}"), cmd, &self.log_path(kind))?;
        let marker = match kind {
            "video" => "video worker started",
            _ => "AI worker started",
        };
        proc.wait_for_log(marker, Duration::from_secs(30)).await?;
        Ok(proc)
    }

    /// A tenant with one lecture and one session.
    pub async fn tenant(&self, code: &str) -> anyhow::Result<TenantSeed> {
        self.db
            .db
            .create_tenant(code, code)
            .await
            .map_err(|e| anyhow::anyhow!("creating tenant {code}: {e}"))
    }

    /// A browser token.
    pub fn token(&self, tenant: TenantId, role: &str) -> String {
        self.mint(tenant, role, false)
    }

    /// A worker token (aud "worker").
    pub fn worker_token(&self, tenant: TenantId) -> String {
        self.mint(tenant, "staff", true)
    }

    /// A browser token of user `user` (the others are all user 7).
    pub fn user_token(&self, tenant: TenantId, role: &str, user: &str) -> String {
        self.verifier
            .mint(&TokenSpec {
                tenant,
                tenant_code: None,
                user_id: Some(user.into()),
                role: Some(role.into()),
                ttl_secs: 3600,
                worker: false,
            })
            .expect("minting a token")
    }

    fn mint(&self, tenant: TenantId, role: &str, worker: bool) -> String {
        self.verifier
            .mint(&TokenSpec {
                tenant,
                tenant_code: None,
                user_id: Some("7".into()),
                role: Some(role.into()),
                ttl_secs: 3600,
                worker,
            })
            .expect("minting a token")
    }

    /// The read model as the processes see it, straight from the own redis-server (not through
    /// any proxy).
    pub async fn store(&self) -> anyhow::Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix).context("prefix")?;
        Ok(RedisStore::connect(&self.redis.url(), keys, StoreConfig::default()).await?)
    }

    /// Rows of a query, for checks straight against the database (never through a proxy).
    pub fn pg(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&self.db.url)
            .expect("a lazy pool")
    }

    /// Where the video worker of process `pid` works.
    pub fn work_dir_of(&self, pid: u32) -> PathBuf {
        self.data_dir
            .join("work")
            .join(format!("{}-{pid}", hostname()))
    }
}

/// This host's name as the workers see it.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A running `jobpulse serve`.
#[derive(Debug)]
pub struct Server {
    pub proc: Proc,
    pub port: u16,
    pub api: Api,
}

/// Polls `cond` every `every` until it holds; the time it took, or an error after `limit`.
pub async fn eventually<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match cond().await {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > limit {
            match last_err {
                Some(e) => anyhow::bail!("{what}: not within {limit:?} (last error: {e:#})"),
                None => anyhow::bail!("{what}: not within {limit:?}"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Files (recursively) under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A test clip made by ffmpeg (cached per test directory).
pub async fn clip(dir: &Path, seconds: f64, width: u32, height: u32) -> anyhow::Result<PathBuf> {
    use jobpulse_media::Toolchain;
    use jobpulse_media::testing::{ClipSpec, generate_clip};
    let path = dir.join(format!("clip-{seconds}-{width}x{height}.mp4"));
    if path.exists() {
        return Ok(path);
    }
    let tools =
        Toolchain::detect().context("ffmpeg/ffprobe are needed (apt-get install ffmpeg)")?;
    generate_clip(&tools, &path, &ClipSpec::new(seconds, width, height)).await?;
    Ok(path)
}
