//! The clients of scenario 14: pollers that poll every task through both API replicas in turn
//! with `If-None-Match` (the way a client behind a round-robin balancer does), and SSE streams
//! that follow a tenant and resume with `Last-Event-ID`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use super::sse::{Next, Sse};
use crate::harness::http::Api;
use crate::harness::load::Task;

pub fn terminal(status: &str) -> bool {
    matches!(
        status,
        "READY" | "FAILED" | "DONE" | "REJECTED_BAD_INPUT" | "FALLBACK_TO_GPU" | "REVIEW_REQUIRED"
    )
}

/// One poll: when it was sent (since the pollers started), which replica, its status code and
/// the body's `status` (None for a 304 or a body without one).
#[derive(Debug, Clone)]
pub struct Poll {
    pub sent: Duration,
    pub replica: usize,
    pub code: u16,
    pub status: Option<String>,
    pub took: Duration,
}

/// What the pollers saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub polls: Vec<Poll>,
    /// Transport errors (no HTTP answer at all), with when they were sent.
    pub errors: Vec<Duration>,
    /// A 200 at an older revision than the `ETag` the poller sent (the server promises a 304).
    pub older: Vec<String>,
    /// A running state shown after a terminal one.
    pub regressions: Vec<String>,
    /// 200 answers that carried a revision (the checks above measured something).
    pub checked: u64,
}

fn rev_of(etag: &str) -> Option<u64> {
    etag.trim_matches('"').strip_prefix('r')?.parse().ok()
}

/// `n` pollers over `tasks`, each polling the next task every `pause`, alternating replicas.
#[derive(Debug)]
pub struct Pollers {
    pub tasks: Arc<Mutex<Vec<(String, Task)>>>,
    pub seen: Arc<Mutex<Seen>>,
    pub started: Instant,
    stop: Arc<AtomicBool>,
    handles: tokio::task::JoinSet<()>,
}

