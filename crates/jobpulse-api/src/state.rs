//! What handlers get from their router.
//!
//! The read side's [`ReadState`] holds the read model, the token verifier and a miss hook —
//! and no database handle, so a progress poll cannot query a database even by mistake.

use std::sync::Arc;

use jobpulse_domain::TaskKey;
use jobpulse_store::SharedStore;

use crate::auth::Verifier;
use crate::metrics::ReadMetrics;

/// Called (without waiting) when a poll misses the read model: e.g. a bounded, rate-limited
/// read-repair queue. It must not block.
pub type MissHook = Arc<dyn Fn(&TaskKey) + Send + Sync>;

/// State of the progress (read) routes.
#[derive(Clone)]
pub struct ReadState {
    pub store: SharedStore,
    pub auth: Arc<Verifier>,
    pub metrics: ReadMetrics,
    pub on_miss: Option<MissHook>,
    /// Opens the sealed initial passwords of DONE imports for staff (`crate::credentials`).
    pub credentials: Option<jobpulse_db::CredentialSeal>,
    /// When a running task is shown `stalled` (docs/contract.md §3a).
    pub liveness: crate::render::Liveness,
}

impl std::fmt::Debug for ReadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadState")
            .field("store", &self.store.backend())
            .field("on_miss", &self.on_miss.is_some())
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<ReadState> for Arc<Verifier> {
    fn from_ref(state: &ReadState) -> Self {
        state.auth.clone()
    }
}

impl ReadState {
    /// Installs the metrics recorder if needed (handles resolved before it would be no-ops).
    pub fn new(store: SharedStore, auth: Arc<Verifier>) -> Self {
        crate::metrics::install();
        Self {
            store,
            auth,
            metrics: ReadMetrics::new(),
            on_miss: None,
            credentials: None,
            liveness: crate::render::Liveness::default(),
        }
    }

    /// Shows a running task `stalled` after `stalled_after` without a sign of its worker.
    pub fn with_liveness(mut self, liveness: crate::render::Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// The key that opens the sealed initial passwords in DONE import results.
    pub fn with_credentials(mut self, seal: Option<jobpulse_db::CredentialSeal>) -> Self {
        self.credentials = seal;
        self
    }

    pub fn with_miss_hook(mut self, hook: MissHook) -> Self {
        self.on_miss = Some(hook);
        self
    }

    /// Reads one task for a poll. When the read model cannot be reached the poll is answered
    /// as UNKNOWN (`None`), as the contract allows, instead of failing: a front end keeps
    /// polling on UNKNOWN, and Redis going away must not become a storm of 5xx answers (readiness
    /// reports the outage to operators, and `jobpulse_progress_read_model_unavailable_total`
    /// counts these answers). `Err(())` tells the caller the store was not reached, so a miss
    /// is not reported to read-repair.
    pub(crate) async fn read(&self, key: &TaskKey) -> Result<Option<jobpulse_store::Snapshot>, ()> {
        self.store.get(key).await.map_err(|e| self.unavailable(&e))
    }

    /// [`ReadState::read`] for a client that already holds revision `held` (from its
    /// `If-None-Match`): this replica's cache is not trusted when it is behind that.
    pub(crate) async fn read_fresh(
        &self,
        key: &TaskKey,
        held: Option<u64>,
    ) -> Result<Option<jobpulse_store::Snapshot>, ()> {
        match held {
            Some(rev) => self
                .store
                .get_at_least(key, rev)
                .await
                .map_err(|e| self.unavailable(&e)),
            None => self.read(key).await,
        }
    }

    /// Counts (and logs at debug) a poll answered without the read model.
    pub(crate) fn unavailable(&self, e: &jobpulse_store::StoreError) {
        self.metrics.unavailable.increment(1);
        tracing::debug!(error = %e, "read model unavailable; answering UNKNOWN");
    }

    pub(crate) fn missed(&self, key: &TaskKey) {
        self.metrics.misses.increment(1);
        if let Some(hook) = &self.on_miss {
            hook(key);
        }
    }
}

/// What the API knows about a job type at submit time (provided by the worker's registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The submit must carry a file.
    pub needs_file: bool,
    /// Only staff may submit it, see its progress and fetch its result.
    pub staff_only: bool,
    pub max_attempts: Option<u32>,
    pub timeout: std::time::Duration,
}

