//! The one declaration of every setting (see the [module docs](super)), the defaults it names
//! and what the merged [`Config`] derives for the media crate.
//!
//! A setting's doc comment is also its flag's `--help` text, which is plain text: `<data dir>`
//! and bare URLs there are meant as written, not as HTML or links.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::declare::{Key, Redact, ShowMerged, Source};
use super::values::{
    Bool, Dur, DurList, HeaderNames, KeepFor, Origins, PublicUrl, Retention, TenantCap,
    WebhookAllow,
};
use crate::logging::LogFormat;

settings! {
    /// PostgreSQL or SQLite URL (postgres://… or sqlite://…); default: the SQLite file in the
    /// data dir.
    database_url: String, env "DATABASE_URL", Password;
    /// Redis URL of the shared read model; unset means the in-process store (only valid for
    /// `up`).
    redis_url: String, env "REDIS_URL", Password;
    /// Seed nodes of a Redis Cluster holding the read model, comma-separated
    /// (redis://host:port,redis://host:port,…; the rest are discovered); instead of REDIS_URL.
    redis_cluster_nodes: String, env "JOBPULSE_REDIS_CLUSTER_NODES", Password;
    /// HS256 secret (at least 32 bytes); default for `up`: generated into the data dir.
    jwt_secret: String, env "JOBPULSE_JWT_SECRET", Whole;
    /// PEM public key file to verify tokens with instead of a secret.
    jwt_public_key: PathBuf, env "JOBPULSE_JWT_PUBLIC_KEY", No;
    /// Algorithm of the public key: RS256, ES256 or EdDSA (default RS256).
    jwt_algorithm: String, env "JOBPULSE_JWT_ALGORITHM", No;
    /// Required `aud` of browser tokens.
    jwt_audience: String, env "JOBPULSE_JWT_AUDIENCE", No;
    /// Required `iss` of every token.
    jwt_issuer: String, env "JOBPULSE_JWT_ISSUER", No;
    /// Where embedded data lives (SQLite file, media, work files, generated secret).
    data_dir: PathBuf, env "JOBPULSE_DATA_DIR", No, default PathBuf::from("./jobpulse-data");
    /// Port of the HTTP listener (0 picks a free one).
    port: u16, env "JOBPULSE_PORT", No, default 8080;
    /// Address of the HTTP listener (0.0.0.0 for every interface).
    bind: IpAddr, env "JOBPULSE_BIND", No, default IpAddr::from([127, 0, 0, 1]);
    /// Comma-separated browser origins allowed by CORS; `*` allows any.
    cors_origins: Origins, env "JOBPULSE_CORS_ORIGINS", No, default Origins(None);
    /// Comma-separated request headers CORS allows beyond the built-in list (Authorization,
    /// Content-Type, X-Client, X-Client-Version, X-Tenant-Code, If-None-Match, Last-Event-ID,
    /// Idempotency-Key).
    cors_headers: HeaderNames, env "JOBPULSE_CORS_HEADERS", No, default HeaderNames::default();
    /// Media storage: file:///absolute/path or s3://bucket[/prefix] (S3 settings from the
    /// aws_* settings); default file://<data dir>/media.
    storage_url: String, env "JOBPULSE_STORAGE_URL", No;
    /// The API's public base URL as browsers reach it, e.g. https://api.example.com (absolute
    /// upload and media URLs start with it); default http://<bind>:<port>.
    public_url: PublicUrl, env "JOBPULSE_PUBLIC_URL", No;
    /// How long a direct upload may stay unfinished (PENDING) before its object, multipart
    /// upload and video are removed (at least 3h).
    upload_retention: Dur, env "JOBPULSE_UPLOAD_RETENTION", No, default Dur(DEFAULT_UPLOAD_RETENTION);
    /// Prefix of every Redis key (lets several deployments or tests share one Redis).
    key_prefix: String, env "JOBPULSE_KEY_PREFIX", No, default "jp".to_owned();
    /// Sliding TTL of in-progress records in the read model.
    live_ttl: Dur, env "JOBPULSE_LIVE_TTL", No, default Dur(Duration::from_secs(6 * 3600));
    /// Bound on how long terminal records stay in the read model; unset keeps them.
    terminal_retention: Dur, env "JOBPULSE_TERMINAL_RETENTION", No;
    /// Also read the old system's `tenant:{tid}:…:status|progress` keys on a miss.
    legacy_read: Bool, env "JOBPULSE_LEGACY_READ", No, default Bool(false);
    /// Entries of the API's in-process read cache, kept exact by the change feed (0 turns it
    /// off).
    read_cache_entries: usize, env "JOBPULSE_READ_CACHE_ENTRIES", No, default jobpulse_store::ReadCacheConfig::default().entries;
    /// Longest a cached read is served before Redis is asked again.
    read_cache_max_age: Dur, env "JOBPULSE_READ_CACHE_MAX_AGE", No, default Dur(jobpulse_store::ReadCacheConfig::default().max_age);
    /// How long a running task may go without a sign of its worker (a progress write or a
    /// liveness write on a heartbeat) before progress answers show it `stalled`; keep it
    /// above 1.5 heartbeat periods (a third of the workers' lease each) and below the lease.
    worker_stalled_after: Dur, env "JOBPULSE_WORKER_STALLED_AFTER", No, default Dur(jobpulse_api::render::Liveness::DEFAULT_STALLED_AFTER);
    /// How long workers keep the initial passwords of a finished import for staff to
    /// download; `off` keeps them.
    credentials_retention: Retention, env "JOBPULSE_CREDENTIALS_RETENTION", No, default Retention(Some(jobpulse_worker::ai::DEFAULT_CREDENTIALS_RETENTION));
    /// How long the uploaded input of an ended job (an import's spreadsheet: names, phone
    /// numbers) is kept; `0` deletes it as soon as the job ends, `off` keeps it.
    job_input_retention: KeepFor, env "JOBPULSE_JOB_INPUT_RETENTION", No, default KeepFor(Some(jobpulse_worker::ai::DEFAULT_INPUT_RETENTION));
    /// Key for signed media URLs (shared by all API replicas); default: derived from the
    /// HS256 secret.
    media_secret: String, env "JOBPULSE_MEDIA_SECRET", Whole;
    /// Key sealing the initial passwords of imports at rest (shared by the API and the AI
    /// workers, at least 32 bytes); default: derived from the HS256 secret.
    credentials_key: String, env "JOBPULSE_CREDENTIALS_KEY", Whole;
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line).
    log_format: LogFormat, env "JOBPULSE_LOG_FORMAT", No, default LogFormat::Text;
    /// Jobs a worker process runs at once; default 1 for `worker video`, 2 for `worker ai`.
    concurrency: usize, env "JOBPULSE_WORKER_CONCURRENCY", No;
    /// Most transcodes of one tenant running at once, across all video workers (a tenant with
    /// a burst cannot take every worker); `off` for no cap. `jobpulse_queue_tenant_capped`
    /// counts the tenants held back by it.
    tenant_video_concurrency: TenantCap, env "JOBPULSE_TENANT_VIDEO_CONCURRENCY", No, default TenantCap(Some(jobpulse_db::TenantCaps::DEFAULT_VIDEO));
    /// Most AI jobs (imports, exports, …) of one tenant running at once, across all AI
    /// workers; `off` for no cap.
    tenant_job_concurrency: TenantCap, env "JOBPULSE_TENANT_JOB_CONCURRENCY", No, default TenantCap(Some(jobpulse_db::TenantCaps::DEFAULT_AI));
    /// Deprecated: both caps at once (for a queue whose own setting is not given); use
    /// tenant_video_concurrency and tenant_job_concurrency.
    tenant_concurrency: TenantCap, env "JOBPULSE_TENANT_CONCURRENCY", No;
    /// Job submits (that write) one user may make per minute, per API process; beyond it
    /// 429 with Retry-After.
    submit_rate_per_minute: u32, env "JOBPULSE_SUBMIT_RATE_PER_MINUTE", No, default jobpulse_api::rate::RateLimit::SUBMITS.per_minute;
    /// Job submits one user may make at once before the per-minute rate applies.
    submit_burst: u32, env "JOBPULSE_SUBMIT_BURST", No, default jobpulse_api::rate::RateLimit::SUBMITS.burst;
    /// Most SSE streams one user (token subject) may hold per tenant and API process; 429
    /// beyond (the tenant's cap is 2 000 per process).
    sse_streams_per_user: usize, env "JOBPULSE_SSE_STREAMS_PER_USER", No, default 100;
    /// ffprobe checks of uploads the API runs at once.
    upload_probes: usize, env "JOBPULSE_UPLOAD_PROBES", No, default jobpulse_api::probe_pool::ProbeLimits::default().running;
    /// Uploads waiting for a probe beyond those; more get 503 with Retry-After.
    upload_probe_queue: usize, env "JOBPULSE_UPLOAD_PROBE_QUEUE", No, default jobpulse_api::probe_pool::ProbeLimits::default().waiting;
    /// Bytes all uploads being received may hold in the spool together (503 beyond).
    spool_max_bytes: u64, env "JOBPULSE_SPOOL_MAX_BYTES", No, default jobpulse_api::spool::SpoolLimits::default().max_bytes;
    /// Free bytes the spool's disk keeps; an upload that would go below gets 507.
    spool_min_free_bytes: u64, env "JOBPULSE_SPOOL_MIN_FREE_BYTES", No, default jobpulse_api::spool::SpoolLimits::default().min_free_bytes;
    /// How long a worker's claim or heartbeat holds a job; a crashed worker's jobs are retried
    /// this long after its last heartbeat (heartbeats go every third of it). Default 30s.
    lease: Dur, env "JOBPULSE_WORKER_LEASE", No;
    /// Serve a worker's Prometheus metrics (`/metrics`, `/healthz`) on this port of --bind;
    /// off by default.
    metrics_port: u16, env "JOBPULSE_METRICS_PORT", No;
    /// Comma-separated networks (127.0.0.0/8, 10.1.2.3) and host names webhook endpoints may
    /// use although they are loopback, private or link-local (SSRF rule); empty by default.
    webhook_allow_hosts: WebhookAllow, env "JOBPULSE_WEBHOOK_ALLOW_HOSTS", No, default WebhookAllow::default();
    /// Delays between a webhook delivery's failed attempts (the last one repeats).
    webhook_retry_schedule: DurList, env "JOBPULSE_WEBHOOK_RETRY_SCHEDULE", No, default DurList(jobpulse_webhooks::SenderConfig::default_schedule());
    /// A webhook delivery failing for this long since its first attempt goes dead.
    webhook_retry_window: Dur, env "JOBPULSE_WEBHOOK_RETRY_WINDOW", No, default Dur(jobpulse_webhooks::SenderConfig::default().retry_window);
    /// Connect and total timeout of one webhook request.
    webhook_timeout: Dur, env "JOBPULSE_WEBHOOK_TIMEOUT", No, default Dur(jobpulse_webhooks::SenderConfig::default().timeout);
    /// How long a sender's claim holds a delivery; a sender killed mid-delivery has it sent
    /// again this long after (at least webhook_timeout + 6s).
    webhook_lease: Dur, env "JOBPULSE_WEBHOOK_LEASE", No, default Dur(jobpulse_webhooks::SenderConfig::default().lease);
    /// Longest video accepted (upload 422, or FAILED in the worker); bounds transcode work and
    /// the HLS segment count.
    video_max_duration: Dur, env "JOBPULSE_VIDEO_MAX_DURATION", No, default Dur(jobpulse_media::MediaLimits::default().max_duration);
    /// Largest width or height of a video accepted, pixels.
    video_max_dimension: u32, env "JOBPULSE_VIDEO_MAX_DIMENSION", No, default jobpulse_media::MediaLimits::default().max_dimension;
    /// Largest frame of a video accepted, pixels (width × height).
    video_max_pixels: u64, env "JOBPULSE_VIDEO_MAX_PIXELS", No, default jobpulse_media::MediaLimits::default().max_pixels;
    /// Highest frame rate of a video accepted, frames per second.
    video_max_fps: u32, env "JOBPULSE_VIDEO_MAX_FPS", No, default jobpulse_media::MediaLimits::default().max_fps;
    /// A transcode may run this many times the video's duration (at least 2 min) before ffmpeg
    /// is killed; retried once, then FAILED.
    transcode_timeout_factor: f64, env "JOBPULSE_TRANSCODE_TIMEOUT_FACTOR", No, default jobpulse_media::TranscodeOptions::default().timeout_factor;
    /// Hard cap on one transcode's wall-clock time.
    transcode_timeout_max: Dur, env "JOBPULSE_TRANSCODE_TIMEOUT_MAX", No, default Dur(jobpulse_media::TranscodeOptions::default().timeout_max);
    /// Address-space budget of each ffmpeg/ffprobe run on media, bytes (RLIMIT_AS; 0 turns it
    /// off); a video needing more is FAILED (or refused at upload).
    ffmpeg_memory_limit: u64, env "JOBPULSE_FFMPEG_MEMORY_LIMIT", No, default DEFAULT_FFMPEG_MEMORY_LIMIT;
    /// Threads of each transcode (decoder, filters, x264); default: the machine's cores, at
    /// most 8.
    ffmpeg_threads: u32, env "JOBPULSE_FFMPEG_THREADS", No, default default_ffmpeg_threads();
    /// The ffmpeg executable; default: `ffmpeg` on PATH.
    ffmpeg: PathBuf, env "JOBPULSE_FFMPEG", No;
    /// The ffprobe executable; default: `ffprobe` on PATH.
    ffprobe: PathBuf, env "JOBPULSE_FFPROBE", No;
    /// S3-compatible endpoint (R2, MinIO, …) for s3:// storage; default AWS (the environment's
    /// AWS_ENDPOINT_URL_S3 is honoured too).
    aws_endpoint_url: String, env "AWS_ENDPOINT_URL", No;
    /// S3 signing region (default `auto` for R2 endpoints, else us-east-1; AWS_DEFAULT_REGION
    /// is honoured too).
    aws_region: String, env "AWS_REGION", No;
    /// S3 access key id (required with an endpoint; on AWS the instance/role credentials are
    /// used without it).
    aws_access_key_id: String, env "AWS_ACCESS_KEY_ID", No;
    /// S3 secret access key.
    aws_secret_access_key: String, env "AWS_SECRET_ACCESS_KEY", Whole;
    /// S3 session token of temporary credentials.
    aws_session_token: String, env "AWS_SESSION_TOKEN", Whole;
    /// Allow a plain http:// S3 endpoint.
    aws_allow_http: Bool, env "AWS_ALLOW_HTTP", No, default Bool(false);
    /// Virtual-hosted S3 requests (https://bucket.host/key) instead of path style; default true
    /// on AWS for buckets without dots, false with an endpoint.
    aws_virtual_hosted_style_request: Bool, env "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", No;
}

