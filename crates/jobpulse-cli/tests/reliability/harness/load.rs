//! A workload for the outage scenarios: excel imports and videos submitted through the API,
//! pollers that watch them the way the work box does (counting every answer, checking that
//! what they see never goes backwards), and the checks against the database afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::TenantSeed;
use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::Mutex;

use super::http::Api;

/// One tenant of the workload.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub seed: TenantSeed,
    pub token: String,
}

/// A task the workload created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Video(i64),
    Job(String),
}

/// An excel workbook of `rows` distinct students (distinct per `seed`).
pub fn workbook(rows: u32, seed: u64) -> anyhow::Result<(Vec<u8>, usize)> {
    let spec = WorkbookSpec {
        seed,
        ..WorkbookSpec::valid_rows(rows)
    };
    let g = generate_students_workbook(&spec)?;
    Ok((g.bytes, g.expected.unique()))
}

/// What pollers saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Answers by status code.
    pub codes: BTreeMap<u16, u64>,
    /// Transport errors (timeouts, refused connections).
    pub errors: u64,
    /// Latency of every answer, with when it was sent (since the pollers started).
    pub latencies: Vec<(Duration, Duration)>,
    /// A non-terminal answer at a newer revision than a terminal one (the tests use one
    /// generation per task).
    pub regressions: Vec<String>,
    /// A percent that went down within one attempt of one task, between two revisions.
    pub backwards: Vec<String>,
    /// Statuses seen per task, in revision order (consecutive duplicates collapsed).
    pub history: HashMap<Task, Vec<String>>,
    /// Answers older (by revision) than one the same poller had already been given: a user
    /// would see time go backwards. Revisions restart when Redis loses its data, so scenarios
    /// that flush Redis cannot use this.
    pub older: Vec<String>,
    /// Answers that carried a revision and were checked against the ones before: the checks
    /// above measured nothing if this stays 0 (e.g. no `ETag`).
    pub checked: u64,
}

impl Seen {
    /// The pollers' invariants, as `INVARIANT VIOLATED` errors: some answers were checked, no
    /// terminal state regressed, no percent went back within an attempt, and (with
    /// `older_too`, where Redis keeps its data) no poller was given an older revision than it
    /// had seen.
    pub fn invariants(&self, older_too: bool) -> anyhow::Result<()> {
        crate::invariant!(
            self.checked > 0,
            "no poll answer carried a revision: the pollers checked nothing ({:?})",
            self.codes
        );
        crate::invariant!(
            self.regressions.is_empty(),
            "terminal regressions: {:?}",
            self.regressions
        );
        crate::invariant!(
            self.backwards.is_empty(),
            "percent went back within an attempt: {:?}",
            self.backwards
        );
        if older_too {
            crate::invariant!(
                self.older.is_empty(),
                "a poller was answered with an older revision than it had seen: {:?}",
                self.older
            );
        }
        Ok(())
    }
}

/// One answer about a task, at the record's revision.
#[derive(Debug, Clone, Default)]
struct Last {
    rev: u64,
    status: String,
    attempt: Option<u64>,
    percent: i64,
}

/// What the pollers saw of a task: the newest answer, and the first terminal one.
#[derive(Debug, Default)]
struct Track {
    newest: Option<Last>,
    terminal: Option<Last>,
}

/// Pollers over a growing set of tasks; see [`Pollers::start`].
#[derive(Debug)]
pub struct Pollers {
    pub tasks: Arc<Mutex<Vec<(usize, Task)>>>,
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    handles: tokio::task::JoinSet<()>,
    pub started: Instant,
}

fn terminal(status: &str) -> bool {
    matches!(
        status,
        "READY" | "FAILED" | "DONE" | "REJECTED_BAD_INPUT" | "FALLBACK_TO_GPU" | "REVIEW_REQUIRED"
    )
}