/// The job types this deployment can run.
pub trait JobCatalog: Send + Sync + std::fmt::Debug + 'static {
    fn describe(&self, job_type: &jobpulse_domain::JobType) -> Option<JobSpec>;
    /// Names of every known type (for error messages).
    fn known(&self) -> Vec<String>;
}

/// Upload and body limits of the write routes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest video upload, bytes.
    pub video_bytes: u64,
    /// Largest job input file, bytes.
    pub job_file_bytes: u64,
    /// Lifetime of signed media URLs.
    pub media_url_ttl: std::time::Duration,
    /// Lifetime of direct-upload URLs (presigned S3 PUTs or the API's own; docs/contract.md §7:
    /// the front end allows 2 h and asks for a fresh one on a 403).
    pub upload_url_ttl: std::time::Duration,
    /// Job submits per user (JSON, multipart, enroll); see [`crate::rate`].
    pub submits: crate::rate::RateLimit,
    /// ffprobe runs while answering uploads; see [`crate::probe_pool`].
    pub probes: crate::probe_pool::ProbeLimits,
    /// Bytes uploads may hold in the spool, free space kept; see [`crate::spool`].
    pub spool: crate::spool::SpoolLimits,
    /// The largest video accepted, checked on the upload's probe (422 beyond).
    pub media: jobpulse_media::MediaLimits,
    /// Networks and host names webhook endpoints may use despite the SSRF rule
    /// (`jobpulse_webhooks::guard`); empty by default.
    pub webhook_allow: jobpulse_webhooks::AllowList,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            video_bytes: 2 * 1024 * 1024 * 1024,
            job_file_bytes: 20 * 1024 * 1024,
            media_url_ttl: std::time::Duration::from_secs(6 * 3600),
            upload_url_ttl: std::time::Duration::from_secs(2 * 3600),
            submits: crate::rate::RateLimit::SUBMITS,
            probes: crate::probe_pool::ProbeLimits::default(),
            spool: crate::spool::SpoolLimits::default(),
            media: jobpulse_media::MediaLimits::default(),
            webhook_allow: jobpulse_webhooks::AllowList::default(),
        }
    }
}

/// State of the database-backed routes (media, jobs, lectures, files). Not used by progress
/// reads.
#[derive(Clone)]
pub struct AppState {
    pub db: jobpulse_db::Db,
    pub store: SharedStore,
    pub relay: jobpulse_sync::Relay,
    pub storage: jobpulse_media::MediaStorage,
    pub auth: Arc<Verifier>,
    pub signer: crate::signing::MediaSigner,
    /// ffprobe for checking uploads at once; `None` leaves the check to the worker.
    pub toolchain: Option<jobpulse_media::Toolchain>,
    pub catalog: Arc<dyn JobCatalog>,
    pub limits: Limits,
    /// Counts each user's job submits against `limits.submits`: build it with
    /// `UserRate::new(limits.submits, "job submits")`.
    pub submit_rate: crate::rate::UserRate,
    /// Bounds the upload probes: `ProbePool::new(limits.probes)`.
    pub probes: crate::probe_pool::ProbePool,
    /// The spool's shared budget: `SpoolBudget::new(limits.spool)`.
    pub spool: crate::spool::SpoolBudget,
    /// Where uploads are spooled before they go to media storage.
    pub spool_dir: std::path::PathBuf,
    /// The API's public base URL as browsers reach it (`--public-url`, e.g.
    /// `https://api.example.com`, no trailing `/`): absolute URLs the API hands out (file
    /// storage's upload URLs) start with it.
    pub public_url: String,
    /// Seals a `fixed` enroll password into the job's payload and opens the sealed initial
    /// passwords of results for staff; `None`: the server has no credentials key.
    pub credentials: Option<jobpulse_db::CredentialSeal>,
}

impl AppState {
    /// Publishes fresh outbox rows to the read model now; on failure the relay delivers them
    /// later. Every write route calls it after its transaction commits.
    pub async fn publish(&self, outbox: &[jobpulse_db::OutboxEntry]) {
        if outbox.is_empty() {
            return;
        }
        if let Err(e) = self.relay.publish_now(outbox).await {
            tracing::warn!(error = %e, "publishing at once failed; the relay will retry");
        }
    }
}

impl axum::extract::FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.kind())
            .field("store", &self.store.backend())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
