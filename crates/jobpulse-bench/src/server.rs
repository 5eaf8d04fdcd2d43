//! The server under load: the real application (`Application::build`, as `serve` builds it) on
//! a runtime of its own in this process, over Redis or the in-process store, with 1 000 seeded
//! videos per tenant and, for `progress`, the old way's routes.

use super::*;

/// What server a scenario needs.
pub(crate) struct ServerSpec<'a> {
    /// `redis` or `memory`.
    pub(crate) store: &'a str,
    /// Also serve the old way's routes (a fresh PostgreSQL database).
    pub(crate) with_old: bool,
    /// Serve the SSE route, with this per-tenant stream cap.
    pub(crate) sse_cap: Option<usize>,
    /// Tenants 1..=tenants get the seeded videos and a token.
    pub(crate) tenants: i64,
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// Tenant 1's token.
    pub(crate) token: String,
    /// Tenant `t`'s token at index `t - 1`.
    pub(crate) tokens: Vec<String>,
    /// The server's read model (writes to it reach the server's streams).
    pub(crate) store: SharedStore,
    /// The SSE hub, when the route is served.
    pub(crate) hub: Option<Hub>,
    /// The server's runtime (to run a task beside the server's own).
    pub(crate) runtime: tokio::runtime::Handle,
}

/// What the server thread hands back once it listens.
type Started = (SocketAddr, SharedStore, Option<Hub>, tokio::runtime::Handle);

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mint(verifier: &Verifier, tenant: i64) -> anyhow::Result<String> {
    verifier
        .mint(&TokenSpec {
            tenant: TenantId::new(tenant)?,
            tenant_code: None,
            user_id: Some("7".into()),
            role: Some("teacher".into()),
            ttl_secs: 3600,
            worker: false,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn open_store(
    kind: &str,
    redis_url: &str,
    config: jobpulse_store::StoreConfig,
) -> anyhow::Result<SharedStore> {
    Ok(match kind {
        "memory" => Arc::new(MemoryStore::default()),
        "redis" => Arc::new(
            RedisStore::connect(
                redis_url,
                KeySpace::new(&format!("bench-{}", std::process::id()))?,
                config,
            )
            .await
            .context("connecting to Redis")?,
        ),
        other => anyhow::bail!("--store must be redis or memory, not {other:?}"),
    })
}

/// Starts the server on its own runtime with seeded data; returns once it listens.
pub(crate) fn start_server(settings: &Settings, spec: &ServerSpec<'_>) -> anyhow::Result<Server> {
    let redis_url = settings
        .redis_url
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let database_url = settings
        .database_url
        .clone()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store_kind = spec.store.to_owned();
    // As `jobpulse serve` would (read cache on unless JOBPULSE_READ_CACHE_ENTRIES=0).
    let store_config = settings.serving_store_config();
    let (with_old, sse_cap, tenants) = (spec.with_old, spec.sse_cap, spec.tenants);
    let stop = CancellationToken::new();
    let verifier = Arc::new(Verifier::new(AuthConfig::hs256(
        b"bench-secret-bench-secret-bench-secret",
    )?));
    let tokens = (1..=tenants)
        .map(|t| mint(&verifier, t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let token = tokens.first().cloned().context("at least one tenant")?;
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<Started>>();
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        rt.block_on(async move {
            let setup = async {
                let store = open_store(&store_kind, &redis_url, store_config).await?;
                seed(&store, tenants).await?;
                let old = if with_old {
                    Some(old_way::OldWay::create(&database_url, 1, SEEDED).await?)
                } else {
                    None
                };
                let mut app_settings = AppSettings::new(store.clone(), verifier.clone());
                app_settings.sse = sse_cap.map(SseSettings::per_tenant);
                app_settings.extra = old.as_ref().map(|o| o.router(verifier.clone()));
                app_settings.shutdown = stop2.clone();
                let app = Application::build(app_settings).await?;
                let hub = app.hub().cloned();
                anyhow::Ok((app, old, store, hub))
            };
            match setup.await {
                Ok((app, old, store, hub)) => {
                    let _ = tx.send(Ok((app.local_addr(), store, hub, handle)));
                    app.run_until_stopped(stop2).await?;
                    if let Some(old) = old {
                        old.drop_database().await?;
                    }
                    Ok(())
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    Ok(())
                }
            }
        })
    });
    let (addr, store, hub, runtime) = rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the bench server thread died"))??;
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
        token,
        tokens,
        store,
        hub,
        runtime,
    })
}

/// Videos 1..=SEEDED of every tenant, PROCESSING at 57 %.
async fn seed(store: &SharedStore, tenants: i64) -> anyhow::Result<()> {
    let mut writes = Vec::new();
    for t in 1..=tenants {
        for v in 1..=SEEDED {
            let key = TaskKey::video(TenantId::new(t)?, VideoId::new(v)?);
            let mut s = jobpulse_domain::State::video(jobpulse_domain::VideoStatus::Processing);
            s.percent = jobpulse_domain::Percent::new(57)?;
            s.step = Some(jobpulse_domain::steps::VIDEO.step(4, 0.4));
            s.remaining_seconds = Some(84);
            writes.push(Write::set(key, Fence::new(1, 1, 1)?, s)?);
        }
    }
    for chunk in writes.chunks(200) {
        store.apply_many(chunk).await?;
    }
    Ok(())
}
