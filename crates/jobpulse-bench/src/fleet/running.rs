//! The fleet under test: started with `scripts/fleet` (and a Redis Cluster of
//! `scripts/redis-cluster`) and stopped on drop, or read from the directory of one already
//! running.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use jobpulse_store::RedisTarget;

use crate::fleet_probe::port_of;

/// A running fleet, as its directory describes it.
pub(super) struct Fleet {
    pub(super) lb: SocketAddr,
    pub(super) secret: String,
    pub(super) key_prefix: String,
    pub(super) target: RedisTarget,
    pub(super) admin_url: String,
    pub(super) dbname: String,
    pub(super) replicas: Vec<u32>,
    pub(super) balancer: Option<u32>,
    pub(super) workers: Vec<u32>,
    /// Started here: stopped (and removed) on drop.
    owned: Option<(PathBuf, Option<PathBuf>)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some((fleet, cluster)) = self.owned.take() {
            let _ = Command::new(scripts().join("fleet"))
                .arg("stop")
                .arg(&fleet)
                .stdout(Stdio::null())
                .status();
            if let Some(c) = cluster {
                let _ = Command::new(scripts().join("redis-cluster"))
                    .arg("stop")
                    .arg(&c)
                    .status();
            }
            // The run's temp dir, empty by now.
            if let Some(parent) = fleet.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn pid_of(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join("pids").join(format!("{name}.pid")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// `KEY=value` lines (values may be quoted).
fn env_file(text: &str, sep: char) -> HashMap<String, String> {
    text.split(sep)
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

impl Fleet {
    /// Starts a fleet (and a cluster unless `JOBPULSE_REDIS_CLUSTER_NODES` is set).
    #[allow(clippy::print_stdout)]
    pub(super) fn start(replicas: usize) -> anyhow::Result<Fleet> {
        let tmp = std::env::temp_dir().join(format!("jobpulse-fleetbench-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        let mut cluster_dir = None;
        let nodes = match std::env::var("JOBPULSE_REDIS_CLUSTER_NODES") {
            Ok(n) if !n.trim().is_empty() => n,
            _ => {
                let dir = tmp.join("cluster");
                let out = Command::new(scripts().join("redis-cluster"))
                    .arg("start")
                    .arg(&dir)
                    .stderr(Stdio::inherit())
                    .output()
                    .context("running scripts/redis-cluster")?;
                anyhow::ensure!(out.status.success(), "scripts/redis-cluster start failed");
                cluster_dir = Some(dir);
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            }
        };
        let dir = tmp.join("fleet");
        let mut cmd = Command::new(scripts().join("fleet"));
        cmd.arg("start")
            .arg(&dir)
            .env("JOBPULSE_REDIS_CLUSTER_NODES", &nodes)
            .env_remove("REDIS_URL")
            .env("JOBPULSE_FLEET_REPLICAS", replicas.to_string())
            .env(
                "JOBPULSE_KEY_PREFIX",
                format!("fleetbench{}", std::process::id()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("JOBPULSE_BIN").is_none() {
            let exe = std::env::current_exe()?;
            let bin = exe.with_file_name("jobpulse");
            anyhow::ensure!(
                bin.exists(),
                "no jobpulse binary next to {} (cargo build --release -p jobpulse-cli), or set \
                 JOBPULSE_BIN",
                exe.display()
            );
            cmd.env("JOBPULSE_BIN", bin);
        }
        println!("starting the fleet: scripts/fleet start {}", dir.display());
        let status = cmd.status().context("running scripts/fleet")?;
        let owned = Some((dir.clone(), cluster_dir.clone()));
        if !status.success() {
            if let Some(c) = cluster_dir {
                let _ = Command::new(scripts().join("redis-cluster"))
                    .arg("stop")
                    .arg(c)
                    .status();
            }
            anyhow::bail!("scripts/fleet start failed");
        }
        let mut fleet = Fleet::read(&dir).inspect_err(|_| {
            let _ = Command::new(scripts().join("fleet"))
                .arg("stop")
                .arg(&dir)
                .status();
        })?;
        fleet.owned = owned;
        Ok(fleet)
    }

    /// A fleet that `scripts/fleet start DIR` started.
    pub(super) fn read(dir: &Path) -> anyhow::Result<Fleet> {
        let env = env_file(
            &std::fs::read_to_string(dir.join("fleet.env"))
                .with_context(|| format!("{} holds no fleet.env", dir.display()))?,
            '\n',
        );
        let url = env
            .get("JOBPULSE_URL")
            .context("JOBPULSE_URL in fleet.env")?;
        let lb: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("the balancer's address {url}"))?;
        let mut replicas = Vec::new();
        for i in 1.. {
            match pid_of(dir, &format!("serve-{i}")) {
                Some(p) => replicas.push(p),
                None => break,
            }
        }
        let first = *replicas.first().context("no serve-1 pid")?;
        // What the replicas run with: their environment.
        let environ = std::fs::read(format!("/proc/{first}/environ"))
            .context("reading serve-1's environment")?;
        let penv = env_file(&String::from_utf8_lossy(&environ), '\0');
        let target = match penv.get("JOBPULSE_REDIS_CLUSTER_NODES") {
            Some(n) if !n.is_empty() => {
                RedisTarget::Cluster(n.split(',').map(|s| s.trim().to_owned()).collect())
            }
            _ => RedisTarget::Single(penv.get("REDIS_URL").context("serve-1's Redis")?.clone()),
        };
        let mut workers = Vec::new();
        for kind in ["video", "ai"] {
            for i in 1.. {
                match pid_of(dir, &format!("{kind}-{i}")) {
                    Some(p) => workers.push(p),
                    None => break,
                }
            }
        }
        Ok(Fleet {
            lb,
            secret: std::fs::read_to_string(dir.join("jwt-secret"))?
                .trim()
                .to_owned(),
            key_prefix: penv
                .get("JOBPULSE_KEY_PREFIX")
                .cloned()
                .unwrap_or_else(|| "jp".into()),
            target,
            admin_url: std::fs::read_to_string(dir.join("db-admin"))?
                .trim()
                .to_owned(),
            dbname: env
                .get("JOBPULSE_FLEET_DATABASE")
                .cloned()
                .context("the database")?,
            replicas,
            balancer: pid_of(dir, "nginx"),
            workers,
            owned: None,
        })
    }

    pub(super) fn seed_port(&self) -> anyhow::Result<u16> {
        match &self.target {
            RedisTarget::Single(u) => port_of(u),
            RedisTarget::Cluster(n) => port_of(n.first().context("no seed node")?),
        }
    }
}
