//! Completion webhooks end to end: `jobpulse up` sends to a real receiver process
//! (scripts/webhook-receiver) that verifies every delivery with the Standard Webhooks reference
//! implementation (the `standardwebhooks` package), answers 500s, goes down, is slow while the
//! sender is killed — and no event is lost, duplicates carry the same `webhook-id`, deliveries
//! that cannot succeed go dead with their reason listed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::harness::{Up, free_port, jobpulse, workbook};

/// The receiver process.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    secret: String,
}

impl Receiver {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/webhook-receiver")
    }

    /// Starts the receiver on `port` (appending to `log`) and waits until it listens.
    fn start(port: u16, log: &Path, secret: &str) -> anyhow::Result<Receiver> {
        let mut child = Command::new(Self::script())
            .args(["--port", &port.to_string(), "--log"])
            .arg(log)
            .args(["--secret", secret])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting scripts/webhook-receiver (python3 and pip needed)")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    let _ = tx.send(());
                }
            }
        });
        // The first run installs the reference package into a venv.
        if rx.recv_timeout(Duration::from_secs(180)).is_err() {
            let _ = child.kill();
            anyhow::bail!("the webhook receiver did not start");
        }
        Ok(Receiver {
            child,
            port,
            log: log.to_owned(),
            secret: secret.to_owned(),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Sets how many deliveries get 500 (`fail`) or a held answer (`delay` of `delay_secs`).
    async fn control(&self, v: Value) -> anyhow::Result<()> {
        let res = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_control", self.port))
            .json(&v)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "control: {}", res.status());
        Ok(())
    }

    /// Every delivery received so far (each at receipt).
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Takes the receiver down (SIGKILL).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Brings it back on the same port and log.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        *self = Receiver::start(self.port, &self.log, &self.secret)?;
        Ok(())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn json_of(res: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let s = res.status().as_u16();
    Ok((s, res.json().await.unwrap_or(Value::Null)))
}

async fn register(up: &Up, url: &str, events: &[&str]) -> anyhow::Result<(u16, Value)> {
    json_of(
        up.post("/api/v1/webhooks/")
            .json(&json!({ "url": url, "events": events }))
            .send()
            .await?,
    )
    .await
}

/// Submits an excel import (a DONE job) and returns its id.
async fn import(up: &Up, dir: &Path) -> anyhow::Result<String> {
    let wb = workbook(dir)?;
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", "1")
        .part(
            "file",
            Part::bytes(std::fs::read(&wb)?).file_name("students.xlsx"),
        );
    let (s, job) = json_of(up.post("/api/v1/jobs/").multipart(form).send().await?).await?;
    anyhow::ensure!(s == 201, "submit: {s} {job}");
    Ok(job["job_id"].as_str().context("job id")?.to_owned())
}

/// Submits an import of a file that is no workbook (the worker ends it REJECTED_BAD_INPUT) and
/// returns its id.
async fn bad_import(up: &Up) -> anyhow::Result<String> {
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", "1")
        .part(
            "file",
            Part::bytes(b"not a workbook at all".to_vec()).file_name("students.xlsx"),
        );
    let (s, job) = json_of(up.post("/api/v1/jobs/").multipart(form).send().await?).await?;
    anyhow::ensure!(s == 201, "submit: {s} {job}");
    Ok(job["job_id"].as_str().context("job id")?.to_owned())
}

async fn deliveries(up: &Up, endpoint: &str) -> anyhow::Result<Vec<Value>> {
    let (s, v) = json_of(
        up.get(&format!(
            "/api/v1/webhooks/{endpoint}/deliveries/?limit=100"
        ))
        .send()
        .await?,
    )
    .await?;
    anyhow::ensure!(s == 200, "deliveries: {s} {v}");
    Ok(v["results"].as_array().cloned().unwrap_or_default())
}

/// Waits until `endpoint` has `n` deliveries, none PENDING; returns them.
async fn settled(
    up: &Up,
    endpoint: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<Vec<Value>> {
    let until = Instant::now() + within;
    loop {
        let list = deliveries(up, endpoint).await?;
        if list.len() >= n && list.iter().all(|d| d["state"] != "PENDING") {
            return Ok(list);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "deliveries of {endpoint} not settled in time: {list:#?}\n{}",
            up.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The assertions every receiver log must pass: every delivery verified by the reference
/// implementation, and one `webhook-id` per event (duplicates only as resends of that id).
fn check_log(records: &[Value]) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for r in records {
        assert_eq!(r["verified"], true, "a signature did not verify: {r}");
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        assert!(id.starts_with("msg_"), "{r}");
        if let Some(prev) = by_id.get(&id) {
            assert_eq!(prev, &r["body"], "a resend changed the body: {records:#?}");
        }
        by_id.insert(id, r["body"].clone());
    }
    let mut events = HashSet::new();
    for body in by_id.values() {
        let key = (body["type"].to_string(), body["data"]["job_id"].to_string());
        assert!(
            events.insert(key.clone()),
            "one event under two webhook-ids: {key:?}"
        );
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_through_500s_and_downtime_and_listed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &[
            ("JOBPULSE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1/32"),
            ("JOBPULSE_WEBHOOK_RETRY_SCHEDULE", "1s"),
            ("JOBPULSE_WEBHOOK_RETRY_WINDOW", "8s"),
            ("JOBPULSE_WEBHOOK_TIMEOUT", "3s"),
        ],
    )?;

    // SSRF and input checks: 422 with the reason, nothing registered.
    for (url, why) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://[::1]:9/", "loopback"),
        ("http://[::ffff:127.0.0.2]:9/", "loopback"),
        ("http://100.64.0.1/", "CGNAT"),
        ("ftp://127.0.0.1/", "http or https"),
        ("http://user:pw@127.0.0.1/", "user name"),
        ("not a url", "not valid"),
    ] {
        let (s, v) = register(&up, url, &["job.done"]).await?;
        assert_eq!(s, 422, "{url}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{url}: {msg}");
    }
    let (s, v) = register(&up, "http://127.0.0.1:9/", &["job.finished"]).await?;
    assert!(s == 422 && v.to_string().contains("job.done"), "{s} {v}");
    let (s, _) = register(
        &up,
        &format!("http://127.0.0.1:9/{}", "a".repeat(3000)),
        &["job.done"],
    )
    .await?;
    assert_eq!(s, 422);
    let (s, _) = json_of(
        up.post("/api/v1/webhooks/")
            .header("content-type", "application/json")
            .body(vec![b' '; 64 * 1024])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(s, 413);
    let (s, v) = json_of(up.get("/api/v1/webhooks/").send().await?).await?;
    assert_eq!(
        (s, v["results"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );

    // An endpoint on the receiver, and one where nothing ever listens.
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (s, ep) = register(&up, &url, &["job.done", "job.failed"]).await?;
    assert_eq!(s, 201, "{ep}");
    let secret = ep["secret"].as_str().context("secret")?;
    assert!(secret.starts_with("whsec_"), "{ep}");
    let ep_id = ep["id"].as_str().context("id")?.to_owned();
    let nowhere = format!("http://127.0.0.1:{}/hook", free_port()?);
    let (s, dead_ep) = register(&up, &nowhere, &["job.done"]).await?;
    assert_eq!(s, 201, "{dead_ep}");
    let dead_id = dead_ep["id"].as_str().context("id")?.to_owned();
    let (_, list) = json_of(up.get("/api/v1/webhooks/").send().await?).await?;
    assert_eq!(list["results"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(list["results"][0].get("secret").is_none(), "{list}");

    let mut rx = Receiver::start(port, &dir.path().join("received.jsonl"), secret)?;
    assert_eq!(rx.url(), url);
    // The first two deliveries are answered 500.
    rx.control(json!({ "fail": 2 })).await?;
    let mut jobs = vec![import(&up, dir.path()).await?, bad_import(&up).await?];
    // Wait for the first delivery, then take the receiver down while more events happen.
    let until = Instant::now() + Duration::from_secs(30);
    while rx.records().is_empty() {
        anyhow::ensure!(Instant::now() < until, "nothing delivered\n{}", up.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rx.stop();
    jobs.push(import(&up, dir.path()).await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    rx.restart()?;

    let list = settled(&up, &ep_id, 3, Duration::from_secs(40)).await?;
    assert_eq!(list.len(), 3, "{list:#?}");
    for d in &list {
        assert_eq!(d["state"], "DELIVERED", "{d}");
        assert_eq!(d["last_status"], 204, "{d}");
        let log = d["attempt_log"].as_array().cloned().unwrap_or_default();
        assert_eq!(log.len() as u64, d["attempts"].as_u64().unwrap_or(0), "{d}");
        assert_eq!(
            log.last().map(|a| a["status"].clone()),
            Some(json!(204)),
            "{d}"
        );
    }
    // The 500s and the downtime are in the attempt logs.
    let all: Vec<Value> = list
        .iter()
        .flat_map(|d| d["attempt_log"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        all.iter().filter(|a| a["status"] == 500).count() >= 2,
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|a| a["error"].as_str().is_some_and(|e| e.contains("connect"))),
        "{all:#?}"
    );

    // The receiver's side: every signature verified, every event once per webhook-id, each
    // job's terminal event there with the fields the progress endpoints show.
    let by_id = check_log(&rx.records());
    assert_eq!(by_id.len(), 3, "{by_id:#?}");
    for (i, job) in jobs.iter().enumerate() {
        let body = by_id
            .values()
            .find(|b| b["data"]["job_id"] == job.as_str())
            .with_context(|| format!("no delivery for job {job}"))?;
        let (ty, status) = if i == 1 {
            ("job.failed", "REJECTED_BAD_INPUT")
        } else {
            ("job.done", "DONE")
        };
        assert_eq!(body["type"], ty, "{body}");
        assert_eq!(body["data"]["status"], status, "{body}");
        assert_eq!(body["data"]["job_type"], "excel_parsing", "{body}");
        assert_eq!(body["data"]["tenant_id"], 1, "{body}");
        assert!(
            body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{body}"
        );
        if i == 1 {
            assert!(body["data"]["error_message"].is_string(), "{body}");
        }
        // No initial passwords or results travel in a webhook.
        assert!(!body.to_string().contains("credentials"), "{body}");
    }

    // The endpoint nobody listens on: dead after the retry window, the reason listed.
    let dead = settled(&up, &dead_id, 2, Duration::from_secs(40)).await?;
    for d in &dead {
        assert_eq!(d["state"], "DEAD", "{d}");
        let why = d["last_error"].as_str().unwrap_or_default();
        assert!(
            why.contains("gave up after") && why.contains("connect"),
            "{d}"
        );
        assert!(d["attempts"].as_u64().unwrap_or(0) >= 2, "{d}");
    }

    // Removing: 204, then 404 (and its deliveries listing too); unknown ids 404.
    let del = |id: &str| {
        up.http
            .delete(format!("{}/api/v1/webhooks/{id}/", up.base))
            .bearer_auth(&up.token)
    };
    assert_eq!(del(&dead_id).send().await?.status(), 204);
    assert_eq!(del(&dead_id).send().await?.status(), 404);
    let res = up
        .get(&format!("/api/v1/webhooks/{dead_id}/deliveries/"))
        .send()
        .await?;
    assert_eq!(res.status(), 404);
    assert_eq!(del("ep_../x").send().await?.status(), 404);
    let res = up
        .get("/api/v1/webhooks/bad%20id/deliveries/")
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_delivery_sends_it_again_under_the_same_id() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let envs = [
        ("JOBPULSE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
        ("JOBPULSE_WEBHOOK_RETRY_SCHEDULE", "1s"),
        ("JOBPULSE_WEBHOOK_TIMEOUT", "2s"),
        ("JOBPULSE_WEBHOOK_LEASE", "8s"),
    ];
    let mut up = Up::start_with(&data, &[], &envs)?;
    let port = free_port()?;
    let (s, ep) = register(&up, &format!("http://127.0.0.1:{port}/hook"), &["job.done"]).await?;
    assert_eq!(s, 201, "{ep}");
    let secret = ep["secret"].as_str().context("secret")?;
    let ep_id = ep["id"].as_str().context("id")?.to_owned();
    let rx = Receiver::start(port, &dir.path().join("received.jsonl"), secret)?;
    // The first delivery is held longer than the sender lives.
    rx.control(json!({ "delay": 1, "delay_secs": 2.5 })).await?;
    let job = import(&up, dir.path()).await?;
    let until = Instant::now() + Duration::from_secs(30);
    while rx.records().is_empty() {
        anyhow::ensure!(Instant::now() < until, "nothing delivered\n{}", up.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed mid-delivery (SIGKILL: nothing settles), then started again on the same data.
    up.child.kill()?;
    up.child.wait()?;
    let up = Up::start_with(&data, &[], &envs)?;
    let list = settled(&up, &ep_id, 1, Duration::from_secs(30)).await?;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["state"], "DELIVERED", "{}", list[0]);
    // The killed attempt was never recorded; the resend was.
    assert_eq!(list[0]["attempts"], 1, "{}", list[0]);
    let records = rx.records();
    assert!(records.len() >= 2, "not sent again: {records:#?}");
    let by_id = check_log(&records);
    assert_eq!(by_id.len(), 1, "a resend under another id: {records:#?}");
    let body = by_id.values().next().context("one")?;
    assert_eq!(body["data"]["job_id"], job.as_str(), "{body}");
    assert_eq!(
        list[0]["id"].as_str(),
        by_id.keys().next().map(String::as_str)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_routes_are_for_staff_of_the_tenant_and_the_cli_refuses_loopback()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let up = Up::start_with(&data, &[], &[("JOBPULSE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")])?;
    let (s, ep) = register(&up, "http://127.0.0.1:9/hook", &["video.ready"]).await?;
    assert_eq!(s, 201, "{ep}");
    let ep_id = ep["id"].as_str().context("id")?.to_owned();
    let token = |tenant: &str, role: &str| -> anyhow::Result<String> {
        let out = jobpulse()
            .args([
                "token",
                "--tenant-id",
                tenant,
                "--role",
                role,
                "--ttl",
                "10m",
                "--data-dir",
            ])
            .arg(&data)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let out = jobpulse()
        .args([
            "tenant",
            "add",
            "--code",
            "other",
            "--name",
            "Other",
            "--data-dir",
        ])
        .arg(&data)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Students: 403 everywhere.
    let student = token("1", "student")?;
    let get = |path: &str, t: &str| {
        up.http
            .get(format!("{}{path}", up.base))
            .bearer_auth(t.to_owned())
            .send()
    };
    assert_eq!(get("/api/v1/webhooks/", &student).await?.status(), 403);
    let res = up
        .http
        .post(format!("{}/api/v1/webhooks/", up.base))
        .bearer_auth(&student)
        .json(&json!({ "url": "http://127.0.0.1:9/", "events": ["job.done"] }))
        .send()
        .await?;
    assert_eq!(res.status(), 403);
    // Another tenant's staff: an empty list, and 404 for this endpoint.
    let other = token("2", "staff")?;
    let (s, v) = json_of(get("/api/v1/webhooks/", &other).await?).await?;
    assert_eq!(
        (s, v["results"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let path = format!("/api/v1/webhooks/{ep_id}/deliveries/");
    assert_eq!(get(&path, &other).await?.status(), 404);
    let res = up
        .http
        .delete(format!("{}/api/v1/webhooks/{ep_id}/", up.base))
        .bearer_auth(&other)
        .send()
        .await?;
    assert_eq!(res.status(), 404);
    assert_eq!(get(&path, &up.token).await?.status(), 200);

    // The CLI: add/list/remove print JSON; without the allow-list 127.0.0.1 and a name that
    // resolves to loopback are refused.
    let cli = |args: &[&str], allow: bool| -> anyhow::Result<(bool, String, String)> {
        let mut c = jobpulse();
        c.arg("webhook").args(args).arg("--data-dir").arg(&data);
        if allow {
            c.env("JOBPULSE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1");
        }
        let out = c.output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    for url in ["http://127.0.0.1:9/", "http://localhost:9/"] {
        let (ok, _, err) = cli(
            &[
                "add",
                "--tenant-id",
                "2",
                "--url",
                url,
                "--event",
                "job.done",
            ],
            false,
        )?;
        assert!(!ok && err.contains("loopback"), "{url}: {err}");
    }
    let (ok, out, err) = cli(
        &[
            "add",
            "--tenant-id",
            "2",
            "--url",
            "http://127.0.0.1:9/x",
            "--event",
            "job.done",
            "--event",
            "video.failed",
        ],
        true,
    )?;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim())?;
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{out}"
    );
    let id = created["id"].as_str().context("id")?.to_owned();
    let (ok, out, err) = cli(&["list", "--tenant-id", "2"], false)?;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(out.trim())?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{out}");
    assert!(!out.contains("whsec_"), "{out}");
    let (ok, _, err) = cli(&["remove", "--tenant-id", "1", &id], false)?;
    assert!(
        !ok && err.contains("not found"),
        "another tenant's endpoint: {err}"
    );
    let (ok, _, err) = cli(&["remove", "--tenant-id", "2", &id], false)?;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &[
            "add",
            "--tenant-id",
            "2",
            "--url",
            "http://127.0.0.1:9/",
            "--event",
            "nope",
        ],
        true,
    )?;
    assert!(!ok && err.contains("unknown event"), "{err}");
    Ok(())
}
