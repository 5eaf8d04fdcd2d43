//! The one assembly of a long-running process from its [`Settings`]: `up`, `serve` and
//! `worker` open a [`Stack`] (database, read model, shutdown on a signal), start its background
//! services once, and take from it what they run — the HTTP application
//! ([`Stack::application`], which hands over to [`jobpulse_api::Application::build`]), the video
//! worker ([`Stack::video_worker`]) and the AI worker ([`Stack::ai_worker`]).

use std::sync::Arc;

use anyhow::Context;
use jobpulse_api::auth::Verifier;
use jobpulse_api::routes::ops::ReadyCheck;
use jobpulse_api::state::AppState;
use jobpulse_api::{AppSettings, Application, HttpConfig, Listen, RouterConfig, SseSettings};
use jobpulse_api::{MissHook, Transcoding};
use jobpulse_db::Db;
use jobpulse_media::{MediaStorage, Toolchain};
use jobpulse_store::SharedStore;
use jobpulse_sync::{ReadRepairConfig, Reconciler, Relay};
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig};
use jobpulse_worker::video::pipeline::PipelineContext;
use jobpulse_worker::video::{VideoWorker, VideoWorkerConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::wiring::{self, StoreUse};

/// The processes a stack is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `jobpulse up`: the embedded database unless configured, the in-process read model
    /// allowed; serves polls.
    Up,
    /// `jobpulse serve`: Redis; a database when `DATABASE_URL` is set.
    Serve,
    /// `jobpulse worker`: Redis and a database; writes, no read cache.
    Worker,
}