impl Pollers {
    pub fn start(replicas: &[Api], n: usize, pause: Duration) -> Pollers {
        let tasks: Arc<Mutex<Vec<(String, Task)>>> = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut handles = tokio::task::JoinSet::new();
        for p in 0..n {
            let (tasks, seen, stop) = (tasks.clone(), seen.clone(), stop.clone());
            let replicas = replicas.to_vec();
            handles.spawn(async move {
                let mut i = p;
                // Per task: the ETag held and the status it stood for.
                let mut held: HashMap<Task, (String, String)> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let t = tasks.lock().await;
                        (!t.is_empty()).then(|| t[i % t.len()].clone())
                    };
                    let replica = i % replicas.len();
                    i += n;
                    let Some((token, task)) = pick else {
                        tokio::time::sleep(pause).await;
                        continue;
                    };
                    let api = &replicas[replica];
                    let path = match &task {
                        Task::Video(id) => format!("/api/v1/media/videos/{id}/progress/"),
                        Task::Job(id) => format!("/api/v1/jobs/{id}/progress/"),
                    };
                    let mut req = api.client.get(api.url(&path)).bearer_auth(&token);
                    if let Some((etag, _)) = held.get(&task) {
                        req = req.header("If-None-Match", etag);
                    }
                    let sent = started.elapsed();
                    let r = api.send(req).await;
                    let mut s = seen.lock().await;
                    let r = match r {
                        Ok(r) => r,
                        Err(_) => {
                            s.errors.push(sent);
                            drop(s);
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    };
                    let body: Option<String> = (r.status == 200)
                        .then(|| r.json().ok())
                        .flatten()
                        .and_then(|v| v["status"].as_str().map(str::to_owned));
                    s.polls.push(Poll {
                        sent,
                        replica,
                        code: r.status,
                        status: body.clone(),
                        took: r.elapsed,
                    });
                    let etag = r
                        .headers
                        .get("etag")
                        .and_then(|e| e.to_str().ok())
                        .map(str::to_owned);
                    if let (200, Some(status), Some(etag)) = (r.status, body, etag)
                        && status != "UNKNOWN"
                        && let Some(rev) = rev_of(&etag)
                    {
                        s.checked += 1;
                        if let Some((old_tag, old_status)) = held.get(&task) {
                            let old_rev = rev_of(old_tag).unwrap_or(0);
                            if rev < old_rev {
                                s.older.push(format!(
                                    "poller {p}: {task:?} r{rev} ({status}) from replica \
                                     {replica} after r{old_rev} ({old_status})"
                                ));
                            }
                            if terminal(old_status) && !terminal(&status) {
                                s.regressions.push(format!(
                                    "poller {p}: {task:?} {old_status} (r{old_rev}) → {status} \
                                     (r{rev}) from replica {replica}"
                                ));
                            }
                            if rev < old_rev {
                                drop(s);
                                tokio::time::sleep(pause).await;
                                continue;
                            }
                        }
                        held.insert(task.clone(), (etag, status));
                    }
                    drop(s);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        Pollers {
            tasks,
            seen,
            started,
            stop,
            handles,
        }
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

/// What one SSE client saw.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// The last status received per task.
    pub last: BTreeMap<Task, String>,
    pub events: u64,
    /// Streams opened (the first included).
    pub opens: u64,
    /// Opens that failed (status or transport), by reason's first words.
    pub failed_opens: BTreeMap<String, u64>,
    /// Why streams ended (other than the test cutting them).
    pub closed: Vec<String>,
    /// The ids the resumed streams were opened with.
    pub resumed_from: Vec<String>,
    /// Time from the cut to the first event received after it.
    pub first_event_after_cut: Option<Duration>,
}

/// An SSE client of `url` (the tenant's `?all=true` stream) that records every event; when
/// `cut` is notified it drops its connection and opens a new one with `Last-Event-ID`, and it
/// does the same whenever the server ends the stream. Retries opening every 200 ms.
pub struct Watcher {
    pub log: Arc<Mutex<StreamLog>>,
    stop: Arc<AtomicBool>,
    pub cut: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub async fn start(url: String, token: String) -> anyhow::Result<Watcher> {
        let log: Arc<Mutex<StreamLog>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Notify::new());
        // The first stream is open before anything is submitted (`all=true` sends changes only).
        let first = Sse::open(&url, &token, None).await?;
        log.lock().await.opens = 1;
        let handle = tokio::spawn({
            let (log, stop, cut) = (log.clone(), stop.clone(), cut.clone());
            async move {
                let mut sse = Some(first);
                let mut last_id: Option<String> = None;
                let mut cut_at: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(s) = sse.as_mut() else {
                        match Sse::open(&url, &token, last_id.as_deref()).await {
                            Ok(s) => {
                                let mut l = log.lock().await;
                                l.opens += 1;
                                l.resumed_from.push(last_id.clone().unwrap_or_default());
                                sse = Some(s);
                            }
                            Err(e) => {
                                let why: String = e
                                    .to_string()
                                    .split_whitespace()
                                    .take(6)
                                    .collect::<Vec<_>>()
                                    .join(" ");
                                *log.lock().await.failed_opens.entry(why).or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        continue;
                    };
                    let next = tokio::select! {
                        n = s.next(Duration::from_millis(500)) => n,
                        () = cut.notified() => {
                            sse = None;
                            cut_at = Some(Instant::now());
                            continue;
                        }
                    };
                    match next {
                        Next::Timeout => {}
                        Next::Closed(why) => {
                            log.lock().await.closed.push(why);
                            sse = None;
                        }
                        Next::Event(ev) => {
                            if ev.id.is_some() {
                                last_id.clone_from(&ev.id);
                            }
                            let Ok(v) = ev.json() else { continue };
                            let task = match ev.event.as_str() {
                                "video" => v["id"].as_i64().map(Task::Video),
                                "job" => v["job_id"].as_str().map(|j| Task::Job(j.to_owned())),
                                _ => None,
                            };
                            let mut l = log.lock().await;
                            l.events += 1;
                            if let Some(at) = cut_at.take() {
                                l.first_event_after_cut = Some(at.elapsed());
                            }
                            if let (Some(task), Some(status)) = (task, v["status"].as_str()) {
                                l.last.insert(task, status.to_owned());
                            }
                        }
                    }
                }
            }
        });
        Ok(Watcher {
            log,
            stop,
            cut,
            handle,
        })
    }

    pub async fn snapshot(&self) -> StreamLog {
        self.log.lock().await.clone()
    }

    pub async fn stop(self) -> StreamLog {
        self.stop.store(true, Ordering::Relaxed);
        let log = self.log.clone();
        let _ = self.handle.await;
        log.lock().await.clone()
    }
}
