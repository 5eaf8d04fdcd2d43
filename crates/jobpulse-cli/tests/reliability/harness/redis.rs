//! A redis-server of the test's own on a free port (`--save "" --appendonly no`), which the
//! test may kill and restart empty, fill to its `maxmemory`, and ask for `INFO commandstats`.
//! The shared Redis on 6379 is never touched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::free_port;
use super::procs::Proc;

/// See the module docs.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    proc: Option<Proc>,
    starts: u32,
}

impl RedisServer {
    /// Starts a server in `dir` with extra `--option value` arguments.
    pub async fn start(dir: PathBuf, extra: &[&str]) -> anyhow::Result<RedisServer> {
        std::fs::create_dir_all(&dir)?;
        let mut last = None;
        for _ in 0..5 {
            let mut r = RedisServer {
                port: free_port(),
                dir: dir.clone(),
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                proc: None,
                starts: 0,
            };
            match r.launch().await {
                Ok(()) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra);
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let mut proc = Proc::spawn("redis-server", cmd, &log).context(
            "redis-server is needed by the reliability tests (apt-get install redis-server)",
        )?;
        let start = Instant::now();
        loop {
            if self.ping().await.is_ok() {
                self.proc = Some(proc);
                return Ok(());
            }
            if !proc.alive() || start.elapsed() > Duration::from_secs(10) {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("redis-server on port {} did not start: {tail}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL): every client sees its connections drop.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same port, empty (no persistence).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let start = Instant::now();
        // The port can take a moment to be free again.
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn client(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let conn = tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        .context("connecting to the test's redis-server timed out")??;
        Ok(conn)
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut c = self.client().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Runs one command and returns its reply.
    pub async fn cmd(&self, args: &[&str]) -> anyhow::Result<redis::Value> {
        let mut c = self.client().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        Ok(cmd.query_async(&mut c).await?)
    }

    /// `INFO commandstats` as command name → calls.
    pub async fn commandstats(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut c = self.client().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await?;
        let mut out = BTreeMap::new();
        for line in info.lines() {
            // cmdstat_hmget:calls=12,usec=34,…
            if let Some(rest) = line.strip_prefix("cmdstat_")
                && let Some((name, fields)) = rest.split_once(':')
                && let Some(calls) = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|v| v.parse().ok())
            {
                out.insert(name.to_owned(), calls);
            }
        }
        Ok(out)
    }

    /// A field of `INFO <section>` (e.g. `used_memory`).
    pub async fn info_field(&self, section: &str, field: &str) -> anyhow::Result<String> {
        let mut c = self.client().await?;
        let info: String = redis::cmd("INFO").arg(section).query_async(&mut c).await?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("INFO {section} has no {field}"))
    }

    /// Number of keys in database 0.
    pub async fn dbsize(&self) -> anyhow::Result<u64> {
        let mut c = self.client().await?;
        Ok(redis::cmd("DBSIZE").query_async(&mut c).await?)
    }
}

/// Commands counted by `INFO commandstats` between two readings (`after - before`).
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}
