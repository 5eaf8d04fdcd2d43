//! The fleet benchmark's printed table: polls, PostgreSQL transactions, Redis commands and CPU
//! per poll, net of the baseline window.

use super::FleetOptions;
use crate::fleet_load as load;
use crate::fleet_probe::Delta;

pub(super) fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

#[allow(clippy::print_stdout)]
pub(super) fn report(
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
