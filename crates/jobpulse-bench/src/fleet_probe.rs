//! Resource counters of a running fleet, sampled at the edges of a measuring window:
//!
//! - **PostgreSQL**: `pg_stat_database` of the fleet's database (`xact_commit`,
//!   `tup_returned`, `tup_fetched`), read over a connection to the *admin* database, so the
//!   probe itself adds nothing to the fleet's counters. (`pg_stat_statements` is not loaded on
//!   the shared server and loading it needs a restart.)
//! - **Redis**: `INFO commandstats` of every master (`redis-cli`), summed; each sample's own
//!   `INFO` call is taken off (one per master per window).
//! - **CPU**: `utime + stime` of `/proc/<pid>/stat` for every API replica, every Redis node
//!   (masters and replicas, their pids from `INFO server`), nginx (master and workers) and the
//!   fleet's own job workers.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

/// What a process is, for the CPU breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Group {
    Replica,
    RedisMaster,
    RedisReplica,
    Balancer,
    JobWorker,
}

impl Group {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Group::Replica => "API replicas",
            Group::RedisMaster => "Redis masters",
            Group::RedisReplica => "Redis replicas",
            Group::Balancer => "nginx",
            Group::JobWorker => "idle job workers (video/ai)",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) group: Group,
}

/// One reading of every counter.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) pg: [i64; 3],
    pub(crate) redis: BTreeMap<String, u64>,
    pub(crate) cpu_ticks: Vec<u64>,
}

/// The difference of two samples.
#[derive(Debug, Clone)]
pub(crate) struct Delta {
    pub(crate) secs: f64,
    /// xact_commit, tup_returned, tup_fetched.
    pub(crate) pg: [f64; 3],
    /// Commands on the masters by name (our own INFO taken off).
    pub(crate) redis: BTreeMap<String, f64>,
    /// CPU seconds per group.
    pub(crate) cpu: BTreeMap<Group, f64>,
}

impl Delta {
    pub(crate) fn redis_total(&self) -> f64 {
        self.redis.values().sum()
    }
    /// CPU seconds of the replicas and every Redis node (the goal's scope).
    pub(crate) fn cpu_goal_scope(&self) -> f64 {
        [Group::Replica, Group::RedisMaster, Group::RedisReplica]
            .iter()
            .filter_map(|g| self.cpu.get(g))
            .sum()
    }
    /// This window's figures minus `base`'s, scaled to this window's length.
    pub(crate) fn minus_rate_of(&self, base: &Delta) -> Delta {
        let k = self.secs / base.secs.max(1e-9);
        let mut redis = self.redis.clone();
        for (cmd, n) in &base.redis {
            *redis.entry(cmd.clone()).or_default() -= n * k;
        }
        let mut cpu = self.cpu.clone();
        for (g, s) in &base.cpu {
            *cpu.entry(*g).or_default() -= s * k;
        }
        Delta {
            secs: self.secs,
            pg: [0, 1, 2].map(|i| self.pg[i] - base.pg[i] * k),
            redis,
            cpu,
        }
    }
}

pub(crate) struct Probe {
    pool: sqlx::PgPool,
    dbname: String,
    masters: Vec<u16>,
    procs: Vec<Proc>,
    tick_hz: f64,
}

fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .context("running redis-cli")?;
    anyhow::ensure!(out.status.success(), "redis-cli -p {port} {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The port of `redis://host:port[/db]`.
pub(crate) fn port_of(url: &str) -> anyhow::Result<u16> {
    let rest = url.rsplit('@').next().unwrap_or(url);
    let rest = rest.trim_start_matches("redis://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {url:?}"))
}

/// Every node of the cluster seeded by `seed` as (port, is master); one node when it is not a
/// cluster.
fn nodes(seed: u16) -> anyhow::Result<Vec<(u16, bool)>> {
    let Ok(text) = redis_cli(seed, &["cluster", "nodes"]) else {
        return Ok(vec![(seed, true)]);
    };
    if !text.contains("myself") {
        return Ok(vec![(seed, true)]);
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[2].contains("fail") {
            continue;
        }
        let port = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("cluster nodes line {line:?}"))?;
        out.push((port, f[2].contains("master")));
    }
    Ok(out)
}

