//! `--only fleet`: the fleet benchmark (issue 14, item 6).
//!
//! A fleet of `scripts/fleet` — nginx in front of R `jobpulse serve` replicas, the idle video
//! and AI workers, PostgreSQL, and a Redis Cluster of `scripts/redis-cluster` (started here
//! unless `JOBPULSE_REDIS_CLUSTER_NODES` names one) — is started (or reused, `--fleet-dir`),
//! and driven through the balancer by T tenants × B browsers, each browser polling its work
//! box of K videos at the front end's cadence (5 s in a task's first minute, 15 s until
//! 10 minutes, 30 s after), a share of hidden tabs not polling, plus SSE watchers, while W
//! simulated workers write a progress tick a second to the read model.
//!
//! **Time compression**: every task gets an age drawn uniformly from `[0, --fleet-task-ages)`
//! at the start (and ages in real time from there), so a short run has the cadence mix of a
//! steady state in which tasks are watched for that long.
//!
//! **Windows**: (1) *baseline* — workers writing and SSE watchers open, no polls; (2) polls
//! start, *warm-up*; (3) *measured*. The counters of [`fleet_probe`](crate::fleet_probe) are
//! read at the edges of (1) and (3); what the polls cost is (3) minus (1)'s rate × (3)'s
//! length, divided by the polls of (3).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_domain::TenantId;
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisOptions, RedisStore, RedisTarget, SharedStore, StoreConfig};

use crate::fleet_load::{self as load, Layout, Polled, Rng};
use crate::fleet_probe::{Delta, Group, Probe, port_of};

