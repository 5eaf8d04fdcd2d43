//! Benchmark: the front end's two upload flows **through the API's routes** (docs/contract.md §7),
//! same bytes, same storage, same run, alternating which goes first:
//!
//! - (a) single: `upload/init/` → one `PUT upload_url` of the whole file → `upload/complete/`;
//! - (b) multipart: `upload/init/` → `multipart/init/` → `multipart/presign/` → the parts `PUT`
//!   (parts of 100 MiB, 3 in flight, no Content-Type, ETags read from the answers) →
//!   `multipart/complete/` with the list in completion order.
//!
//! Both end with the video `UPLOADED` and queued. Prints every round and the median ratio
//! (multipart time / single time).
//!
//! ```text
//! eval "export $(scripts/s3-test-server start)"
//! cargo run --release -p jobpulse-api --example upload_routes -- [--size-mib 300]
//!     [--part-mib 100] [--in-flight 3] [--rounds 3] [--storage s3|file]
//! ```
//!
//! `--storage s3` (default): a fresh bucket on the S3 test server (`JOBPULSE_TEST_S3_ENDPOINT`):
//! the PUTs go to presigned bucket URLs. `--storage file`: file storage in a temp dir: the PUTs go
//! to the API's own upload URLs. The API runs in-process (SQLite, in-process read model) on a
//! loopback port; the client is reqwest.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_api::state::{AppState, JobCatalog, JobSpec, Limits};
use jobpulse_api::{AppSettings, Application, HttpConfig, Listen};
use jobpulse_domain::JobType;
use jobpulse_media::MediaStorage;
use jobpulse_store::{MemoryStore, SharedStore};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

struct Args {
    size_mib: usize,
    part_mib: usize,
    in_flight: usize,
    rounds: usize,
    s3: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        size_mib: 300,
        part_mib: 100,
        in_flight: 3,
        rounds: 3,
        s3: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--size-mib" => a.size_mib = value()?.parse()?,
            "--part-mib" => a.part_mib = value()?.parse()?,
            "--in-flight" => a.in_flight = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--storage" => {
                a.s3 = match value()?.as_str() {
                    "s3" => true,
                    "file" => false,
                    other => anyhow::bail!("--storage s3|file, not {other}"),
                }
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.part_mib >= 5 && a.size_mib >= a.part_mib && a.in_flight >= 1);
    Ok(a)
}