impl Pollers {
    /// `n` pollers, each picking the next task round-robin every `pause`.
    pub fn start(api: &Api, tenants: &[Tenant], n: usize, pause: Duration) -> Pollers {
        let tasks: Arc<Mutex<Vec<(usize, Task)>>> = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut handles = tokio::task::JoinSet::new();
        let last: Arc<Mutex<HashMap<Task, Track>>> = Arc::default();
        for p in 0..n {
            let (api, tasks, seen, stop, last) = (
                api.clone(),
                tasks.clone(),
                seen.clone(),
                stop.clone(),
                last.clone(),
            );
            let tokens: Vec<String> = tenants.iter().map(|t| t.token.clone()).collect();
            handles.spawn(async move {
                let mut i = p;
                let mut mine: HashMap<Task, u64> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let t = tasks.lock().await;
                        (!t.is_empty()).then(|| t[i % t.len()].clone())
                    };
                    i += n;
                    let Some((tenant, task)) = pick else {
                        tokio::time::sleep(pause).await;
                        continue;
                    };
                    let path = match &task {
                        Task::Video(id) => format!("/api/v1/media/videos/{id}/progress/"),
                        Task::Job(id) => format!("/api/v1/jobs/{id}/progress/"),
                    };
                    let sent = started.elapsed();
                    let r = api.get(&path, Some(&tokens[tenant])).await;
                    let mut s = seen.lock().await;
                    let r = match r {
                        Ok(r) => r,
                        Err(_) => {
                            s.errors += 1;
                            drop(s);
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    };
                    *s.codes.entry(r.status).or_default() += 1;
                    s.latencies.push((sent, r.elapsed));
                    if r.status == 200
                        && let Ok(v) = r.json()
                    {
                        let status = v["status"].as_str().unwrap_or_default().to_owned();
                        let percent = match &task {
                            Task::Video(_) => v["progress"].as_i64().unwrap_or(0),
                            Task::Job(_) => v["progress"]["percent"].as_i64().unwrap_or(-1),
                        };
                        let attempt = v["attempt"].as_u64();
                        // Answers of concurrent polls arrive in any order: compare by the
                        // record's revision (the ETag), never by arrival.
                        let rev = r
                            .headers
                            .get("etag")
                            .and_then(|e| e.to_str().ok())
                            .and_then(|e| e.trim_matches('"').strip_prefix('r'))
                            .and_then(|e| e.parse::<u64>().ok());
                        if let Some(rev) = rev {
                            let seen_rev = mine.entry(task.clone()).or_default();
                            if rev < *seen_rev {
                                s.older.push(format!(
                                    "poller {p}: {task:?} rev {rev} ({status}) after rev {seen_rev}"
                                ));
                            }
                            *seen_rev = (*seen_rev).max(rev);
                        }
                        let mut l = last.lock().await;
                        if let (Some(rev), true) = (rev, status != "UNKNOWN") {
                            s.checked += 1;
                            let now = Last { rev, status: status.clone(), attempt, percent };
                            let entry = l.entry(task.clone()).or_default();
                            if let Some(t) = &entry.terminal
                                && rev > t.rev
                                && !terminal(&status)
                            {
                                s.regressions.push(format!("{task:?}: {} (rev {}) → {status} (rev {rev})", t.status, t.rev));
                            }
                            if let Some(prev) = &entry.newest
                                && rev > prev.rev
                                && prev.status == status
                                && prev.attempt == attempt
                                && attempt.is_some()
                                && percent >= 0
                                && percent < prev.percent
                                && !terminal(&status)
                            {
                                s.backwards.push(format!(
                                    "{task:?}: {status} attempt {attempt:?} {} (rev {}) → {percent} (rev {rev})",
                                    prev.percent, prev.rev
                                ));
                            }
                            if terminal(&status) && entry.terminal.as_ref().is_none_or(|t| rev < t.rev) {
                                entry.terminal = Some(now.clone());
                            }
                            if entry.newest.as_ref().is_none_or(|p| rev > p.rev) {
                                // In revision order, not arrival order: answers of the two
                                // pollers' concurrent requests may arrive swapped.
                                let h = s.history.entry(task.clone()).or_default();
                                if h.last() != Some(&status) {
                                    h.push(status.clone());
                                }
                                entry.newest = Some(now);
                            }
                        }
                    }
                    drop(s);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        Pollers {
            tasks,
            seen,
            stop,
            handles,
            started,
        }
    }

    pub async fn add(&self, tenant: usize, task: Task) {
        self.tasks.lock().await.push((tenant, task));
    }

    /// Stops the pollers; a poller that panicked fails the test here.
    pub async fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(r) = self.handles.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        std::mem::take(&mut *self.seen.lock().await)
    }
}

/// Database statuses of every video and AI job, by task.
pub async fn db_statuses(pg: &sqlx::PgPool) -> anyhow::Result<BTreeMap<Task, (i64, String)>> {
    let mut out = BTreeMap::new();
    for r in sqlx::query("SELECT id, tenant_id, status FROM videos WHERE deleted_at IS NULL")
        .fetch_all(pg)
        .await?
    {
        out.insert(
            Task::Video(r.try_get("id")?),
            (r.try_get("tenant_id")?, r.try_get("status")?),
        );
    }
    for r in sqlx::query("SELECT job_id, tenant_id, status FROM ai_jobs")
        .fetch_all(pg)
        .await?
    {
        out.insert(
            Task::Job(r.try_get("job_id")?),
            (r.try_get("tenant_id")?, r.try_get("status")?),
        );
    }
    Ok(out)
}

/// Rows left in the outbox.
pub async fn outbox(pg: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query("SELECT count(*) AS n FROM outbox")
        .fetch_one(pg)
        .await?
        .try_get("n")?)
}

/// Tasks whose status in the read model (read through the batch API) differs from the
/// database's; `tenants` maps a tenant id to a token.
pub async fn mismatches(
    api: &Api,
    pg: &sqlx::PgPool,
    tokens: &HashMap<i64, String>,
) -> anyhow::Result<Vec<String>> {
    let db = db_statuses(pg).await?;
    let mut by_tenant: HashMap<i64, Vec<(&Task, &String)>> = HashMap::new();
    for (task, (tenant, status)) in &db {
        by_tenant.entry(*tenant).or_default().push((task, status));
    }
    let mut out = Vec::new();
    for (tenant, tasks) in by_tenant {
        let token = tokens.get(&tenant).context("a token for every tenant")?;
        for chunk in tasks.chunks(200) {
            let videos: Vec<i64> = chunk
                .iter()
                .filter_map(|(t, _)| match t {
                    Task::Video(v) => Some(*v),
                    _ => None,
                })
                .collect();
            let jobs: Vec<&str> = chunk
                .iter()
                .filter_map(|(t, _)| match t {
                    Task::Job(j) => Some(j.as_str()),
                    _ => None,
                })
                .collect();
            let r = api
                .post_json(
                    "/api/v1/progress/",
                    token,
                    &serde_json::json!({"videos": videos, "jobs": jobs}),
                )
                .await?;
            anyhow::ensure!(r.status == 200, "batch answered {}: {}", r.status, r.text());
            let v = r.json()?;
            for (task, status) in chunk {
                let got: &Value = match task {
                    Task::Video(id) => &v["videos"][id.to_string()]["status"],
                    Task::Job(id) => &v["jobs"][id.as_str()]["status"],
                };
                let got = got.as_str().unwrap_or("UNKNOWN");
                if got != status.as_str() {
                    out.push(format!("{task:?}: database {status}, read model {got}"));
                }
            }
        }
    }
    Ok(out)
}

/// Student rows that share a tenant, name and parent phone with another (duplicates).
pub async fn duplicate_students(pg: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query(
        "SELECT count(*) AS n FROM (SELECT tenant_id, name, parent_phone FROM students \
         WHERE deleted_at IS NULL GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    .fetch_one(pg)
    .await?
    .try_get("n")?)
}

/// Students per tenant.
pub async fn students(pg: &sqlx::PgPool) -> anyhow::Result<HashMap<i64, i64>> {
    let mut out = HashMap::new();
    for r in sqlx::query(
        "SELECT tenant_id, count(*) AS n FROM students WHERE deleted_at IS NULL GROUP BY 1",
    )
    .fetch_all(pg)
    .await?
    {
        out.insert(r.try_get("tenant_id")?, r.try_get("n")?);
    }
    Ok(out)
}
