//! Logs, request ids and metrics of a running `jobpulse up` (issue 17, items 2 and 5): JSON log
//! lines with an access line per request, `X-Request-Id` kept or generated, `# HELP` on every
//! metric, per-route histograms by template, process metrics, queue and outbox gauges, and
//! every metric the Grafana dashboard queries actually exposed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::harness::clip;
use crate::procs::Proc;

/// `# TYPE` names and `# HELP` names of a Prometheus text body.
fn families(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut types = BTreeSet::new();
    let mut helps = BTreeSet::new();
    for line in body.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name.to_owned());
            }
            (Some("#"), Some("HELP"), Some(name)) => {
                helps.insert(name.to_owned());
            }
            _ => {}
        }
    }
    (types, helps)
}

/// The metric names the dashboard's queries use (histogram series mapped to their family).
fn dashboard_metrics(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap_or_default().to_owned());
        }
    }
    anyhow::ensure!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut word = String::new();
        for c in expr.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if word.starts_with("jobpulse_") || word.starts_with("process_") {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(&word)
                    .to_owned();
                names.insert(family);
            }
            word.clear();
        }
    }
    Ok(names)
}

async fn delete_keys(prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(jobpulse_testkit::redis_url())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut con)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_request_ids_and_metrics_an_operator_can_use() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clip = clip(dir.path(), 3.0, 320, 240).await?;
    let prefix = jobpulse_testkit::unique_prefix();
    let log = dir.path().join("stderr.log");
    let redis = jobpulse_testkit::redis_url();
    let mut up = Proc::up(
        &dir.path().join("data"),
        Stdio::from(std::fs::File::create(&log)?),
        &[
            "--log-format",
            "json",
            "--redis-url",
            &redis,
            "--key-prefix",
            &prefix,
        ],
        &[],
    )?;
    let result = exercise(&up, &clip).await;
    let stopped = up.terminate(Duration::from_secs(15))?;
    delete_keys(&prefix).await?;
    let metrics = result?;
    assert_eq!(stopped, Some(true), "SIGTERM did not stop it cleanly");

    // -- metrics --
    let (types, helps) = families(&metrics);
    let undescribed: Vec<_> = types.difference(&helps).collect();
    assert!(
        undescribed.is_empty(),
        "metrics without # HELP: {undescribed:?}"
    );
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "jobpulse_http_requests_total",
        "jobpulse_http_request_duration_seconds",
        "jobpulse_queue_jobs",
        "jobpulse_queue_oldest_runnable_age_seconds",
        "jobpulse_outbox_oldest_age_seconds",
        "jobpulse_dependency_up",
        "jobpulse_sse_streams",
    ] {
        assert!(
            types.contains(family),
            "{family} is not exposed:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("# TYPE jobpulse_http_request_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"jobpulse_http_request_duration_seconds_bucket{method="GET",route="/api/v1/media/videos/{id}/progress/",le="#
        ),
        "no per-route histogram by template:\n{metrics}"
    );
    assert!(
        metrics.contains(r#"jobpulse_dependency_up{dependency="read_model"} 1"#),
        "{metrics}"
    );
    for line in metrics.lines().filter(|l| l.contains("route=\"")) {
        assert!(
            !line.contains("/videos/1/") && !line.contains("access_token"),
            "an id or a token in a label: {line}"
        );
    }
    let dashboard =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/jobpulse.json");
    let missing: Vec<_> = dashboard_metrics(&dashboard)?
        .into_iter()
        .filter(|m| !types.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics a running jobpulse does not expose: {missing:?}"
    );

    // -- logs --
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains('\u{1b}'), "ANSI codes in a log file");
    assert!(!text.contains(&up.token), "the token was logged");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("not JSON ({e}): {l}")))
        .collect::<anyhow::Result<_>>()?;
    let access = lines
        .iter()
        .find(|l| l["target"] == "jobpulse::access" && l["fields"]["request_id"] == "ops-test-42")
        .ok_or_else(|| anyhow::anyhow!("no access line for request ops-test-42:\n{text}"))?;
    let f = &access["fields"];
    assert_eq!(f["method"], "GET", "{access}");
    assert_eq!(
        f["route"], "/api/v1/media/videos/{id}/progress/",
        "{access}"
    );
    assert_eq!(f["status"], 200, "{access}");
    assert_eq!(f["tenant"], 1, "{access}");
    assert!(f["bytes"].as_u64().is_some_and(|b| b > 0), "{access}");
    assert!(f["ms"].as_f64().is_some(), "{access}");
    // The event stream's line names the route, never the query string with its token.
    let stream = lines
        .iter()
        .find(|l| {
            l["target"] == "jobpulse::access" && l["fields"]["route"] == "/api/v1/progress/stream"
        })
        .ok_or_else(|| anyhow::anyhow!("no access line for the event stream:\n{text}"))?;
    assert_eq!(stream["fields"]["tenant"], 1, "{stream}");
    let unmatched = lines.iter().any(|l| {
        l["target"] == "jobpulse::access"
            && l["fields"]["route"] == "unmatched"
            && l["fields"]["status"] == 404
    });
    assert!(unmatched, "no access line for the unknown path:\n{text}");
    // Worker lines carry the tenant, the job and the attempt (span fields).
    let worker = lines
        .iter()
        .find(|l| l["fields"]["message"] == "transcode attempt ended")
        .ok_or_else(|| anyhow::anyhow!("no worker line:\n{text}"))?;
    let span = &worker["span"];
    assert_eq!(span["tenant.id"], "1", "{worker}");
    assert!(
        span["job.id"].is_number() && span["job.attempt"] == 1,
        "{worker}"
    );
    Ok(())
}

/// Drives the server; returns its `/metrics` text at the end.
async fn exercise(up: &Proc, clip: &Path) -> anyhow::Result<String> {
    // A client's request id is kept and returned; without one, one is made up.
    let res = up
        .get("/api/v1/media/videos/1/progress/")
        .header("x-request-id", "ops-test-42")
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "ops-test-42");
    res.bytes().await?;
    let res = up
        .get("/api/v1/media/videos/1/progress/")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await?;
    let id = res.headers()["x-request-id"].to_str()?.to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    res.bytes().await?;
    // An unknown path: logged and counted as `unmatched`, never by its raw path.
    let res = up.get("/api/v1/no/such/42").send().await?;
    assert_eq!(res.status(), 404);
    res.bytes().await?;

    // A transcode, so the worker's lines and metrics exist.
    let video = up
        .upload_until_ready(clip, Duration::from_secs(180))
        .await?;

    // An event stream authenticated by its query string, closed after the first event.
    let res = up
        .http
        .get(format!(
            "{}/api/v1/progress/stream?videos={video}&access_token={}",
            up.base, up.token
        ))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), body.next()).await?;
    assert!(first.is_some(), "the stream sent nothing");
    drop(body);

    // The gauges read from the database refresh every 10 s; one refresh after the transcode.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let metrics = up.http.get(format!("{}/metrics", up.base)).send().await?;
    assert_eq!(metrics.status(), 200);
    Ok(metrics.text().await?)
}