#[derive(Debug, Clone)]
pub(crate) struct FleetOptions {
    pub(crate) fleet_dir: Option<PathBuf>,
    pub(crate) replicas: usize,
    pub(crate) layout: Layout,
    pub(crate) hidden_pct: u32,
    pub(crate) watchers: usize,
    pub(crate) workers: usize,
    pub(crate) connections: usize,
    pub(crate) task_ages: Duration,
    pub(crate) baseline: Duration,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// A running fleet, as its directory describes it.
struct Fleet {
    lb: SocketAddr,
    secret: String,
    key_prefix: String,
    target: RedisTarget,
    admin_url: String,
    dbname: String,
    replicas: Vec<u32>,
    balancer: Option<u32>,
    workers: Vec<u32>,
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
    fn start(replicas: usize) -> anyhow::Result<Fleet> {
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
    fn read(dir: &Path) -> anyhow::Result<Fleet> {
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

    fn seed_port(&self) -> anyhow::Result<u16> {
        match &self.target {
            RedisTarget::Single(u) => port_of(u),
            RedisTarget::Cluster(n) => port_of(n.first().context("no seed node")?),
        }
    }
}

fn tokens(secret: &str, tenants: usize) -> anyhow::Result<Vec<String>> {
    let verifier = Verifier::new(AuthConfig::hs256(secret.as_bytes())?);
    (0..tenants)
        .map(|t| {
            verifier
                .mint(&TokenSpec {
                    tenant: TenantId::new(load::TENANT_BASE + t as i64)?,
                    tenant_code: None,
                    user_id: Some(format!("{}", 100 + t)),
                    role: Some("teacher".into()),
                    ttl_secs: 3 * 3600,
                    worker: false,
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

/// Runs the scenario and prints its report.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(o: FleetOptions) -> anyhow::Result<()> {
    let fleet = match &o.fleet_dir {
        Some(dir) => Fleet::read(dir)?,
        // Blocking, before any load runs.
        None => Fleet::start(o.replicas)?,
    };
    let probe = Probe::new(
        &fleet.admin_url,
        &fleet.dbname,
        fleet.seed_port()?,
        &fleet.replicas,
        fleet.balancer,
        &fleet.workers,
    )
    .await?;
    let l = o.layout;
    println!(
        "\n## fleet\n\nbalancer {}; {} replicas; Redis: {} masters, {} replicas; key prefix {}; \
         database {}",
        fleet.lb,
        fleet.replicas.len(),
        probe.masters(),
        probe.count(Group::RedisReplica),
        fleet.key_prefix,
        fleet.dbname
    );
    let store: SharedStore = Arc::new(
        RedisStore::connect_to(
            &fleet.target,
            KeySpace::new(&fleet.key_prefix)?,
            StoreConfig::default(),
            RedisOptions::default(),
        )
        .await
        .context("connecting the workers' store")?,
    );
    load::seed(&store, l).await?;
    let tokens = Arc::new(tokens(&fleet.secret, l.tenants)?);

    // Who polls what: hidden tabs poll nothing.
    let mut rng = Rng::new(14);
    let (mut polled, mut hidden) = (Vec::new(), 0usize);
    for i in 0..l.boxes() {
        let (t, videos) = l.box_of(i);
        if rng.unit() * 100.0 < f64::from(o.hidden_pct) {
            hidden += 1;
            continue;
        }
        for video in videos {
            let age0 = o.task_ages.mul_f64(rng.unit());
            polled.push(Polled {
                tenant: t,
                video,
                age0,
            });
        }
    }
    let expected_rate: f64 = polled
        .iter()
        .map(|p| 1.0 / load::cadence(p.age0).as_secs_f64())
        .sum();

    // Workers and watchers run through every window.
    let t0 = Instant::now();
    let open_for = Duration::from_secs(3);
    let base_start = t0 + open_for;
    let polls_start = base_start + o.baseline;
    let window = (polls_start + o.warmup, polls_start + o.warmup + o.duration);
    let end = window.1 + Duration::from_millis(500);
    let writes = Arc::new(load::Writes::default());
    let seen = Arc::new(load::Watched {
        lag_us: std::sync::Mutex::new(hdrhistogram::Histogram::new(3)?),
        deliveries: Default::default(),
        opened: Default::default(),
        span: (base_start, window.1 - Duration::from_secs(2)),
    });
    let mut watchers_of = vec![0usize; l.boxes()];
    let mut bg = Vec::new();
    for w in 0..o.workers {
        bg.push(tokio::spawn(load::worker(
            store.clone(),
            l,
            w,
            o.workers,
            writes.clone(),
            end,
        )));
    }
    for s in 0..o.watchers {
        let boxn = s % o.workers.max(1) % l.boxes();
        watchers_of[boxn] += 1;
        let (t, videos) = l.box_of(boxn);
        bg.push(tokio::spawn(load::watcher(
            fleet.lb,
            tokens[t].clone(),
            videos,
            writes.clone(),
            seen.clone(),
            end,
        )));
    }
    tokio::time::sleep_until(base_start.into()).await;
    let b0 = probe.sample().await?;
    tokio::time::sleep_until(polls_start.into()).await;
    let b1 = probe.sample().await?;

    let c = o.connections.max(1);
    let mut per_conn: Vec<Vec<Polled>> = vec![Vec::new(); c];
    for (i, p) in polled.iter().enumerate() {
        per_conn[i % c].push(p.clone());
    }
    let mut pollers = Vec::new();
    for (i, tasks) in per_conn.into_iter().enumerate() {
        pollers.push(tokio::spawn(load::poller(
            fleet.lb,
            tokens.clone(),
            tasks,
            polls_start,
            window,
            i as u64,
        )));
    }
    tokio::time::sleep_until(window.0.into()).await;
    let m0 = probe.sample().await?;
    tokio::time::sleep_until(window.1.into()).await;
    let m1 = probe.sample().await?;
    let mut stats = load::PollStats::new()?;
    for p in pollers {
        stats.add(&p.await??)?;
    }
    for b in bg {
        if let Err(e) = b.await? {
            println!("note: {e:#}");
        }
    }
    let base = probe.delta(&b0, &b1);
    let meas = probe.delta(&m0, &m1);
    let expected_deliveries: usize = {
        let sent = writes
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.values()
            .filter(|(at, _)| *at >= seen.span.0 && *at < seen.span.1)
            .map(|(_, b)| watchers_of[*b])
            .sum()
    };
    report(
        &o,
        &stats,
        &base,
        &meas,
        hidden,
        polled.len(),
        expected_rate,
    );
    let lag = seen
        .lag_us
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!(
        "| SSE: watchers open · deliveries / expected · lag p50 / p99 / max ms | {} of {} · {} / {} · {:.2} / {:.2} / {:.2} |",
        seen.opened.load(std::sync::atomic::Ordering::Relaxed),
        o.watchers,
        seen.deliveries.load(std::sync::atomic::Ordering::Relaxed),
        expected_deliveries,
        ms(&lag, 0.5),
        ms(&lag, 0.99),
        lag.max() as f64 / 1000.0
    );
    println!(
        "| worker writes (all windows) · failed | {} · {} |",
        writes.next.load(std::sync::atomic::Ordering::Relaxed),
        writes.failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(fleet);
    Ok(())
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

#[allow(clippy::print_stdout)]
fn report(
    o: &FleetOptions,
    stats: &load::PollStats,
    base: &Delta,
    meas: &Delta,
    hidden: usize,
    polled: usize,
    expected_rate: f64,
) {
    let l = o.layout;
    let polls = stats.polls() as f64;
    let net = meas.minus_rate_of(base);
    println!(
        "\n{} tenants × {} browsers × {} videos; {} % hidden ({hidden} of {} tabs); {polled} \
         tasks polled (ages uniform in 0–{} s: {:.0} polls/s due); {} SSE watchers; {} workers \
         × 1 write/s; {} connections; baseline {} s, warm-up {} s, measured {} s\n",
        l.tenants,
        l.browsers,
        l.tasks,
        o.hidden_pct,
        l.boxes(),
        o.task_ages.as_secs(),
        expected_rate,
        o.watchers,
        o.workers,
        o.connections,
        base.secs.round(),
        o.warmup.as_secs(),
        meas.secs.round()
    );
    println!("| figure | value |\n|---|---|");
    println!(
        "| polls/s (200 · 304 · errors · other) | {:.1} ({} · {} · {} · {}) |",
        polls / meas.secs,
        stats.ok,
        stats.not_modified,
        stats.errors,
        stats.bad_status
    );
    println!(
        "| poll latency p50 / p99 / max ms (sent late: p99 ms) | {:.2} / {:.2} / {:.2} ({:.2}) |",
        ms(&stats.lat_us, 0.5),
        ms(&stats.lat_us, 0.99),
        stats.lat_us.max() as f64 / 1000.0,
        ms(&stats.late_us, 0.99)
    );
    let per = |x: f64| x / polls.max(1.0);
    println!(
        "| PostgreSQL transactions/s of the fleet's database: baseline · measured | {:.2} · {:.2} (tup_returned/s {:.0} · {:.0}) |",
        base.pg[0] / base.secs,
        meas.pg[0] / meas.secs,
        base.pg[1] / base.secs,
        meas.pg[1] / meas.secs
    );
    println!(
        "| **PostgreSQL transactions per poll** (net of baseline) · tup_returned · tup_fetched per poll | **{:.4}** · {:.3} · {:.3} |",
        per(net.pg[0]),
        per(net.pg[1]),
        per(net.pg[2])
    );
    println!(
        "| Redis commands/s on the masters: baseline · measured | {:.0} · {:.0} |",
        base.redis_total() / base.secs,
        meas.redis_total() / meas.secs
    );
    let mut top: Vec<(&String, &f64)> = net.redis.iter().filter(|(_, n)| n.abs() >= 1.0).collect();
    top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let top: Vec<String> = top
        .iter()
        .take(6)
        .map(|(c, n)| format!("{c} {:.3}", per(**n)))
        .collect();
    println!(
        "| **Redis commands per poll** (net) · by command | **{:.3}** · {} |",
        per(net.redis_total()),
        top.join(", ")
    );
    let cpu_line = |d: &Delta| -> String {
        d.cpu
            .iter()
            .map(|(g, s)| format!("{} {:.1} %", g.label(), 100.0 * s / d.secs))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| CPU, baseline (of one core) | {} |", cpu_line(base));
    println!("| CPU, measured (of one core) | {} |", cpu_line(meas));
    let by_group: Vec<String> = net
        .cpu
        .iter()
        .map(|(g, s)| format!("{} {:.1}", g.label(), per(*s) * 1e6))
        .collect();
    println!(
        "| **CPU per poll, replicas + Redis** (net) · gross (all of the measured window) | **{:.1} µs** · {:.1} µs |",
        per(net.cpu_goal_scope()) * 1e6,
        per(meas.cpu_goal_scope()) * 1e6
    );
    println!(
        "| CPU per poll by process (net, µs) | {} |",
        by_group.join(", ")
    );
}
