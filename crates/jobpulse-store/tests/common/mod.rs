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
use jobpulse_store::{RedisStore, StoreConfig};
use redis::aio::MultiplexedConnection;

pub fn redis_url() -> String {
    std::env::var("JOBPULSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key space of its own for one test (or one proptest case); its keys are deleted on drop.
pub struct TestSpace {
    pub keys: KeySpace,
    pub url: String,
}

impl TestSpace {
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    pub fn on(url: &str) -> Self {
        let prefix = format!("t-{:016x}", rand::random::<u64>());
        Self {
            keys: KeySpace::new(&prefix).expect("valid prefix"),
            url: url.to_owned(),
        }
    }

    /// A store on this key space; several may share it, like several processes would.
    pub async fn store(&self, config: StoreConfig) -> RedisStore {
        RedisStore::connect(&self.url, self.keys.clone(), config)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test Redis at {} ({e}); start one or set \
                     JOBPULSE_TEST_REDIS_URL",
                    self.url
                )
            })
    }

    pub async fn raw(&self) -> MultiplexedConnection {
        raw(&self.url).await
    }

    /// Deletes every key of this key space (also done on drop).
    pub fn clean(&self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.keys.prefix());
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
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut con);
        }
    }
}

impl Drop for TestSpace {
    fn drop(&mut self) {
        self.clean();
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
