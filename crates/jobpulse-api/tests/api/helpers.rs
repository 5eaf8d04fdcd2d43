//! A real server on a free port, with typed helpers (zero2prod's `TestApp`).

use std::sync::Arc;
use std::time::Duration;

use jobpulse_api::auth::{AuthConfig, TokenSpec, Verifier};
use jobpulse_api::{AppSettings, Application, HttpConfig, Listen, RouterConfig, SseSettings};
use jobpulse_domain::{
    Fence, JobId, JobResult, JobStatus, JobType, Percent, State, StepProgress, TaskKey, TenantId,
    Text, VideoId, VideoStatus, Write, steps,
};
use jobpulse_store::{MemoryStore, SharedStore};
use tokio_util::sync::CancellationToken;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub store: SharedStore,
    pub verifier: Arc<Verifier>,
    pub client: reqwest::Client,
    /// The stream route's hub, when it is served.
    pub hub: Option<jobpulse_api::hub::Hub>,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn tenant(n: i64) -> TenantId {
    TenantId::new(n).expect("valid tenant")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Arc::new(MemoryStore::default()), HttpConfig::default()).await
    }

    pub async fn spawn_with(store: SharedStore, http: HttpConfig) -> TestApp {
        Self::spawn_full(store, http, 100).await
    }

    pub async fn spawn_full(store: SharedStore, http: HttpConfig, sse_cap: usize) -> TestApp {
        Self::spawn_configured(store, http, sse_cap, RouterConfig::default()).await
    }

    /// With router settings of its own (CORS).
    pub async fn spawn_configured(
        store: SharedStore,
        http: HttpConfig,
        sse_cap: usize,
        config: RouterConfig,
    ) -> TestApp {
        let verifier = Arc::new(Verifier::new(
            AuthConfig::hs256(SECRET).expect("strong secret"),
        ));
        let stop = CancellationToken::new();
        let app = Application::build(AppSettings {
            sse: Some(SseSettings {
                heartbeat: Some(Duration::from_millis(300)),
                ..SseSettings::per_tenant(sse_cap)
            }),
            router: config,
            http: HttpConfig { port: 0, ..http },
            shutdown: stop.clone(),
            ..AppSettings::new(store.clone(), verifier.clone())
        })
        .await
        .expect("binds");
        let hub = app.hub().cloned();
        let port = app.port();
        tokio::spawn(app.run_until_stopped(stop.clone()));
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            store,
            verifier,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            hub,
            stop,
        }
    }

    pub fn token(&self, tenant_id: i64, role: &str) -> String {
        self.verifier
            .mint(&TokenSpec {
                tenant: tenant(tenant_id),
                tenant_code: Some(format!("t{tenant_id}")),
                user_id: Some("7".into()),
                role: Some(role.into()),
                ttl_secs: 600,
                worker: false,
            })
            .expect("mints")
    }

    /// The hub's direct writes so far: (taken whole, handed to the stream's task).
    pub fn direct_writes(&self) -> (u64, u64) {
        self.hub.as_ref().expect("the stream route").direct_writes()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn put(&self, key: TaskKey, fence: Fence, state: State) {
        let w = Write::set(key, fence, state).expect("valid write");
        self.store.apply(&w).await.expect("store reachable");
    }
}

pub fn fence(g: u32, a: u32, s: u64) -> Fence {
    Fence::new(g, a, s).expect("valid fence")
}

pub fn video_key(t: i64, v: i64) -> TaskKey {
    TaskKey::video(tenant(t), VideoId::new(v).expect("valid"))
}

pub fn job_key(t: i64, j: &str) -> TaskKey {
    TaskKey::job(tenant(t), JobId::parse(j).expect("valid"))
}

pub fn processing(pct: u8, step: Option<(u8, f64)>, remaining: Option<u32>) -> State {
    let mut s = State::video(VideoStatus::Processing);
    s.percent = Percent::new(pct).expect("valid");
    s.step = step.map(|(i, f)| steps::VIDEO.step(i, f));
    s.remaining_seconds = remaining;
    s
}

pub fn job_state(status: JobStatus, job_type: &str) -> State {
    State::job(status, JobType::parse(job_type).expect("valid type"))
}

pub fn running_import(pct: u8, step: u8, step_pct: u8) -> State {
    let mut s = job_state(JobStatus::Running, "excel_parsing");
    s.percent = Percent::new(pct).expect("valid");
    s.step = Some(
        StepProgress::new(
            step,
            4,
            steps::EXCEL_IMPORT.steps[usize::from(step) - 1].name,
            steps::EXCEL_IMPORT.steps[usize::from(step) - 1].display,
            Percent::new(step_pct).expect("valid"),
        )
        .expect("valid step"),
    );
    s
}

