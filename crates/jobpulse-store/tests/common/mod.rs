//! Helpers shared by the Redis test binaries: the test Redis, a fresh key prefix per test (so
//! tests run in parallel on one Redis), raw connections for inspecting keys, and a throwaway
//! `redis-server` for tests that change server configuration or stop the server.
//!
//! Never FLUSHALL/FLUSHDB or CONFIG SET the shared Redis: other tests run on it at the same time.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisOptions, RedisStore, RedisTarget, StoreConfig};
use redis::aio::MultiplexedConnection;

pub fn redis_url() -> String {
    std::env::var("JOBPULSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The test Redis Cluster's seed nodes (`JOBPULSE_TEST_REDIS_CLUSTER_NODES`, which
/// `scripts/test` sets after starting one). Unset: `None` and the caller skips, saying so —
/// except in CI, where a missing cluster is a failure.
pub fn cluster_nodes() -> Option<Vec<String>> {
    match std::env::var("JOBPULSE_TEST_REDIS_CLUSTER_NODES") {
        Ok(list) if !list.trim().is_empty() => match RedisTarget::cluster_from_list(&list) {
            Ok(RedisTarget::Cluster(nodes)) => Some(nodes),
            _ => panic!("JOBPULSE_TEST_REDIS_CLUSTER_NODES is not a node list: {list}"),
        },
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI needs JOBPULSE_TEST_REDIS_CLUSTER_NODES (scripts/test starts a cluster)")
        }
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "SKIPPED: no Redis Cluster (run scripts/test, or set \
                     JOBPULSE_TEST_REDIS_CLUSTER_NODES)"
                );
            });
            None
        }
    }
}

/// A key space of its own for one test (or one proptest case); its keys are deleted on drop.
pub struct TestSpace {
    pub keys: KeySpace,
    /// The single-node URL (for a cluster space: its first seed node).
    pub url: String,
    pub target: RedisTarget,
    /// Whether dropping it deletes its keys (not on a cluster of the test's own, which goes
    /// away anyway and may hold a stopped node a cleaning connection would wait on for ever).
    clean_on_drop: bool,
}

impl TestSpace {
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    pub fn on(url: &str) -> Self {
        Self::with_target(RedisTarget::Single(url.to_owned()))
    }

    /// A key space on the test cluster; `None` (skipped) without one.
    pub fn cluster() -> Option<Self> {
        cluster_nodes().map(|nodes| Self::with_target(RedisTarget::Cluster(nodes)))
    }

    /// A key space on a cluster of the test's own (nothing is cleaned on drop).
    pub fn on_cluster(nodes: Vec<String>) -> Self {
        let mut space = Self::with_target(RedisTarget::Cluster(nodes));
        space.clean_on_drop = false;
        space
    }

    fn with_target(target: RedisTarget) -> Self {
        let prefix = format!("t-{:016x}", rand::random::<u64>());
        let url = match &target {
            RedisTarget::Single(url) => url.clone(),
            RedisTarget::Cluster(nodes) => nodes[0].clone(),
        };
        Self {
            keys: KeySpace::new(&prefix).expect("valid prefix"),
            url,
            target,
            clean_on_drop: true,
        }
    }

    /// A store on this key space; several may share it, like several processes would.
    pub async fn store(&self, config: StoreConfig) -> RedisStore {
        RedisStore::connect_to(
            &self.target,
            self.keys.clone(),
            config,
            RedisOptions::default(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test Redis at {} ({e}); start one or set \
                 JOBPULSE_TEST_REDIS_URL / JOBPULSE_TEST_REDIS_CLUSTER_NODES",
                self.url
            )
        })
    }

    pub async fn raw(&self) -> MultiplexedConnection {
        raw(&self.url).await
    }

    /// Deletes every key of this key space (also done on drop).
    pub fn clean(&self) {
        match &self.target {
            RedisTarget::Single(url) => clean_node(url, self.keys.prefix()),
            RedisTarget::Cluster(_) => {
                for master in cluster_masters(&self.url) {
                    clean_node(&master, self.keys.prefix());
                }
            }
        }
    }
}

/// `redis://host:port` of every master, from `CLUSTER NODES` asked of `seed`.
pub fn cluster_masters(seed: &str) -> Vec<String> {
    let Ok(mut con) = redis::Client::open(seed).and_then(|c| c.get_connection()) else {
        return Vec::new();
    };
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut con)
        .unwrap_or_default();
    nodes
        .lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
        .filter_map(|l| l.split(' ').nth(1))
        .filter_map(|addr| addr.split('@').next())
        .map(|addr| format!("redis://{addr}"))
        .collect()
}

fn clean_node(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut con) = client.get_connection() else {
        return;
    };
    let pattern = format!("{prefix}:*");
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut con)
        .map(|it| it.filter_map(Result::ok).collect())
        .unwrap_or_default();
    // One DEL per key: on a cluster node the keys are in many slots.
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DEL").arg(key).ignore();
        }
        let _: Result<(), _> = pipe.query(&mut con);
    }
}

impl Drop for TestSpace {
    fn drop(&mut self) {
        if self.clean_on_drop {
            self.clean();
        }
    }
}

pub async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Redis at {url}: {e}"))
}

/// A `redis-server` of our own on a free port, killed on drop.
pub struct OwnRedis {
    child: Child,
    pub port: u16,
}

impl OwnRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (e.g. `--rename-command CONFIG ""`).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("bound").port()
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let me = Self { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the server (STOP/CONT to blackhole it and bring it back).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // A stopped server must be continued to die promptly on SIGKILL's cleanup path.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
