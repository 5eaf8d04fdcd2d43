//! Attempt runs read from the workers' logs (`job attempt started` / `stopped`, `transcode
//! attempt started` / `ended`), and the check that no two runs of one job overlap in time — the
//! "no job ran twice at once" invariant of the PostgreSQL scenarios (4 and 11).

use std::collections::{BTreeMap, HashMap};

use super::procs::Proc;

/// One run of an attempt, from a worker's log: RFC 3339 UTC timestamps, which order like the
/// instants they name.
#[derive(Debug)]
pub struct Run {
    pub start: String,
    pub stop: Option<String>,
    pub worker: String,
}

/// Runs by `(job id, attempt)`.
pub type Runs = BTreeMap<(String, u32), Vec<Run>>;

/// Reads the runs of `proc`'s log into `into`; the marker lines it could not read (no
/// timestamp, job id or attempt) go to `unread` — a log format the parser does not know must
/// fail the check, not empty it.
pub fn attempts(proc: &Proc, start: &str, stop: &str, into: &mut Runs, unread: &mut Vec<String>) {
    for line in proc.log().lines() {
        let is_start = line.contains(start);
        if !is_start && !line.contains(stop) {
            continue;
        }
        let Some(ts) = line
            .split_whitespace()
            .next()
            .filter(|t| micros(t).is_some())
        else {
            unread.push(line.to_owned());
            continue;
        };
        let field = |name: &str| {
            line.split(|c: char| c.is_whitespace() || c == '{' || c == '}')
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_matches(|c| c == '"' || c == ':').to_owned())
        };
        let (Some(job), Some(attempt)) = (
            field("job.id="),
            field("job.attempt=").and_then(|a| a.parse::<u32>().ok()),
        ) else {
            unread.push(line.to_owned());
            continue;
        };
        let runs = into.entry((job, attempt)).or_default();
        if is_start {
            runs.push(Run {
                start: ts.to_owned(),
                stop: None,
                worker: proc.name.clone(),
            });
        } else if let Some(open) = runs
            .iter_mut()
            .rev()
            .find(|r| r.stop.is_none() && r.worker == proc.name)
        {
            open.stop = Some(ts.to_owned());
        }
    }
}

/// Microseconds since the epoch of `2026-11-26T12:48:39.191339Z`.
pub fn micros(ts: &str) -> Option<i64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let frac: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000) + frac)
}

/// Pairs of runs of one job that overlap in time, and the smallest gap (ms) between a run's
/// stop and another run's start of the same job.
pub fn overlaps(runs: &Runs) -> (Vec<String>, Option<f64>) {
    let mut by_job: HashMap<&str, Vec<(u32, &Run)>> = HashMap::new();
    for ((job, attempt), rs) in runs {
        for r in rs {
            by_job.entry(job.as_str()).or_default().push((*attempt, r));
        }
    }
    let mut out = Vec::new();
    let mut gap: Option<f64> = None;
    // A run that never logged its stop lasts until the end of the log.
    let end = |r: &Run| r.stop.clone().unwrap_or_else(|| "9999".into());
    for (job, rs) in by_job {
        for (i, (a_attempt, a)) in rs.iter().enumerate() {
            for (b_attempt, b) in &rs[i + 1..] {
                if a.start < end(b) && b.start < end(a) {
                    out.push(format!(
                        "job {job}: attempt {a_attempt} on {} [{}, {:?}] and attempt {b_attempt} on {} [{}, {:?}]",
                        a.worker, a.start, a.stop, b.worker, b.start, b.stop
                    ));
                }
                let (first, second) = if a.start < b.start { (a, b) } else { (b, a) };
                if let (Some(stop), Some(start)) = (
                    first.stop.as_deref().and_then(micros),
                    micros(&second.start),
                ) {
                    let ms = (start - stop) as f64 / 1000.0;
                    gap = Some(gap.map_or(ms, |g| g.min(ms)));
                }
            }
        }
    }
    (out, gap)
}

/// Attempts in the database that no run in `runs` covers: `(last, earlier)` — a job's last
/// attempt (the one that finished it) must have been read from a log, or the overlap check
/// says nothing about it; an earlier attempt may have no run (a claim whose answer a dropped
/// connection lost was never run).
pub async fn uncovered(
    pg: &sqlx::PgPool,
    runs: &Runs,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut unlogged = Vec::new();
    let mut never_run = Vec::new();
    for (sql, kind) in [
        ("SELECT job_id, attempt FROM ai_jobs", "import"),
        ("SELECT id::text, attempt FROM video_jobs", "video job"),
    ] {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(pg).await?;
        for (job, attempt) in rows {
            let last = u32::try_from(attempt)?;
            for a in 1..=last {
                if !runs.contains_key(&(job.clone(), a)) {
                    let v = if a == last {
                        &mut unlogged
                    } else {
                        &mut never_run
                    };
                    v.push(format!("{kind} {job} attempt {a}"));
                }
            }
        }
    }
    Ok((unlogged, never_run))
}