/// Incompressible-looking bytes (xorshift), made once.
fn payload(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

#[derive(Debug)]
struct NoJobs;

impl JobCatalog for NoJobs {
    fn describe(&self, _: &JobType) -> Option<JobSpec> {
        None
    }
    fn known(&self) -> Vec<String> {
        Vec::new()
    }
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    session: i64,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let v: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }

    async fn init(&self) -> anyhow::Result<Value> {
        self.post(
            "/api/v1/media/videos/upload/init/",
            json!({"session": self.session, "title": "bench", "filename": "bench.mp4",
                   "content_type": "video/mp4"}),
        )
        .await
    }

    async fn single(&self, data: &Bytes) -> anyhow::Result<(i64, String)> {
        let init = self.init().await?;
        let id = init["video"]["id"].as_i64().unwrap_or_default();
        let url = init["upload_url"].as_str().unwrap_or_default();
        let res = self
            .http
            .put(url)
            .header("content-type", "video/mp4")
            .body(data.clone())
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "PUT answered {}", res.status());
        anyhow::ensure!(res.headers().contains_key("etag"), "no ETag");
        let done = self
            .post(
                &format!("/api/v1/media/videos/{id}/upload/complete/"),
                json!({"ok": true}),
            )
            .await?;
        anyhow::ensure!(done["video"]["status"] == "UPLOADED", "{done}");
        Ok((id, init["file_key"].as_str().unwrap_or_default().to_owned()))
    }

    /// Returns the video, its key and the seconds `multipart/complete/` took.
    async fn multipart(
        &self,
        data: &Bytes,
        part: usize,
        in_flight: usize,
    ) -> anyhow::Result<(i64, String, f64)> {
        let init = self.init().await?;
        let id = init["video"]["id"].as_i64().unwrap_or_default();
        let mp = self
            .post(
                &format!("/api/v1/media/videos/{id}/upload/multipart/init/"),
                json!({"content_type": "video/mp4"}),
            )
            .await?;
        let upload_id = mp["upload_id"].as_str().unwrap_or_default().to_owned();
        let count = data.len().div_ceil(part);
        let numbers: Vec<u32> = (1..=count as u32).collect();
        let signed = self
            .post(
                &format!("/api/v1/media/videos/{id}/upload/multipart/presign/"),
                json!({"upload_id": upload_id, "part_numbers": numbers}),
            )
            .await?;
        let parts: Vec<Value> = futures::stream::iter(numbers)
            .map(|n| {
                let url = signed["urls"][n.to_string()]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let bytes =
                    data.slice((n as usize - 1) * part..(n as usize * part).min(data.len()));
                async move {
                    let res = self.http.put(url).body(bytes).send().await?;
                    anyhow::ensure!(
                        res.status().is_success(),
                        "part PUT answered {}",
                        res.status()
                    );
                    let tag = res.headers()["etag"].to_str()?.to_owned();
                    Ok(json!({"ETag": tag, "PartNumber": n}))
                }
            })
            .buffer_unordered(in_flight)
            .try_collect()
            .await?;
        let t = Instant::now();
        let done = self
            .post(
                &format!("/api/v1/media/videos/{id}/upload/multipart/complete/"),
                json!({"upload_id": upload_id, "parts": parts}),
            )
            .await?;
        anyhow::ensure!(done["video"]["status"] == "UPLOADED", "{done}");
        Ok((
            id,
            init["file_key"].as_str().unwrap_or_default().to_owned(),
            t.elapsed().as_secs_f64(),
        ))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let storage = if a.s3 {
        jobpulse_media::testing::s3::fresh_storage("bench").await
    } else {
        MediaStorage::local(dir.path().join("media"))?
    };
    let tdb = jobpulse_testkit::TestDatabase::new(jobpulse_testkit::Backend::Sqlite).await?;
    let seed = tdb.db.create_tenant("bench", "bench").await?;
    let store: SharedStore = Arc::new(MemoryStore::default());
    let verifier = Arc::new(Verifier::new(AuthConfig::hs256(SECRET)?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState {
        db: tdb.db.clone(),
        store: store.clone(),
        relay: jobpulse_sync::Relay::new(tdb.db.clone(), store.clone()),
        storage: storage.clone(),
        auth: verifier.clone(),
        signer: jobpulse_api::signing::MediaSigner::derived(SECRET),
        toolchain: None,
        catalog: Arc::new(NoJobs),
        limits: Limits {
            video_bytes: 8 * 1024 * MIB as u64,
            ..Limits::default()
        },
        submit_rate: jobpulse_api::rate::UserRate::new(Limits::default().submits, "job submits"),
        probes: jobpulse_api::probe_pool::ProbePool::new(Limits::default().probes),
        spool: jobpulse_api::spool::SpoolBudget::new(Limits::default().spool),
        spool_dir: dir.path().join("spool"),
        public_url: base.clone(),
        credentials: None,
    };
    let stop = CancellationToken::new();
    let app = Application::build(AppSettings {
        app: Some(state),
        listen: Listen::On(listener),
        http: HttpConfig::default(),
        shutdown: stop.clone(),
        ..AppSettings::new(store.clone(), verifier.clone())
    })
    .await?;
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let token = verifier
        .mint(&TokenSpec {
            tenant: seed.tenant_id,
            tenant_code: None,
            user_id: Some("1".into()),
            role: Some("owner".into()),
            ttl_secs: 24 * 3600,
            worker: false,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let api = Api {
        base,
        token,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(1800))
            .build()?,
        session: seed.session_id,
    };
    let data = payload(a.size_mib * MIB);
    println!(
        "storage: {} (through the API's routes at {})\nobject: {} MiB; multipart: parts of {} MiB, {} in flight; {} rounds",
        storage.describe(),
        api.base,
        a.size_mib,
        a.part_mib,
        a.in_flight,
        a.rounds
    );
    let (mut singles, mut multis, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=a.rounds {
        let mut times = [0.0f64; 2];
        let mut completing = 0.0;
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for which in order {
            let start = Instant::now();
            let key = if which == 0 {
                api.single(&data).await?.1
            } else {
                let (_, key, c) = api.multipart(&data, a.part_mib * MIB, a.in_flight).await?;
                completing = c;
                key
            };
            times[which] = start.elapsed().as_secs_f64();
            let key = jobpulse_media::StorageKey::parse(&key)?;
            let info = storage.head(&key).await?;
            anyhow::ensure!(info.size == data.len() as u64, "stored {} bytes", info.size);
            storage.delete(&key).await?;
        }
        let mib = a.size_mib as f64;
        println!(
            "round {round}: single {:.2} s ({:.0} MiB/s), multipart {:.2} s ({:.0} MiB/s; complete {:.2} s), multipart/single {:.2}",
            times[0],
            mib / times[0],
            times[1],
            mib / times[1],
            completing,
            times[1] / times[0]
        );
        singles.push(times[0]);
        multis.push(times[1]);
        ratios.push(times[1] / times[0]);
    }
    println!(
        "median: single {:.2} s, multipart {:.2} s, multipart/single {:.2}",
        median(singles),
        median(multis),
        median(ratios)
    );
    stop.cancel();
    Ok(())
}