/// Default address-space budget of ffmpeg/ffprobe: 3 GiB, a backstop behind the video limits.
/// With two threads a 1080p or 4K transcode maps about 670 MiB, an 8192x8192 one 710 MiB, the
/// issue's 15872x15872 file 1.6 GiB (1.2 GiB resident); more threads map more.
pub const DEFAULT_FFMPEG_MEMORY_LIMIT: u64 = 3 * 1024 * 1024 * 1024;

/// The machine's cores, at most 8 (x264 gains little beyond that at these sizes).
pub fn default_ffmpeg_threads() -> u32 {
    std::thread::available_parallelism()
        .map_or(2, |n| u32::try_from(n.get()).unwrap_or(8))
        .min(8)
}

impl Config {
    /// The largest video accepted (`video_max_*`).
    pub fn media_limits(&self) -> jobpulse_media::MediaLimits {
        jobpulse_media::MediaLimits {
            max_duration: self.video_max_duration.0,
            max_dimension: self.video_max_dimension,
            max_pixels: self.video_max_pixels,
            max_fps: self.video_max_fps,
        }
    }

    /// The transcode's threads and time budget.
    pub fn transcode_options(&self) -> jobpulse_media::TranscodeOptions {
        jobpulse_media::TranscodeOptions {
            threads: Some(self.ffmpeg_threads),
            timeout_factor: self.transcode_timeout_factor,
            timeout_max: self.transcode_timeout_max.0,
            ..jobpulse_media::TranscodeOptions::default()
        }
    }
}

/// How long a direct upload may stay PENDING by default.
pub const DEFAULT_UPLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);