fn info_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_owned())
}

/// Children of `pid` (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    Command::new("pgrep")
        .arg("-P")
        .arg(pid.to_string())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

impl Probe {
    /// `replicas`, `balancer` and `workers` are pids; Redis nodes are found from `seed`.
    pub(crate) async fn new(
        admin_url: &str,
        dbname: &str,
        seed: u16,
        replicas: &[u32],
        balancer: Option<u32>,
        workers: &[u32],
    ) -> anyhow::Result<Probe> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .context("connecting to PostgreSQL for pg_stat_database")?;
        let mut procs: Vec<Proc> = replicas
            .iter()
            .map(|&pid| Proc {
                pid,
                group: Group::Replica,
            })
            .collect();
        let mut masters = Vec::new();
        for (port, master) in nodes(seed)? {
            let info = redis_cli(port, &["info", "server"])?;
            let pid = info_field(&info, "process_id")
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("no process_id from the Redis node on {port}"))?;
            let group = if master {
                masters.push(port);
                Group::RedisMaster
            } else {
                Group::RedisReplica
            };
            procs.push(Proc { pid, group });
        }
        if let Some(b) = balancer {
            for pid in std::iter::once(b).chain(children(b)) {
                procs.push(Proc {
                    pid,
                    group: Group::Balancer,
                });
            }
        }
        procs.extend(workers.iter().map(|&pid| Proc {
            pid,
            group: Group::JobWorker,
        }));
        let tick_hz = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Ok(Probe {
            pool,
            dbname: dbname.to_owned(),
            masters,
            procs,
            tick_hz,
        })
    }

    pub(crate) fn masters(&self) -> usize {
        self.masters.len()
    }

    pub(crate) fn count(&self, g: Group) -> usize {
        self.procs.iter().filter(|p| p.group == g).count()
    }

    pub(crate) async fn sample(&self) -> anyhow::Result<Sample> {
        let at = Instant::now();
        let cpu_ticks = self.procs.iter().map(|p| cpu_ticks(p.pid)).collect();
        let mut redis = BTreeMap::new();
        for &port in &self.masters {
            let text = redis_cli(port, &["info", "commandstats"])?;
            for line in text.lines() {
                let Some((name, rest)) = line.trim().split_once(':') else {
                    continue;
                };
                let Some(cmd) = name.strip_prefix("cmdstat_") else {
                    continue;
                };
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                *redis.entry(cmd.to_owned()).or_default() += calls;
            }
        }
        let row: (i64, i64, i64) = sqlx::query_as(
            "SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.dbname)
        .fetch_one(&self.pool)
        .await
        .context("reading pg_stat_database")?;
        Ok(Sample {
            at,
            pg: [row.0, row.1, row.2],
            redis,
            cpu_ticks,
        })
    }

    pub(crate) fn delta(&self, a: &Sample, b: &Sample) -> Delta {
        let mut redis = BTreeMap::new();
        for (cmd, n) in &b.redis {
            let mut d = n.saturating_sub(a.redis.get(cmd).copied().unwrap_or(0)) as f64;
            if cmd == "info" {
                // The later sample's own INFO commandstats, one per master.
                d = (d - self.masters.len() as f64).max(0.0);
            }
            if d > 0.0 {
                redis.insert(cmd.clone(), d);
            }
        }
        let mut cpu = BTreeMap::new();
        for (i, p) in self.procs.iter().enumerate() {
            let ticks = b.cpu_ticks[i].saturating_sub(a.cpu_ticks[i]);
            *cpu.entry(p.group).or_default() += ticks as f64 / self.tick_hz;
        }
        Delta {
            secs: b.at.duration_since(a.at).as_secs_f64(),
            pg: [0, 1, 2].map(|i| (b.pg[i] - a.pg[i]) as f64),
            redis,
            cpu,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_of_redis_urls() {
        assert_eq!(super::port_of("redis://127.0.0.1:7001").ok(), Some(7001));
        assert_eq!(super::port_of("redis://:pw@h:6380/0").ok(), Some(6380));
        assert!(super::port_of("redis://h").is_err());
    }
}
