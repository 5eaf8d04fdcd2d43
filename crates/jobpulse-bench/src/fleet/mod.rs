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
//!
//! The submodules: `running` (the fleet: started here or read from its directory, stopped
//! on drop) and `report` (the printed table); the load is [`crate::fleet_load`], the counters
//! [`crate::fleet_probe`].

mod report;
mod running;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_domain::TenantId;
use jobpulse_domain::keys::KeySpace;
use jobpulse_store::{RedisOptions, RedisStore, SharedStore, StoreConfig};

use self::report::{ms, report};
use self::running::Fleet;
use crate::fleet_load::{self as load, Layout, Polled, Rng};
use crate::fleet_probe::{Group, Probe};

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
