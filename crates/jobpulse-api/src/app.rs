//! Assembling the application: one [`Application::build`] for every process that serves the
//! API (`jobpulse up`, `jobpulse serve`), the tests, the dashboard fixture and the benchmarks.
//!
//! [`AppSettings`] says what to serve — the read model and verifier (always), the
//! database-backed routes (`app`, when a database is configured), the event stream (`sse`),
//! readiness checks, the router's cross-cutting settings and the listener — and
//! [`Application::build`] puts the read state, the ops routes, the stream hub and the router
//! together and binds. Nothing here starts a background service of the database (relay,
//! reconciler, read-repair): the process that owns the database does, and hands the miss hook
//! in.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use jobpulse_store::SharedStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::hub::Hub;
use crate::routes::ops::ReadyCheck;
use crate::routes::stream::StreamState;
use crate::server::{Application, HttpConfig};
use crate::state::{AppState, MissHook, ReadState};
use crate::{Parts, RouterConfig};

/// Whether this process can transcode the videos it accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transcoding {
    /// Workers elsewhere transcode (`serve`, tests): nothing to check here.
    #[default]
    Elsewhere,
    /// This process runs a video worker (`up` with ffmpeg).
    Here,
    /// This process is the only worker and has no ffmpeg (`up` without it): video uploads are
    /// refused with 503 and `/readyz` reports the transcoder missing.
    Missing,
}

/// What a client is told when no worker can transcode.
pub const NO_TRANSCODER: &str = "video transcoding is unavailable: ffmpeg/ffprobe were not \
     found (install ffmpeg, or set JOBPULSE_FFMPEG / JOBPULSE_FFPROBE, and restart jobpulse)";

/// The event-stream route's settings.
#[derive(Debug, Clone, Copy)]
pub struct SseSettings {
    /// Streams one process holds per tenant.
    pub per_tenant: usize,
    /// Streams one user may hold; `None`: the hub's default.
    pub per_user: Option<usize>,
    /// Interval of the `: hb` comments; `None`: 15 s.
    pub heartbeat: Option<Duration>,
}

impl SseSettings {
    /// Streams one production process holds per tenant.
    pub const PER_TENANT: usize = 2_000;

    pub fn per_tenant(cap: usize) -> Self {
        Self {
            per_tenant: cap,
            per_user: None,
            heartbeat: None,
        }
    }
}

/// Where the server listens.
#[derive(Debug)]
pub enum Listen {
    /// Bind `HttpConfig::bind`/`port` (port 0 picks a free one).
    Bind,
    /// A listener bound beforehand (to learn the port before the state needs its public URL).
    On(TcpListener),
}

/// Everything [`Application::build`] assembles an application from.
pub struct AppSettings {
    pub store: SharedStore,
    pub verifier: Arc<Verifier>,
    /// Opens the sealed initial passwords of DONE imports for staff (progress reads, streams).
    pub credentials: Option<jobpulse_db::CredentialSeal>,
    /// Called when a poll misses the read model (read-repair); `None`: nothing is told.
    pub on_miss: Option<MissHook>,
    /// The database-backed routes; `None`: progress reads only.
    pub app: Option<AppState>,
    /// The event-stream route; `None`: not served.
    pub sse: Option<SseSettings>,
    /// Readiness checks besides the read model's (e.g. the database's).
    pub checks: Vec<(&'static str, ReadyCheck)>,
    pub transcoding: Transcoding,
    /// Other routes with their state applied (the benchmark's old way).
    pub extra: Option<Router>,
    pub router: RouterConfig,
    pub http: HttpConfig,
    pub listen: Listen,
    /// Stops the hub (and, passed to [`Application::run_until_stopped`], the server).
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for AppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSettings")
            .field("store", &self.store.backend())
            .field("app", &self.app.is_some())
            .field("sse", &self.sse)
            .field("transcoding", &self.transcoding)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl AppSettings {
    /// Progress reads over `store`, nothing else: no database routes, no stream, default
    /// router and listener settings, a free port.
    pub fn new(store: SharedStore, verifier: Arc<Verifier>) -> Self {
        Self {
            store,
            verifier,
            credentials: None,
            on_miss: None,
            app: None,
            sse: None,
            checks: Vec::new(),
            transcoding: Transcoding::Elsewhere,
            extra: None,
            router: RouterConfig::default(),
            http: HttpConfig {
                port: 0,
                ..HttpConfig::default()
            },
            listen: Listen::Bind,
            shutdown: CancellationToken::new(),
        }
    }
}

/// Refuses requests that would queue a transcode (`POST` under `/api/v1/media/`: uploads,
/// direct-upload completions, retries) when nothing can transcode them.
async fn refuse_transcodes(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.method() == Method::POST && req.uri().path().starts_with("/api/v1/media/") {
        return crate::error::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            NO_TRANSCODER.to_owned(),
        );
    }
    next.run(req).await
}

impl Application {
    /// Assembles the router from `settings` and binds its listener.
    pub async fn build(settings: AppSettings) -> std::io::Result<Application> {
        let AppSettings {
            store,
            verifier,
            credentials,
            on_miss,
            app,
            sse,
            mut checks,
            transcoding,
            extra,
            router: mut router_config,
            http,
            listen,
            shutdown,
        } = settings;
        let mut read = ReadState::new(store.clone(), verifier)
            .with_credentials(credentials)
            .with_liveness(router_config.liveness);
        if let Some(hook) = on_miss {
            read = read.with_miss_hook(hook);
        }
        if transcoding == Transcoding::Missing {
            checks.push((
                "transcoder",
                Arc::new(|| Box::pin(async { Err(NO_TRANSCODER.to_owned()) })),
            ));
        }
        let ops = crate::ops_state(store, checks);
        // The dashboard's player fetches media from the public URL and, on S3, from the bucket.
        if let Some(a) = &app {
            router_config.media_origins.extend(
                url::Url::parse(&a.public_url)
                    .ok()
                    .map(|u| u.origin().ascii_serialization()),
            );
            router_config
                .media_origins
                .extend(a.storage.presign_origin().await);
        }
        let mut hub: Option<Hub> = None;
        let long_running = sse.map(|sse| {
            let mut stream = StreamState::start(read.clone(), sse.per_tenant, shutdown.clone());
            if let Some(cap) = sse.per_user {
                stream.hub = stream.hub.with_per_user_cap(cap);
            }
            if let Some(every) = sse.heartbeat {
                stream.heartbeat = every;
            }
            hub = Some(stream.hub.clone());
            crate::routes::stream::router(stream)
        });
        let mut router = crate::router(
            Parts {
                read,
                ops,
                long_running,
                extra,
                app,
            },
            &router_config,
        );
        if transcoding == Transcoding::Missing {
            router = router.layer(axum::middleware::from_fn(refuse_transcodes));
        }
        let mut application = match listen {
            Listen::Bind => Application::bind(http, router).await?,
            Listen::On(listener) => Application::with_listener(listener, http, router),
        };
        application.hub = hub;
        Ok(application)
    }
}
