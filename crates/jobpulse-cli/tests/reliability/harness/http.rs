//! A small client of the jobpulse API for the scenarios: timed requests that never fail on a
//! status (the status is what is measured), uploads and submits, and readiness.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::procs::Proc;

/// One answer, with how long it took.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub elapsed: Duration,
}

impl Resp {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Self::with_timeout(port, Duration::from_secs(30))
    }

    pub fn with_timeout(port: u16, timeout: Duration) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(64)
                .build()
                .expect("a reqwest client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; transport errors are errors, statuses are data.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Resp> {
        let started = Instant::now();
        let res = req.send().await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await?;
        Ok(Resp {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Resp> {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Resp> {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// `GET /api/v1/media/videos/{id}/progress/` as JSON (200 expected).
    pub async fn video_progress(&self, token: &str, id: i64) -> anyhow::Result<Value> {
        let r = self
            .get(&format!("/api/v1/media/videos/{id}/progress/"), Some(token))
            .await?;
        if r.status != 200 {
            bail!("video progress answered {}: {}", r.status, r.text());
        }
        r.json()
    }

    /// `GET /api/v1/jobs/{id}/progress/` as JSON (200 expected).
    pub async fn job_progress(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let r = self
            .get(&format!("/api/v1/jobs/{id}/progress/"), Some(token))
            .await?;
        if r.status != 200 {
            bail!("job progress answered {}: {}", r.status, r.text());
        }
        r.json()
    }

    /// Uploads a video; its id.
    pub async fn upload_video(&self, token: &str, file: &Path) -> anyhow::Result<i64> {
        let bytes = tokio::fs::read(file).await?;
        let part = reqwest::multipart::Part::bytes(bytes).file_name("clip.mp4");
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("title", "reliability");
        let r = self
            .send(
                self.client
                    .post(self.url("/api/v1/media/videos/"))
                    .bearer_auth(token)
                    .multipart(form),
            )
            .await?;
        if r.status != 201 {
            bail!("upload answered {}: {}", r.status, r.text());
        }
        r.json()?["id"].as_i64().context("upload answer without id")
    }

    /// Submits an excel import into `lecture`; the answer.
    pub async fn submit_excel_raw(
        &self,
        token: &str,
        lecture: i64,
        xlsx: Vec<u8>,
    ) -> anyhow::Result<Resp> {
        let part = reqwest::multipart::Part::bytes(xlsx).file_name("students.xlsx");
        let form = reqwest::multipart::Form::new()
            .text("job_type", "excel_parsing")
            .text("lecture_id", lecture.to_string())
            .part("file", part);
        self.send(
            self.client
                .post(self.url("/api/v1/jobs/"))
                .bearer_auth(token)
                .multipart(form),
        )
        .await
    }

    /// Submits an excel import; its job id.
    pub async fn submit_excel(
        &self,
        token: &str,
        lecture: i64,
        xlsx: Vec<u8>,
    ) -> anyhow::Result<String> {
        let r = self.submit_excel_raw(token, lecture, xlsx).await?;
        if r.status != 201 {
            bail!("submit answered {}: {}", r.status, r.text());
        }
        r.json()?["job_id"]
            .as_str()
            .map(str::to_owned)
            .context("submit answer without job_id")
    }

    /// Waits until `/readyz` answers 200 (the process must stay alive meanwhile).
    pub async fn wait_ready(&self, proc: &mut Proc, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.get("/readyz", None).await
                && r.status == 200
            {
                return Ok(());
            }
            if !proc.alive() {
                bail!(
                    "{} exited before it was ready\n{}",
                    proc.name,
                    proc.log_tail(30)
                );
            }
            if start.elapsed() > limit {
                bail!(
                    "{} not ready within {limit:?}\n{}",
                    proc.name,
                    proc.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.get("/metrics", None).await?.text())
    }
}
