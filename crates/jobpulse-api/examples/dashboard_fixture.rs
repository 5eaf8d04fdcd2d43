//! A server for the dashboard's browser render test (`tests/browser/render.spec.mjs`).
//!
//! It runs the real API router (dashboard, progress, batch, SSE) over the in-process read
//! model, with no database: the list, upload and job endpoints are absent, exactly as on a
//! `serve` without them. The test plays the workers' part by writing progress into the read
//! model through stdin, one JSON command per line:
//!
//! ```text
//! {"kind":"video","id":1,"status":"PROCESSING","percent":40,"step":[4,0.5],"remaining":84}
//! {"kind":"job","id":"imp1","job_type":"excel_parsing","status":"DONE","result":{"created":3}}
//! ```
//!
//! Optional fields: `generation` (default 1), `attempt` (default 1; the fence's), `step` =
//! `[index, fraction]` (the video or Excel-import step plan, by kind and job type), `remaining`,
//! `error`, `hls_path`, `duration`, `result`, `shown_attempt` (the state's `attempt`, e.g. 1 for
//! the RETRY_WAIT written with fence attempt 2), `max_attempts`, `retry_in` (seconds from now:
//! `retry_at`). The sequence number is kept per task. Each command is answered with one line:
//! `{"ok":true,"outcome":"Applied"}` or `{"ok":false,"error":…}`.
//!
//! On start it prints one line: `{"url":…,"staff_token":…,"student_token":…}`. It stops at the
//! end of stdin. `FIXTURE_SSE_CAP=0` makes every stream answer 429, to exercise the page's
//! polling fallback; `FIXTURE_STALLED_AFTER_MS` sets when a running task is shown `stalled`
//! (default 20 000).

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::sync::Arc;

use anyhow::{Context, bail};
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_api::{AppSettings, Application, SseSettings};
use jobpulse_domain::{
    Fence, JobId, JobResult, JobType, Percent, State, Status, TaskKey, TaskKind, TenantId, Text,
    VideoId, Write, steps,
};
use jobpulse_store::{MemoryStore, SharedStore};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

const TENANT: i64 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    kind: String,
    id: serde_json::Value,
    status: String,
    #[serde(default)]
    job_type: Option<String>,
    #[serde(default)]
    percent: Option<u8>,
    #[serde(default)]
    step: Option<(u8, f64)>,
    #[serde(default)]
    remaining: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    generation: Option<u32>,
    #[serde(default)]
    hls_path: Option<String>,
    #[serde(default)]
    duration: Option<u32>,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    shown_attempt: Option<u32>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    retry_in: Option<u64>,
}

fn id_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_write(cmd: Command, seqs: &mut HashMap<String, u64>) -> anyhow::Result<Write> {
    let tenant = TenantId::new(TENANT)?;
    let id = id_text(&cmd.id);
    let (key, kind) = match cmd.kind.as_str() {
        "video" => (
            TaskKey::video(tenant, VideoId::parse(&id)?),
            TaskKind::Video,
        ),
        "job" => (TaskKey::job(tenant, JobId::parse(&id)?), TaskKind::Job),
        other => bail!("kind must be video or job, not {other:?}"),
    };
    let status = Status::parse(kind, &cmd.status).context("unknown status")?;
    let mut state = match (kind, &cmd.job_type) {
        (TaskKind::Job, Some(t)) => State {
            job_type: Some(JobType::parse(t)?),
            ..State::new(status)
        },
        (TaskKind::Job, None) => bail!("a job needs job_type"),
        _ => State::new(status),
    };
    let plan = match (kind, cmd.job_type.as_deref()) {
        (TaskKind::Video, _) => steps::VIDEO,
        (_, Some(JobType::EXCEL_PARSING)) => steps::EXCEL_IMPORT,
        _ => steps::EXPORT,
    };
    if let Some((index, fraction)) = cmd.step {
        state.step = Some(plan.step(index, fraction));
        state.percent = plan.overall(index, fraction);
    }
    if let Some(p) = cmd.percent {
        state.percent = Percent::new(p)?;
    }
    state.remaining_seconds = cmd.remaining;
    state.attempt = cmd.attempt.filter(|a| *a > 1 || status.is_terminal());
    if cmd.shown_attempt.is_some() {
        state.attempt = cmd.shown_attempt;
    }
    state.max_attempts = cmd.max_attempts;
    state.retry_at = cmd
        .retry_in
        .map(|s| jobpulse_api::render::now_ms() + s * 1000);
    state.duration = cmd.duration;
    state.hls_path = cmd
        .hls_path
        .map(|s| Text::parse(&s, "hls_path", Text::MAX_MESSAGE))
        .transpose()?;
    state.error = cmd
        .error
        .map(|s| Text::parse(&s, "error", Text::MAX_MESSAGE))
        .transpose()?;
    state.result = cmd.result.map(JobResult::whole).transpose()?;
    let seq = seqs.entry(format!("{}:{id}", cmd.kind)).or_insert(0);
    *seq += 1;
    let fence = Fence::new(cmd.generation.unwrap_or(1), cmd.attempt.unwrap_or(1), *seq)?;
    Ok(Write::set(key, fence, state)?)
}

fn say(line: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secret: [u8; 32] = rand::random();
    let verifier = Arc::new(Verifier::new(AuthConfig::hs256(&secret)?));
    let store: SharedStore = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let cap = std::env::var("FIXTURE_SSE_CAP")
        .ok()
        .map(|v| v.parse::<usize>())
        .transpose()
        .context("FIXTURE_SSE_CAP must be a number")?
        .unwrap_or(100);
    let stalled_after = std::env::var("FIXTURE_STALLED_AFTER_MS")
        .ok()
        .map(|v| v.parse::<u64>())
        .transpose()
        .context("FIXTURE_STALLED_AFTER_MS must be a number")?
        .map_or(
            jobpulse_api::render::Liveness::DEFAULT_STALLED_AFTER,
            std::time::Duration::from_millis,
        );
    let app = Application::build(AppSettings {
        sse: Some(SseSettings::per_tenant(cap)),
        router: jobpulse_api::RouterConfig {
            liveness: jobpulse_api::render::Liveness { stalled_after },
            ..jobpulse_api::RouterConfig::default()
        },
        shutdown: stop.clone(),
        ..AppSettings::new(store.clone(), verifier.clone())
    })
    .await?;
    let port = app.port();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let token = |role: &str| {
        verifier.mint(&TokenSpec {
            tenant: TenantId::new(TENANT)?,
            tenant_code: Some("demo".into()),
            user_id: Some("7".into()),
            role: Some(role.into()),
            ttl_secs: 3600,
            worker: false,
        })
    };
    say(&serde_json::json!({
        "url": format!("http://127.0.0.1:{port}"),
        "staff_token": token("teacher")?,
        "student_token": token("student")?,
    }))?;

    let mut seqs = HashMap::new();
    // Blocking stdin on its own thread (the workspace's tokio has no `io-std`).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Command>(&line)
            .context("bad command")
            .and_then(|c| to_write(c, &mut seqs))
        {
            Ok(w) => match store.apply(&w).await {
                Ok(outcome) => serde_json::json!({"ok": true, "outcome": format!("{outcome:?}")}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            },
            Err(e) => serde_json::json!({"ok": false, "error": format!("{e:#}")}),
        };
        say(&reply)?;
    }
    stop.cancel();
    server.await??;
    Ok(())
}
