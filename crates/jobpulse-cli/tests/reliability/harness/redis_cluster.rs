//! A Redis Cluster of the test's own (3 masters + 3 replicas), started with
//! `scripts/redis-cluster` in a directory of the test and stopped (every node killed, the
//! directory removed) when the guard drops. The test may SIGKILL a node and watch the cluster
//! promote its replica.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `scripts/redis-cluster`, from this crate's directory.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster")
}

/// One node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// Set by the cluster when it considers the node failed (`fail` / `fail?`).
    pub failed: bool,
    /// The node id of its master (replicas).
    pub master_id: Option<String>,
    /// Slot ranges it serves (masters).
    pub slots: Vec<(u16, u16)>,
}

/// See the module docs.
#[derive(Debug)]
pub struct OwnRedisCluster {
    dir: PathBuf,
    /// `redis://127.0.0.1:P1,…` — what `JOBPULSE_REDIS_CLUSTER_NODES` takes.
    pub seeds: String,
    pub ports: Vec<u16>,
    killed: Vec<u16>,
}

impl OwnRedisCluster {
    /// Starts a cluster in `dir` (which must not exist yet or be empty).
    pub fn start(dir: &Path) -> anyhow::Result<OwnRedisCluster> {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir)
            .output()
            .context("running scripts/redis-cluster start")?;
        if !out.status.success() {
            bail!(
                "scripts/redis-cluster start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let seeds = String::from_utf8(out.stdout)?.trim().to_owned();
        let ports = seeds
            .split(',')
            .map(|s| {
                s.rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("a seed without a port: {s}"))
            })
            .collect::<anyhow::Result<Vec<u16>>>()?;
        anyhow::ensure!(ports.len() == 6, "seeds: {seeds}");
        Ok(OwnRedisCluster {
            dir: dir.to_owned(),
            seeds,
            ports,
            killed: Vec::new(),
        })
    }

    fn conn(port: u16) -> anyhow::Result<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        Ok(client.get_connection_with_timeout(Duration::from_millis(500))?)
    }

    /// A live node (one not killed by the test).
    fn live(&self) -> anyhow::Result<u16> {
        self.ports
            .iter()
            .copied()
            .find(|p| !self.killed.contains(p))
            .context("every node was killed")
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> anyhow::Result<u16> {
        let mut c = Self::conn(self.live()?)?;
        Ok(redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)?)
    }

    /// The nodes as the live node `port` sees them.
    pub fn nodes_seen_by(port: u16) -> anyhow::Result<Vec<Node>> {
        let mut c = Self::conn(port)?;
        c.set_read_timeout(Some(Duration::from_millis(500)))?;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c)?;
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 8 {
                continue;
            }
            let port = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("CLUSTER NODES line without a port: {line}"))?;
            let slots = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| {
                    let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                    Some((lo.parse().ok()?, hi.parse().ok()?))
                })
                .collect();
            out.push(Node {
                id: f[0].to_owned(),
                port,
                master: f[2].contains("master"),
                failed: f[2].contains("fail"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
            });
        }
        Ok(out)
    }

    /// The master serving `slot`, as a live node sees it (`None` while nobody serves it).
    pub fn master_of(&self, slot: u16) -> anyhow::Result<Option<Node>> {
        Ok(Self::nodes_seen_by(self.live()?)?.into_iter().find(|n| {
            n.master && !n.failed && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot))
        }))
    }

    /// The pid of the node on `port` (from its pid file).
    pub fn pid(&self, port: u16) -> anyhow::Result<u32> {
        let f = self.dir.join(format!("node-{port}")).join("redis.pid");
        Ok(std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .parse()?)
    }

    /// Cuts the replication link of the master on `port` and keeps it cut: its replicas may no
    /// longer `PSYNC`/`SYNC` (an ACL rule on the default user, which the replicas and jobpulse
    /// share — jobpulse sends neither), and their connections are closed. The master goes on
    /// acknowledging writes that no replica receives: a replica falling behind, made long.
    /// The number of replicas still connected afterwards (0 when the cut took).
    pub fn cut_replication(&self, port: u16) -> anyhow::Result<u64> {
        let mut c = Self::conn(port)?;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("-psync")
            .arg("-sync")
            .query(&mut c)?;
        let _: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query(&mut c)?;
        let info = Self::info(port, "replication")?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let pid = self.pid(port)?;
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
        self.killed.push(port);
        Ok(())
    }

    /// Waits until `slot` is served by a master other than `old` that every live node agrees
    /// on, with `cluster_state:ok` on every live node; the new master's port and the time it
    /// took.
    pub async fn wait_promoted(
        &self,
        slot: u16,
        old: u16,
        limit: Duration,
    ) -> anyhow::Result<(u16, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(port) = self.agreed_master(slot, old) {
                return Ok((port, start.elapsed()));
            }
            if start.elapsed() > limit {
                bail!("slot {slot} not served by a new master within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn agreed_master(&self, slot: u16, old: u16) -> Option<u16> {
        let mut agreed = None;
        for p in self.ports.iter().filter(|p| !self.killed.contains(p)) {
            let mut c = Self::conn(*p).ok()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
            if !info.contains("cluster_state:ok") {
                return None;
            }
            let nodes = Self::nodes_seen_by(*p).ok()?;
            let m = nodes.iter().find(|n| {
                n.master && !n.failed && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot))
            })?;
            if m.port == old || agreed.is_some_and(|a| a != m.port) {
                return None;
            }
            agreed = Some(m.port);
        }
        agreed
    }

    /// `INFO <section>` of the node on `port`.
    pub fn info(port: u16, section: &str) -> anyhow::Result<String> {
        let mut c = Self::conn(port)?;
        Ok(redis::cmd("INFO").arg(section).query(&mut c)?)
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
