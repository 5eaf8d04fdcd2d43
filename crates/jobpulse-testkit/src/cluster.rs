//! A Redis Cluster of a test's own: 3 masters and 3 replicas (`redis-server` processes with
//! `cluster-enabled yes`, joined by `redis-cli --cluster create`) on free ports, with a 1 s
//! `cluster-node-timeout`, for tests that kill a node or cut a replication link. Never the
//! shared test cluster: these tests break what they run on. Every process is killed and its
//! directory removed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port whose cluster bus port (+10 000) is free too.
fn cluster_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = l.local_addr().expect("bound").port();
        if let Some(bus) = port.checked_add(10_000)
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
}

/// A Redis Cluster of our own (3 masters, 3 replicas, `cluster-node-timeout` 1 s) on free ports,
/// for tests that kill a node; every process is killed and its directory removed on drop.
#[derive(Debug)]
pub struct OwnCluster {
    nodes: Vec<(u16, Child)>,
    dir: std::path::PathBuf,
}

impl OwnCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("jp-cluster-{:016x}", rand::random::<u64>()));
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = cluster_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "1000"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed for this test");
            nodes.push((port, child));
        }
        let me = Self { nodes, dir };
        for (port, _) in &me.nodes {
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "node {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(me.nodes.iter().map(|(p, _)| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "cluster create failed: {out:?}");
        let start = Instant::now();
        while !me.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn info(port: u16, what: &str) -> String {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd(what).query(&mut c))
            .unwrap_or_default()
    }

    /// Every live node says the cluster is ok and every replica is in sync.
    pub fn healthy(&self) -> bool {
        self.nodes.iter().all(|(p, _)| {
            let state: String = redis::Client::open(format!("redis://127.0.0.1:{p}"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                .unwrap_or_default();
            let info = Self::info(*p, "INFO");
            state.contains("cluster_state:ok")
                && (info.contains("role:master") || info.contains("master_link_status:up"))
        })
    }

    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the master serving `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let client = redis::cluster::ClusterClient::new(self.nodes()).expect("valid nodes");
        let mut con = client.get_connection().expect("the cluster answers");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .expect("KEYSLOT");
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut con)
            .expect("CLUSTER NODES");
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if !f.get(2).is_some_and(|flags| flags.contains("master")) || f.len() < 9 {
                continue;
            }
            for range in &f[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<i64>(), hi.parse::<i64>())
                    && (lo..=hi).contains(&slot)
                {
                    let addr = f[1].split('@').next().expect("an address");
                    return addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .expect("a port");
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Cuts the replication link of the master on `port`: its replicas are disconnected and
    /// may not sync again (an ACL on the default user), while they stay in the cluster as its
    /// replicas — a replica far behind, as a failover would find it.
    pub fn cut_replication(&self, port: u16) {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .expect("the master answers");
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("-psync")
            .arg("-sync")
            .query(&mut c)
            .expect("ACL SETUSER");
        let _: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query(&mut c)
            .expect("CLIENT KILL");
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.nodes {
            if *p == port {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
