//! One fleet for the test binary, started by `scripts/fleet` (nginx, 3 `serve` replicas, 2 video
//! and 2 AI workers; see the script), and stopped with `scripts/fleet stop` when the guard drops.
//!
//! Redis: the test Redis Cluster (`JOBPULSE_TEST_REDIS_CLUSTER_NODES`) when it is given and the
//! binary has `--redis-cluster-nodes`; else a redis-server of the fleet's own. Storage: a fresh
//! bucket on the S3 test server (`JOBPULSE_TEST_S3_ENDPOINT`) when there is one, else the
//! fleet's shared directory. Which ones were used is printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::BIN;
use crate::harness::http::Api;
use crate::harness::procs::descendants;
use crate::harness::stats::metric;

/// The script, from this crate's directory.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fleet")
}

/// The test Redis Cluster's seed nodes. Unset: `None` outside CI (the caller says what it does
/// instead); in CI (`CI=true`) a failure, since `scripts/test` always starts one.
pub fn test_cluster_nodes() -> Option<String> {
    match std::env::var("JOBPULSE_TEST_REDIS_CLUSTER_NODES") {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI needs JOBPULSE_TEST_REDIS_CLUSTER_NODES (scripts/test starts a Redis Cluster)"
        ),
        _ => None,
    }
}

/// A running fleet. See the module docs.
#[derive(Debug)]
pub struct Fleet {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    /// The load balancer.
    pub lb: Api,
    pub token: String,
    pub lecture_id: i64,
    /// `serve-1` … `serve-3` → port.
    pub replicas: BTreeMap<String, u16>,
    pub db_url: String,
    pub redis: String,
    pub storage: String,
}