pub fn text(s: &str) -> Text {
    Text::parse(s, "test", 2000).expect("valid text")
}

pub fn result(v: serde_json::Value) -> JobResult {
    JobResult::whole(v).expect("object")
}

/// The job types the app tests pretend to run (configuration, as a worker registry gives it).
#[derive(Debug)]
pub struct TestCatalog;

impl jobpulse_api::state::JobCatalog for TestCatalog {
    fn describe(&self, t: &JobType) -> Option<jobpulse_api::state::JobSpec> {
        let (needs_file, staff_only) = match t.as_str() {
            "excel_parsing" => (true, true),
            "attendance_excel_export" => (false, true),
            "ppt_generation" => (false, false),
            _ => return None,
        };
        Some(jobpulse_api::state::JobSpec {
            needs_file,
            staff_only,
            max_attempts: Some(3),
            timeout: Duration::from_secs(60),
        })
    }

    fn known(&self) -> Vec<String> {
        vec![
            "excel_parsing".into(),
            "attendance_excel_export".into(),
            "ppt_generation".into(),
        ]
    }
}

/// An app with the database-backed routes: a database of its own, media storage in a temp dir.
pub struct DbApp {
    pub app: TestApp,
    pub tdb: jobpulse_testkit::TestDatabase,
    pub state: jobpulse_api::state::AppState,
    pub dir: tempfile::TempDir,
    _redis: Option<jobpulse_testkit::TestRedis>,
}

impl DbApp {
    pub async fn spawn(backend: jobpulse_testkit::Backend) -> anyhow::Result<DbApp> {
        Self::spawn_with(backend, jobpulse_api::state::Limits::default()).await
    }

    pub async fn spawn_with(
        backend: jobpulse_testkit::Backend,
        limits: jobpulse_api::state::Limits,
    ) -> anyhow::Result<DbApp> {
        Self::spawn_on(backend, limits, None).await
    }

    /// With `storage` (e.g. a bucket of the S3 test server); `None`: file storage in the
    /// test's temp dir.
    pub async fn spawn_on(
        backend: jobpulse_testkit::Backend,
        limits: jobpulse_api::state::Limits,
        storage: Option<jobpulse_media::MediaStorage>,
    ) -> anyhow::Result<DbApp> {
        let tdb = jobpulse_testkit::TestDatabase::new(backend).await?;
        let (store, redis) = jobpulse_testkit::store_for(backend).await?;
        let dir = tempfile::tempdir()?;
        let verifier = Arc::new(Verifier::new(AuthConfig::hs256(SECRET)?));
        // Bound first: the app hands out absolute URLs of itself.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let storage = match storage {
            Some(s) => s,
            None => jobpulse_media::MediaStorage::local(dir.path().join("media"))?,
        };
        let state = jobpulse_api::state::AppState {
            db: tdb.db.clone(),
            store: store.clone(),
            relay: jobpulse_sync::Relay::new(tdb.db.clone(), store.clone()),
            storage,
            auth: verifier.clone(),
            signer: jobpulse_api::signing::MediaSigner::derived(SECRET),
            toolchain: jobpulse_media::Toolchain::detect().ok(),
            catalog: Arc::new(TestCatalog),
            submit_rate: jobpulse_api::rate::UserRate::new(limits.submits, "job submits"),
            probes: jobpulse_api::probe_pool::ProbePool::new(limits.probes),
            spool: jobpulse_api::spool::SpoolBudget::new(limits.spool),
            limits,
            spool_dir: dir.path().join("spool"),
            public_url: format!("http://127.0.0.1:{port}"),
            credentials: Some(jobpulse_db::CredentialSeal::derived(SECRET)),
        };
        let stop = CancellationToken::new();
        let bound = Application::build(AppSettings {
            credentials: state.credentials.clone(),
            app: Some(state.clone()),
            listen: Listen::On(listener),
            http: HttpConfig::default(),
            shutdown: stop.clone(),
            ..AppSettings::new(store.clone(), verifier.clone())
        })
        .await?;
        tokio::spawn(bound.run_until_stopped(stop.clone()));
        let app = TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            store,
            verifier,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            hub: None,
            stop,
        };
        Ok(DbApp {
            app,
            tdb,
            state,
            dir,
            _redis: redis,
        })
    }

    /// A tenant with a lecture and a session; returns (tenant id, lecture id, session id).
    pub async fn tenant(&self, code: &str) -> anyhow::Result<(i64, i64, i64)> {
        let seed = self.tdb.db.create_tenant(code, code).await?;
        Ok((seed.tenant_id.get(), seed.lecture_id, seed.session_id))
    }
}