/// The database, the read model and the shutdown token of one process, and the background
/// services once [`Stack::start_services`] started them.
pub struct Stack {
    pub settings: Settings,
    /// `None` only for `serve` without `DATABASE_URL`.
    pub db: Option<Db>,
    pub store: SharedStore,
    pub shutdown: CancellationToken,
    background: Option<Background>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("db", &self.db.as_ref().map(Db::kind))
            .field("store", &self.store.backend())
            .field("background", &self.background.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Stack::start_services`] spawned: the outbox relay, the reconciler, the webhook sender
/// and read-repair.
struct Background {
    relay: Relay,
    on_miss: MissHook,
    tasks: JoinSet<()>,
}

impl Stack {
    /// Connects the database (migrated) and the read model the role needs, and cancels the
    /// shutdown token on Ctrl-C or SIGTERM. Starts nothing else.
    pub async fn open(settings: Settings, role: Role) -> anyhow::Result<Stack> {
        let db = match role {
            Role::Serve if settings.database_url.is_none() => None,
            _ => Some(wiring::database(&settings).await?),
        };
        let store = match role {
            Role::Up => wiring::store(&settings, true, StoreUse::Serve).await?,
            Role::Serve => wiring::store(&settings, false, StoreUse::Serve).await?,
            Role::Worker => wiring::store(&settings, false, StoreUse::Write).await?,
        };
        let shutdown = CancellationToken::new();
        cancel_on_signal(&shutdown);
        Ok(Stack {
            settings,
            db,
            store,
            shutdown,
            background: None,
        })
    }

    /// Spawns relay, reconciler, the webhook sender and read-repair (when there is a database);
    /// they stop with the shutdown token, and [`Stack::stop`] waits for them.
    pub fn start_services(&mut self) {
        let Some(db) = &self.db else {
            return;
        };
        if self.background.is_some() {
            return;
        }
        log_tenant_caps(&self.settings);
        let (store, shutdown) = (&self.store, &self.shutdown);
        let mut tasks = JoinSet::new();
        let relay = Relay::new(db.clone(), store.clone());
        tasks.spawn(relay.clone().run(shutdown.clone()));
        tasks.spawn(
            Reconciler::new(db.clone(), store.clone())
                .retention(self.settings.terminal_retention.map(|d| d.0))
                .run(shutdown.clone()),
        );
        match jobpulse_webhooks::Sender::new(db.clone(), self.settings.webhook_sender()) {
            Ok(sender) => {
                tasks.spawn(sender.run(shutdown.clone()));
            }
            Err(e) => tracing::error!(error = %e, "webhook sender not started"),
        }
        let (handle, task) =
            jobpulse_sync::read_repair(db.clone(), store.clone(), ReadRepairConfig::default());
        tasks.spawn(task.run(shutdown.clone()));
        let on_miss: MissHook = Arc::new(move |key| {
            handle.request(key.clone());
        });
        self.background = Some(Background {
            relay,
            on_miss,
            tasks,
        });
    }

    /// The database, or why this command needs one.
    fn db(&self) -> anyhow::Result<&Db> {
        self.db
            .as_ref()
            .context("this command needs a database (DATABASE_URL)")
    }

    /// The relay of the background services (publishes state changes at once).
    fn relay(&self) -> anyhow::Result<Relay> {
        match &self.background {
            Some(bg) => Ok(bg.relay.clone()),
            None => Ok(Relay::new(self.db()?.clone(), self.store.clone())),
        }
    }

    /// State of the database-backed routes, with the clean-up of abandoned direct uploads
    /// started; `None` without a database.
    pub fn app_state(&self, verifier: &Arc<Verifier>) -> anyhow::Result<Option<AppState>> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let app = wiring::app_state(&self.settings, db, &self.store, &self.relay()?, verifier)?;
        wiring::sweep_abandoned_uploads(&self.settings, &app, &self.shutdown);
        Ok(Some(app))
    }

    /// The HTTP application (bound, not yet running), with the gauges `/metrics` shows started.
    pub async fn application(
        &self,
        verifier: Arc<Verifier>,
        app: Option<AppState>,
        transcoding: Transcoding,
    ) -> anyhow::Result<Application> {
        let settings = &self.settings;
        let mut checks: Vec<(&'static str, ReadyCheck)> = Vec::new();
        if let Some(db) = &self.db {
            let db = db.clone();
            checks.push((
                "database",
                Arc::new(move || {
                    let db = db.clone();
                    Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
                }),
            ));
        }
        crate::gauges::spawn(
            self.store.clone(),
            self.db.clone(),
            settings.tenant_caps(),
            self.shutdown.clone(),
        );
        Application::build(AppSettings {
            store: self.store.clone(),
            verifier,
            credentials: wiring::credential_seal(settings),
            on_miss: self.background.as_ref().map(|bg| bg.on_miss.clone()),
            app,
            sse: Some(SseSettings {
                per_tenant: SseSettings::PER_TENANT,
                per_user: Some(settings.sse_streams_per_user),
                heartbeat: None,
            }),
            checks,
            transcoding,
            extra: None,
            router: RouterConfig {
                cors: settings.cors(),
                cors_headers: settings.cors_headers.0.clone(),
                liveness: jobpulse_api::render::Liveness {
                    stalled_after: settings.worker_stalled_after.0,
                },
                ..RouterConfig::default()
            },
            http: HttpConfig {
                bind: settings.bind,
                port: settings.port,
                ..HttpConfig::default()
            },
            listen: Listen::Bind,
            shutdown: self.shutdown.clone(),
        })
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (in use? pick another with --port)",
                settings.bind, settings.port
            )
        })
    }

    /// The video worker: `--concurrency`, `--lease`, the per-tenant cap, work files in
    /// `<data dir>/work`.
    pub fn video_worker(
        &self,
        toolchain: Toolchain,
        storage: MediaStorage,
    ) -> anyhow::Result<VideoWorker> {
        let settings = &self.settings;
        let work_root = settings.data_dir.join("work");
        let mut config = VideoWorkerConfig::new(&work_root);
        config.common.caps.per_tenant = settings.tenant_caps().video;
        if let Some(c) = settings.concurrency {
            config.common.concurrency = c;
        }
        if let Some(lease) = settings.lease {
            config = config.with_lease(lease.0);
        }
        let ctx = PipelineContext {
            toolchain,
            storage,
            work_root,
            options: settings.transcode_options(),
            limits: settings.media_limits(),
        };
        Ok(VideoWorker::new(
            self.db()?.clone(),
            self.store.clone(),
            self.relay()?,
            ctx,
            config,
        ))
    }

    /// The AI worker with this build's handlers: `--concurrency`, `--lease`, the per-tenant
    /// cap, the retention of credentials and inputs.
    pub fn ai_worker(&self, storage: MediaStorage) -> anyhow::Result<AiWorker> {
        let settings = &self.settings;
        let mut config = AiWorkerConfig {
            credentials_retention: settings.credentials_retention.0,
            input_retention: settings.job_input_retention.0,
            ..AiWorkerConfig::default()
        };
        config.common.caps.per_tenant = settings.tenant_caps().ai;
        if let Some(c) = settings.concurrency {
            config.common.concurrency = c;
        }
        if let Some(lease) = settings.lease {
            config = config.with_lease(lease.0);
        }
        Ok(AiWorker::new(
            self.db()?.clone(),
            self.store.clone(),
            self.relay()?,
            storage,
            wiring::registry(settings),
            config,
        ))
    }

    /// Cancels the shutdown token and waits (bounded) for the background services.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let Some(mut bg) = self.background else {
            return;
        };
        let all = async { while bg.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 10 s");
        }
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        jobpulse_api::shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// States the per-tenant caps in effect (the workers' claims and the API's
/// `jobpulse_queue_tenant_capped` use them), and that `tenant_concurrency` is deprecated.
fn log_tenant_caps(settings: &Settings) {
    let caps = settings.tenant_caps();
    let show = |c: Option<u32>| c.map_or_else(|| "off".to_owned(), |n| n.to_string());
    if settings.tenant_concurrency.is_some() {
        tracing::warn!(
            "tenant_concurrency (JOBPULSE_TENANT_CONCURRENCY) is deprecated: it sets both \
             queues' caps where tenant_video_concurrency / tenant_job_concurrency are not given"
        );
    }
    tracing::info!(
        video = %show(caps.video),
        ai = %show(caps.ai),
        "per-tenant concurrency caps (jobs of one tenant running at once, all workers)"
    );
}