impl Fleet {
    pub async fn start() -> anyhow::Result<Fleet> {
        let tmp = tempfile::Builder::new().prefix("jp-fleet-").tempdir()?;
        let dir = tmp.path().join("fleet");
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("start").arg(&dir);
        // Nothing of the caller's jobpulse settings leaks in; the fleet's come from here.
        for (k, _) in std::env::vars() {
            if k.starts_with("JOBPULSE_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.env("JOBPULSE_BIN", BIN)
            .env(
                "JOBPULSE_FLEET_DATABASE_URL",
                std::env::var("JOBPULSE_TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            )
            // A killed worker's job is taken over within seconds (the default is 30 s).
            .env("JOBPULSE_WORKER_LEASE", "5s")
            .env("RUST_LOG", "info,sqlx=warn,hyper=warn");
        match test_cluster_nodes() {
            Some(nodes) if binary_knows_cluster()? => {
                cmd.env("JOBPULSE_REDIS_CLUSTER_NODES", nodes);
            }
            Some(_) => eprintln!(
                "fleet: JOBPULSE_TEST_REDIS_CLUSTER_NODES is set but this jobpulse has no \
                 --redis-cluster-nodes yet: the fleet runs on a single redis-server"
            ),
            None => eprintln!(
                "fleet: JOBPULSE_TEST_REDIS_CLUSTER_NODES is not set: the fleet runs on a single \
                 redis-server (scripts/test starts a cluster)"
            ),
        }
        if std::env::var(jobpulse_media::testing::s3::ENDPOINT_ENV).is_ok_and(|v| !v.is_empty()) {
            use jobpulse_media::testing::s3;
            let bucket = s3::fresh_bucket().await;
            let opts = s3::options();
            cmd.env("JOBPULSE_STORAGE_URL", format!("s3://{bucket}/media"))
                .env("AWS_ENDPOINT_URL", opts.endpoint.unwrap_or_default())
                .env("AWS_REGION", opts.region.unwrap_or_default())
                .env("AWS_ACCESS_KEY_ID", opts.access_key_id.unwrap_or_default())
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    opts.secret_access_key.unwrap_or_default(),
                )
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false");
        }
        let out = cmd.output().context("running scripts/fleet start")?;
        let mut fleet = Fleet {
            dir: dir.clone(),
            _tmp: tmp,
            lb: Api::new(0),
            token: String::new(),
            lecture_id: 0,
            replicas: BTreeMap::new(),
            db_url: String::new(),
            redis: String::new(),
            storage: String::new(),
        };
        if !out.status.success() {
            bail!(
                "scripts/fleet start failed:\n{}{}",
                String::from_utf8_lossy(&out.stderr),
                fleet.logs_tail()
            );
        }
        let env = std::fs::read_to_string(dir.join("fleet.env"))?;
        let get = |k: &str| -> anyhow::Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_owned())
                .with_context(|| format!("fleet.env has no {k}"))
        };
        let url = get("JOBPULSE_URL")?;
        let port: u16 = url.rsplit(':').next().unwrap_or("").parse()?;
        fleet.lb = Api::new(port);
        fleet.token = get("JOBPULSE_TOKEN")?;
        fleet.lecture_id = get("JOBPULSE_FLEET_LECTURE_ID")?.parse()?;
        fleet.redis = get("JOBPULSE_FLEET_REDIS")?;
        fleet.storage = get("JOBPULSE_FLEET_STORAGE")?;
        let admin = std::fs::read_to_string(dir.join("db-admin"))?;
        let (base, _) = admin.trim().rsplit_once('/').context("database URL")?;
        fleet.db_url = format!("{base}/{}", get("JOBPULSE_FLEET_DATABASE")?);
        for line in std::fs::read_to_string(dir.join("ports"))?.lines() {
            if let Some((name, port)) = line.split_once(' ') {
                fleet.replicas.insert(name.to_owned(), port.parse()?);
            }
        }
        anyhow::ensure!(fleet.replicas.len() == 3, "ports: {:?}", fleet.replicas);
        Ok(fleet)
    }

    /// A new tenant (`jobpulse tenant add` on the fleet's database) and a staff token of it
    /// (`jobpulse token` with the fleet's secret): `(tenant id, lecture id, token)`.
    pub fn tenant(&self, code: &str) -> anyhow::Result<(i64, i64, String)> {
        let secret = std::fs::read_to_string(self.dir.join("jwt-secret"))?;
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(BIN)
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATABASE_URL", &self.db_url)
                .env("JOBPULSE_JWT_SECRET", secret.trim())
                .env("JOBPULSE_DATA_DIR", self.dir.join("hosts/admin"))
                .output()?;
            ensure!(
                out.status.success(),
                "jobpulse {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8(out.stdout)?.trim().to_owned())
        };
        let ids: serde_json::Value =
            serde_json::from_str(&run(&["tenant", "add", "--code", code, "--name", code])?)?;
        let tenant = ids["tenant_id"].as_i64().context("tenant_id")?;
        let lecture = ids["lecture_id"].as_i64().context("lecture_id")?;
        let token = run(&[
            "token",
            "--tenant-id",
            &tenant.to_string(),
            "--role",
            "staff",
        ])?;
        Ok((tenant, lecture, token))
    }

    /// The pid of process `name` (`serve-1`, `video-2`, …).
    pub fn pid(&self, name: &str) -> anyhow::Result<u32> {
        let s = std::fs::read_to_string(self.dir.join("pids").join(format!("{name}.pid")))?;
        Ok(s.trim().parse()?)
    }

    /// Kills process `name` and everything it started (SIGKILL): its host went away.
    pub fn kill(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid(name)?;
        let kids = descendants(pid);
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
        for k in kids {
            let _ = kill(Pid::from_raw(k as i32), Signal::SIGKILL);
        }
        Ok(())
    }

    /// Process `name`'s log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// The last lines of every process's log (for failure messages).
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("logs")) else {
            return out;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(15);
            out.push_str(&format!(
                "\n--- {} ---\n{}",
                p.display(),
                lines[from..].join("\n")
            ));
        }
        out
    }

    /// Metric `name` of each live replica's `/metrics`, summed over the series whose labels
    /// contain every `labels` entry (`route="/media/s/` matches by prefix).
    pub async fn per_replica(&self, name: &str, labels: &[&str]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (replica, port) in &self.replicas {
            if let Ok(text) = Api::new(*port).metrics().await {
                out.insert(replica.clone(), metric(&text, name, labels));
            }
        }
        out
    }

    /// A pool straight to the fleet's database (for checks, never through the fleet).
    pub fn pg(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&self.db_url)
            .expect("a lazy pool")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::env::var("JOBPULSE_FLEET_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("fleet: kept running in {}", self.dir.display());
            self._tmp.disable_cleanup(true);
            return;
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Whether the binary under test takes `--redis-cluster-nodes`.
fn binary_knows_cluster() -> anyhow::Result<bool> {
    let out = Command::new(BIN).args(["serve", "--help"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("--redis-cluster-nodes"))
}
