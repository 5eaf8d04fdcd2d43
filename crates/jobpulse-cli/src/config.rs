//! Configuration, declared once.
//!
//! Every setting is one line of the [`settings!`] table below: its file key (the field name),
//! its flag (`--field-name`), its environment variable, its type, its default and whether it is
//! a secret. From that one declaration come the clap flags ([`ServerArgs`]), the TOML file
//! ([`FileConfig`], unknown keys refused), the merged values with their source ([`Config`]),
//! the list of keys ([`KEYS`], checked against `deploy/jobpulse.example.toml` by a test) and
//! `jobpulse config`'s report.
//!
//! Precedence: flag > environment > file (`--config` / `JOBPULSE_CONFIG`) > default.
//! Durations parse with humantime (`90s`, `15m`, `1h30m`, `7d`); a plain number is seconds.
//! Server settings exist on the server commands only (`up`, `serve`, `worker`, `migrate`,
//! `repair`, `tenant`, `storage`, `config`, `token`, `bench`); the client commands (`submit`,
//! `watch`) have their own few flags ([`crate::client::ClientArgs`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::logging::LogFormat;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
            Source::Unset => "unset",
        })
    }
}

/// How a setting is shown by `jobpulse config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redact {
    /// As is.
    No,
    /// Never shown (secrets and keys).
    Whole,
    /// A URL whose password is hidden.
    Password,
}

impl Redact {
    /// Whether `--help` hides the environment variable's value.
    pub const fn hides(self) -> bool {
        !matches!(self, Redact::No)
    }
}

/// One declared setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The file key (and, with `-` for `_`, the flag).
    pub name: &'static str,
    /// The environment variable.
    pub env: &'static str,
}

/// A value as `jobpulse config` prints it: a TOML literal.
pub trait Show {
    fn show(&self) -> String;
    /// [`Show::show`] with a URL's password hidden (only strings hold URLs).
    fn show_without_password(&self) -> String {
        self.show()
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl Show for String {
    fn show(&self) -> String {
        toml_str(self)
    }
    fn show_without_password(&self) -> String {
        toml_str(&crate::wiring::redact(self))
    }
}
impl Show for PathBuf {
    fn show(&self) -> String {
        toml_str(&self.display().to_string())
    }
}
impl Show for IpAddr {
    fn show(&self) -> String {
        toml_str(&self.to_string())
    }
}
impl Show for u16 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl Show for u32 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl Show for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl Show for f64 {
    fn show(&self) -> String {
        // TOML floats need a fraction: 2 → 2.0.
        let v = toml::Value::Float(*self);
        v.to_string()
    }
}
impl Show for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl Show for LogFormat {
    fn show(&self) -> String {
        toml_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// `Deserialize` through `FromStr`: the file takes the same text as the flag.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Show for $t {
            fn show(&self) -> String {
                toml_str(&self.to_string())
            }
        }
    };
}

/// A yes/no setting: `true`/`false` (also `1`/`0`, as the AWS variables take them) on the
/// command line and in the environment; a TOML boolean (or such a string) in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bool(pub bool);

impl FromStr for Bool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Bool(true)),
            "false" | "0" => Ok(Bool(false)),
            _ => Err(format!("{s:?}: expected true or false")),
        }
    }
}

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(b) => Ok(Bool(b)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Show for Bool {
    fn show(&self) -> String {
        self.0.to_string()
    }
}

/// A duration: `90s`, `15m`, `1h30m`, `7d` (humantime), or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<u64>().ok().map(Duration::from_secs)
        } else {
            humantime::parse_duration(t).ok()
        };
        match d {
            Some(d) if !d.is_zero() => Ok(Dur(d)),
            Some(_) => Err(format!("duration {s:?} must be more than 0")),
            None => Err(format!(
                "invalid duration {s:?}; use e.g. 90s, 15m, 1h30m, 7d"
            )),
        }
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}
deserialize_from_str!(Dur);

/// A retention: a duration, or `off` (kept for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Retention(None));
        }
        s.parse::<Dur>().map(|d| Retention(Some(d.0)))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => Dur(d).fmt(f),
            None => f.write_str("off"),
        }
    }
}
deserialize_from_str!(Retention);

/// A retention that may be 0 (at once): a duration, `0`, or `off` (kept for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepFor(pub Option<Duration>);

impl FromStr for KeepFor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(KeepFor(None));
        }
        if matches!(t, "0" | "0s") {
            return Ok(KeepFor(Some(Duration::ZERO)));
        }
        s.parse::<Dur>().map(|d| KeepFor(Some(d.0)))
    }
}

impl fmt::Display for KeepFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) if d.is_zero() => f.write_str("0s"),
            Some(d) => Dur(d).fmt(f),
            None => f.write_str("off"),
        }
    }
}
deserialize_from_str!(KeepFor);

/// A per-tenant concurrency cap: a number of jobs (at least 1), or `off` (no cap). In the file
/// a TOML integer or string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCap(pub Option<u32>);

impl FromStr for TenantCap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(TenantCap(None));
        }
        match t.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(TenantCap(Some(n))),
            _ => Err(format!(
                "{s:?}: a number of jobs (at least 1), or off for no cap"
            )),
        }
    }
}

impl fmt::Display for TenantCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for TenantCap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Show for TenantCap {
    fn show(&self) -> String {
        match self.0 {
            Some(n) => n.to_string(),
            None => toml_str("off"),
        }
    }
}

/// Comma-separated browser origins; `*` allows any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(pub Option<Vec<String>>);

impl FromStr for Origins {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(Origins(None));
        }
        Ok(Origins(Some(
            s.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        )))
    }
}

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("*"),
            Some(list) => f.write_str(&list.join(",")),
        }
    }
}
deserialize_from_str!(Origins);

/// Comma-separated HTTP header names (lower-cased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderNames(pub Vec<String>);

impl FromStr for HeaderNames {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                axum::http::HeaderName::from_bytes(h.as_bytes())
                    .map(|n| n.as_str().to_owned())
                    .map_err(|_| format!("{h:?} is not a header name"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(HeaderNames)
    }
}

impl fmt::Display for HeaderNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}
deserialize_from_str!(HeaderNames);

/// An absolute `http(s)://host[:port][/path]` without query, fragment or credentials; kept
/// without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(pub String);

impl FromStr for PublicUrl {
    type Err = String;
    fn from_str(u: &str) -> Result<Self, String> {
        let parsed =
            url::Url::parse(u.trim()).map_err(|e| format!("{u:?} is not an absolute URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
        {
            return Err(format!(
                "{u:?} must be http(s)://host[:port][/path] without query or credentials"
            ));
        }
        Ok(PublicUrl(u.trim().trim_end_matches('/').to_owned()))
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
deserialize_from_str!(PublicUrl);

/// The field type of a merged setting: the type itself with a default, else an `Option`.
macro_rules! merged_ty {
    ($t:ty) => { Option<$t> };
    ($t:ty, $d:expr) => { $t };
}

/// The merged value: the first of flag, env, file that is set, else the default.
macro_rules! merged_val {
    ($v:expr, $t:ty) => {
        $v
    };
    ($v:expr, $t:ty, $d:expr) => {
        match $v {
            Some(v) => v,
            None => {
                let d: $t = $d;
                d
            }
        }
    };
}

macro_rules! has_default {
    () => {
        false
    };
    ($d:expr) => {
        true
    };
}

fn show_as<T: Show>(v: &T, redact: Redact) -> String {
    match redact {
        Redact::No => v.show(),
        Redact::Whole => toml_str("<redacted>"),
        Redact::Password => v.show_without_password(),
    }
}

/// Shows a merged value, redacted as declared (`None` when unset).
trait ShowMerged {
    fn show_merged(&self, redact: Redact) -> Option<String>;
}
impl<T: Show> ShowMerged for Option<T> {
    fn show_merged(&self, redact: Redact) -> Option<String> {
        self.as_ref().map(|v| show_as(v, redact))
    }
}
macro_rules! impl_show_merged {
    ($($t:ty),*) => {$(
        impl ShowMerged for $t {
            fn show_merged(&self, redact: Redact) -> Option<String> {
                Some(show_as(self, redact))
            }
        }
    )*};
}
impl_show_merged!(
    String,
    PathBuf,
    IpAddr,
    Bool,
    u16,
    u32,
    u64,
    f64,
    usize,
    LogFormat,
    Dur,
    Retention,
    KeepFor,
    TenantCap,
    Origins,
    HeaderNames
);

/// The one declaration of every setting; see the module docs.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $t:ty, env $env:literal, $redact:ident $(, default $default:expr)?;
    )*) => {
        /// The server settings as flags (each also read from its environment variable).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ServerArgs {
            /// TOML file with any of these settings as keys (see deploy/jobpulse.example.toml);
            /// unknown keys are refused.
            #[arg(long, env = "JOBPULSE_CONFIG", global = true)]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env, global = true, hide_env_values = Redact::$redact.hides())]
                pub $name: Option<$t>,
            )*
            /// Which settings clap took from the environment rather than a flag.
            #[arg(skip)]
            pub from_env: std::collections::BTreeSet<&'static str>,
        }

        /// The same settings as keys of a TOML file.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( pub $name: Option<$t>, )*
        }

        /// Every declared setting.
        pub const KEYS: &[Key] = &[
            $( Key { name: stringify!($name), env: $env }, )*
        ];

        /// The merged settings (flag > env > file > default) and where each came from.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                pub $name: merged_ty!($t $(, $default)?),
            )*
            /// The source of each setting, by key.
            pub sources: BTreeMap<&'static str, Source>,
        }

        impl Config {
            /// Merges flags/env (`args`) over the file over the defaults.
            pub fn merge(args: &ServerArgs, file: FileConfig) -> Config {
                let mut sources = BTreeMap::new();
                $(
                    let (value, source) = match (args.$name.clone(), file.$name) {
                        (Some(v), _) if args.from_env.contains(stringify!($name)) => (Some(v), Source::Env),
                        (Some(v), _) => (Some(v), Source::Flag),
                        (None, Some(v)) => (Some(v), Source::File),
                        (None, None) if has_default!($($default)?) => (None, Source::Default),
                        (None, None) => (None, Source::Unset),
                    };
                    sources.insert(stringify!($name), source);
                    let $name = merged_val!(value, $t $(, $default)?);
                )*
                Config { $( $name, )* sources }
            }

            /// Every setting's value as a TOML literal, secrets redacted (`None` when unset),
            /// in declaration order.
            pub fn shown(&self) -> Vec<(&'static str, Option<String>)> {
                vec![ $( (stringify!($name), ShowMerged::show_merged(&self.$name, Redact::$redact)), )* ]
            }
        }

        impl ServerArgs {
            /// Records which values clap read from the environment (`m`: the matches of the
            /// command these flags were parsed for).
            pub fn record_sources(&mut self, m: &clap::ArgMatches) {
                $(
                    if m.try_contains_id(stringify!($name)).unwrap_or(false)
                        && m.value_source(stringify!($name)) == Some(clap::parser::ValueSource::EnvVariable)
                    {
                        self.from_env.insert(stringify!($name));
                    }
                )*
            }
        }
    };
}

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

/// Resolved settings: the merged [`Config`] (read through `Deref`) plus what is found at run
/// time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// The HS256 secret in use once [`Settings::auth`] resolved it (configured or from the
    /// data dir); `None` with a public key.
    pub hs256_secret: Option<String>,
}

impl Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Settings {
    /// The shared read model's Redis (`None`: the in-process store).
    pub fn redis_target(&self) -> Option<jobpulse_store::RedisTarget> {
        match (&self.redis_url, &self.redis_cluster_nodes) {
            (Some(url), _) => Some(jobpulse_store::RedisTarget::Single(url.clone())),
            (None, Some(nodes)) => jobpulse_store::RedisTarget::cluster_from_list(nodes).ok(),
            (None, None) => None,
        }
    }

    /// Reads the config file (when one is named), merges and validates.
    pub fn resolve(args: &ServerArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let config = Config::merge(args, file);
        if config.upload_retention.0 < Duration::from_secs(3 * 3600) {
            bail!(
                "upload_retention: at least 3h (upload URLs live 2 h; an upload still running \
                 must not be removed)"
            );
        }
        for (name, d) in [
            ("live_ttl", Some(config.live_ttl)),
            ("terminal_retention", config.terminal_retention),
            ("lease", config.lease),
        ] {
            if d.is_some_and(|d| d.0 > Duration::from_secs(366 * 86_400)) {
                bail!("{name}: at most 366d");
            }
        }
        if config.concurrency == Some(0) {
            bail!("concurrency: at least 1");
        }
        if config.redis_url.is_some() && config.redis_cluster_nodes.is_some() {
            bail!(
                "redis_url and redis_cluster_nodes are both set: give REDIS_URL for one Redis \
                 server or JOBPULSE_REDIS_CLUSTER_NODES for a Redis Cluster, not both"
            );
        }
        if let Some(nodes) = &config.redis_cluster_nodes {
            jobpulse_store::RedisTarget::cluster_from_list(nodes)
                .map_err(|e| anyhow::anyhow!("redis_cluster_nodes: {e}"))?;
        }
        config
            .media_limits()
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        if !(config.transcode_timeout_factor.is_finite() && config.transcode_timeout_factor > 0.0) {
            bail!("transcode_timeout_factor: a number above 0 (e.g. 2 or 1.5)");
        }
        if config.transcode_timeout_max.0 < Duration::from_secs(1) {
            bail!("transcode_timeout_max: at least 1s");
        }
        if config.ffmpeg_threads == 0 || config.ffmpeg_threads > 64 {
            bail!("ffmpeg_threads: 1 to 64");
        }
        if config.ffmpeg_memory_limit != 0 && config.ffmpeg_memory_limit < 256 * 1024 * 1024 {
            bail!(
                "ffmpeg_memory_limit: 0 (off) or at least 268435456 (256 MiB; ffmpeg needs about \
                 400 MiB for a small clip)"
            );
        }
        Ok(Settings {
            config,
            config_file: args.config.clone(),
            hs256_secret: None,
        })
    }

    /// `jobpulse config`'s report: every setting as a TOML line with its source, secrets
    /// redacted; unset settings commented out.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if let Some(path) = &self.config_file {
            out.push_str(&format!("# config file: {}\n", path.display()));
        }
        let width = KEYS.iter().map(|k| k.name.len()).max().unwrap_or(0);
        for (key, (name, shown)) in KEYS.iter().zip(self.shown()) {
            let source = self.sources.get(name).copied().unwrap_or(Source::Unset);
            let origin = match source {
                Source::Env => format!("env {}", key.env),
                other => other.to_string(),
            };
            match shown {
                None => out.push_str(&format!("# {name:width$} (unset; env {})\n", key.env)),
                Some(v) => out.push_str(&format!("{name:width$} = {v}  # {origin}\n")),
            }
        }
        out
    }

    /// The per-tenant caps of both queues: each queue's own setting when given (flag, env,
    /// file), else the deprecated `tenant_concurrency` when given, else the default.
    pub fn tenant_caps(&self) -> jobpulse_db::TenantCaps {
        let pick =
            |name: &str, own: TenantCap| match (self.sources.get(name), self.tenant_concurrency) {
                (Some(Source::Default), Some(both)) => both.0,
                _ => own.0,
            };
        jobpulse_db::TenantCaps {
            video: pick("tenant_video_concurrency", self.tenant_video_concurrency),
            ai: pick("tenant_job_concurrency", self.tenant_job_concurrency),
        }
    }

    /// The secret file `jobpulse up` generates in the data dir.
    pub fn secret_file(&self) -> PathBuf {
        self.data_dir.join("jwt-secret")
    }

    /// The token verifier from the configured secret or public key; with `generate`, a missing
    /// secret is created in the data dir (embedded mode) so later runs and `jobpulse token`
    /// agree.
    pub fn auth(&mut self, generate: bool) -> anyhow::Result<jobpulse_api::auth::AuthConfig> {
        use jobpulse_api::auth::AuthConfig;
        let mut cfg = if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the public key {}", path.display()))?;
            let alg = self.jwt_algorithm.as_deref().unwrap_or("RS256");
            AuthConfig::public_key(alg, &pem)?
        } else if let Some(secret) = self.jwt_secret.clone() {
            let cfg = AuthConfig::hs256(secret.as_bytes()).context("JOBPULSE_JWT_SECRET")?;
            self.hs256_secret = Some(secret);
            cfg
        } else {
            let file = self.secret_file();
            let secret = match std::fs::read_to_string(&file) {
                Ok(s) => s.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
                    generate_secret(&file)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "no JWT secret: set JOBPULSE_JWT_SECRET (or --jwt-secret), or point \
                     --data-dir at the directory `jobpulse up` created ({} not found)",
                    file.display()
                ),
                // It exists but cannot be read: say why (permission denied, a directory, …).
                Err(e) => bail!("cannot read the JWT secret {}: {e}", file.display()),
            };
            let cfg = AuthConfig::hs256(secret.as_bytes())
                .with_context(|| format!("the secret in {}", file.display()))?;
            self.hs256_secret = Some(secret);
            cfg
        };
        cfg.audience = self.jwt_audience.clone();
        cfg.issuer = self.jwt_issuer.clone();
        Ok(cfg)
    }

    /// The read cache of a serving process (`entries == 0` is off).
    pub fn read_cache(&self) -> jobpulse_store::ReadCacheConfig {
        jobpulse_store::ReadCacheConfig {
            entries: self.read_cache_entries,
            max_age: self.read_cache_max_age.0,
        }
    }

    /// The store settings of a process that writes (workers, admin commands): no read cache,
    /// so it does not follow every change of every tenant.
    pub fn store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            live_ttl: self.live_ttl.0,
            terminal_retention: self.terminal_retention.map(|d| d.0),
            legacy_read: self.legacy_read.0,
            ..jobpulse_store::StoreConfig::default()
        }
    }

    /// The store settings of a process that answers polls: with the read cache.
    pub fn serving_store_config(&self) -> jobpulse_store::StoreConfig {
        jobpulse_store::StoreConfig {
            read_cache: (self.read_cache_entries > 0).then_some(self.read_cache()),
            ..self.store_config()
        }
    }

    /// The API's public base URL: `--public-url`, else `http://<bind>:<port>` (an unspecified
    /// bind address becomes 127.0.0.1).
    pub fn public_base(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.0.clone();
        }
        let host = match self.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{}", self.port)
    }

    pub fn cors(&self) -> jobpulse_api::CorsOrigins {
        match &self.cors_origins.0 {
            Some(list) => jobpulse_api::CorsOrigins::List(list.clone()),
            None => jobpulse_api::CorsOrigins::Any,
        }
    }

    /// The S3 settings: the aws_* settings, the standard `AWS_*` variables for what they leave
    /// unset (and for the variants they do not name: AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION).
    pub fn s3_options(&self) -> anyhow::Result<jobpulse_media::storage::S3Options> {
        self.s3_options_with(|name| std::env::var(name).ok())
    }

    /// [`Settings::s3_options`] with the environment passed in (tests cannot safely change the
    /// process environment). Flag > environment > file, counting the variants as environment:
    /// a flag wins over AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_S3 wins over the file.
    fn s3_options_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<jobpulse_media::storage::S3Options> {
        let set = |name: &str| -> Option<String> {
            // `variants`: other variables that name the same setting.
            let from = |v: Option<String>, key: &str, variants: &[&str]| match self.sources.get(key)
            {
                Some(Source::Flag) => v,
                Some(Source::File) if variants.iter().all(|n| env(n).is_none()) => v,
                // From the environment (clap read it): looked up there as usual.
                _ => None,
            };
            match name {
                "AWS_ENDPOINT_URL_S3" => from(
                    self.aws_endpoint_url.clone(),
                    "aws_endpoint_url",
                    &["AWS_ENDPOINT_URL_S3"],
                ),
                "AWS_REGION" => from(
                    self.aws_region.clone(),
                    "aws_region",
                    &["AWS_DEFAULT_REGION"],
                ),
                "AWS_ACCESS_KEY_ID" => {
                    from(self.aws_access_key_id.clone(), "aws_access_key_id", &[])
                }
                "AWS_SECRET_ACCESS_KEY" => from(
                    self.aws_secret_access_key.clone(),
                    "aws_secret_access_key",
                    &[],
                ),
                "AWS_SESSION_TOKEN" => {
                    from(self.aws_session_token.clone(), "aws_session_token", &[])
                }
                "AWS_ALLOW_HTTP" => from(
                    Some(self.aws_allow_http.0.to_string()),
                    "aws_allow_http",
                    &[],
                ),
                "AWS_VIRTUAL_HOSTED_STYLE_REQUEST" => from(
                    self.aws_virtual_hosted_style_request
                        .map(|b| b.0.to_string()),
                    "aws_virtual_hosted_style_request",
                    &[],
                ),
                _ => None,
            }
        };
        jobpulse_media::storage::S3Options::from_lookup(|name| set(name).or_else(|| env(name)))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// ffmpeg/ffprobe from the settings, else from PATH, with the memory budget.
    pub fn toolchain(&self) -> Result<jobpulse_media::Toolchain, jobpulse_media::MediaError> {
        jobpulse_media::Toolchain::detect_from(
            self.ffmpeg.clone().map(Into::into),
            self.ffprobe.clone().map(Into::into),
            std::env::var_os("PATH"),
        )
        .map(|t| t.with_memory_limit(Some(self.ffmpeg_memory_limit)))
    }
}

/// Creates `dir` private (`0700`) if needed, or makes an existing one private (see
/// [`crate::private`]); a path that exists but is not a directory is an error that says so.
pub fn ensure_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    crate::private::dir(dir, what)
}

/// Parses a config file; an unknown key is an error naming it.
pub fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("config file {}", path.display()))
}

fn generate_secret(file: &Path) -> anyhow::Result<String> {
    use rand::RngExt;
    if let Some(dir) = file.parent() {
        ensure_dir(dir, "data dir")?;
    }
    let mut rng = rand::rng();
    let secret: String = (0..48)
        .map(|_| {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            char::from(CHARS[rng.random_range(0..CHARS.len())])
        })
        .collect();
    write_private(file, &secret)?;
    Ok(secret)
}

fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(f: impl FnOnce(&mut ServerArgs)) -> anyhow::Result<Settings> {
        let mut args = ServerArgs::default();
        f(&mut args);
        Settings::resolve(&args)
    }

    fn parse<T: FromStr<Err = String>>(s: &str) -> T {
        match s.parse() {
            Ok(v) => v,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn upload_settings_default_and_validate() -> anyhow::Result<()> {
        let s = resolve(|_| {})?;
        assert_eq!(s.public_base(), "http://127.0.0.1:8080");
        assert_eq!(s.upload_retention.0, DEFAULT_UPLOAD_RETENTION);
        assert!(s.storage_url.is_none() && s.cors_headers.0.is_empty());

        let s = resolve(|a| {
            a.bind = Some("0.0.0.0".parse().expect("ip"));
            a.port = Some(9000);
            a.cors_headers = Some(parse(" X-Request-Trace , x-other "));
        })?;
        assert_eq!(s.public_base(), "http://127.0.0.1:9000");
        assert_eq!(s.cors_headers.0, ["x-request-trace", "x-other"]);

        let s = resolve(|a| a.public_url = Some(parse("https://api.example.com/jp/")))?;
        assert_eq!(s.public_base(), "https://api.example.com/jp");

        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://u:p@x",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad} must be refused");
        }
        assert!("bad header".parse::<HeaderNames>().is_err());
        assert!(resolve(|a| a.upload_retention = Some(parse("1h"))).is_err());
        assert_eq!(
            resolve(|a| a.upload_retention = Some(parse("2d")))?
                .upload_retention
                .0,
            Duration::from_secs(2 * 86_400)
        );
        Ok(())
    }

    #[test]
    fn durations_parse_with_humantime() {
        assert_eq!(parse::<Dur>("1h30m").0, Duration::from_secs(5400));
        assert_eq!(parse::<Dur>("90min").0, Duration::from_secs(5400));
        assert_eq!(parse::<Dur>("45").0, Duration::from_secs(45));
        assert!("0s".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
        assert_eq!(parse::<Retention>("off").0, None);
        assert!(parse::<Bool>("1").0 && !parse::<Bool>("false").0);
        assert!("maybe".parse::<Bool>().is_err());
        let f = parse_file("legacy_read = true\naws_allow_http = \"1\"\n").expect("valid");
        assert_eq!(
            (f.legacy_read, f.aws_allow_http),
            (Some(Bool(true)), Some(Bool(true)))
        );
        assert_eq!(
            parse::<Retention>("7d").0,
            Some(Duration::from_secs(7 * 86_400))
        );
    }

    /// Flag > env > file > default, and each value's source is reported.
    #[test]
    fn precedence_and_sources() -> anyhow::Result<()> {
        let file =
            parse_file("port = 7000\nkey_prefix = \"f\"\nlive_ttl = \"2h\"\nlease = \"90min\"\n")?;
        let mut args = ServerArgs {
            port: Some(7100),
            key_prefix: Some("e".into()),
            ..ServerArgs::default()
        };
        args.from_env.insert("key_prefix");
        let c = Config::merge(&args, file);
        assert_eq!(c.port, 7100);
        assert_eq!(c.sources["port"], Source::Flag);
        assert_eq!(c.key_prefix, "e");
        assert_eq!(c.sources["key_prefix"], Source::Env);
        assert_eq!(c.live_ttl.0, Duration::from_secs(7200));
        assert_eq!(c.sources["live_ttl"], Source::File);
        assert_eq!(c.lease.map(|d| d.0), Some(Duration::from_secs(5400)));
        assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.sources["bind"], Source::Default);
        assert_eq!(c.sources["jwt_secret"], Source::Unset);
        Ok(())
    }

    #[test]
    fn one_redis_setting_at_a_time_and_cluster_passwords_redacted() -> anyhow::Result<()> {
        let both = resolve(|a| {
            a.redis_url = Some("redis://cache:6379".into());
            a.redis_cluster_nodes = Some("redis://a:7000,redis://b:7001".into());
        });
        let err = both.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not both"), "{err}");
        let err = resolve(|a| a.redis_cluster_nodes = Some(" , ".into()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("redis_cluster_nodes"), "{err}");
        let s = resolve(|a| {
            a.redis_cluster_nodes =
                Some("redis://:clusterpass@a:7000, redis://:clusterpass@b:7001".into());
        })?;
        assert_eq!(
            s.redis_target(),
            Some(jobpulse_store::RedisTarget::Cluster(vec![
                "redis://:clusterpass@a:7000".into(),
                "redis://:clusterpass@b:7001".into()
            ]))
        );
        let report = s.report();
        assert!(!report.contains("clusterpass"), "{report}");
        Ok(())
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        let err = match parse_file("port = 1\nconcurency = 4\n") {
            Ok(_) => panic!("an unknown key was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("concurency"), "{err}");
        let err = match parse_file("live_ttl = \"soon\"\n") {
            Ok(_) => panic!("a bad duration was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn the_report_redacts_secrets() -> anyhow::Result<()> {
        let s = resolve(|a| {
            a.jwt_secret = Some("s3cret-s3cret-s3cret-s3cret-s3cret".into());
            a.credentials_key = Some("k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y".into());
            a.aws_secret_access_key = Some("aws-s3cret".into());
            a.database_url = Some("postgres://jp:pgpass@db:5432/jp".into());
            a.redis_url = Some("redis://:redispass@cache:6379".into());
        })?;
        let report = s.report();
        for secret in ["s3cret", "k3y", "aws-s3cret", "pgpass", "redispass"] {
            assert!(!report.contains(secret), "{secret} shown:\n{report}");
        }
        assert!(report.contains("postgres://jp:***@db:5432/jp"), "{report}");
        // The report is itself a valid config file.
        parse_file(&report)?;
        Ok(())
    }

    /// `deploy/jobpulse.example.toml` names every key, and with every key uncommented it is a
    /// valid config file (so it cannot drift from the declaration).
    #[test]
    fn the_example_file_lists_every_key() -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jobpulse.example.toml");
        let text = std::fs::read_to_string(&path)?;
        let mut uncommented = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines() {
            let l = line.trim_start_matches("#").trim_start();
            if let Some((key, _)) = l.split_once(" = ")
                && !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                assert!(seen.insert(key.to_owned()), "{key} appears twice");
                uncommented.push_str(l);
                uncommented.push('\n');
            }
        }
        parse_file(&uncommented).context("the example file with every key uncommented")?;
        let missing: Vec<_> = KEYS
            .iter()
            .filter(|k| !seen.contains(k.name))
            .map(|k| k.name)
            .collect();
        assert!(missing.is_empty(), "not in {}: {missing:?}", path.display());
        Ok(())
    }

    /// S3 settings: flag > environment (with its variants) > file; secrets from the file reach
    /// the S3 options.
    #[test]
    fn s3_settings_follow_the_precedence() -> anyhow::Result<()> {
        let file = parse_file(
            "aws_endpoint_url = \"https://file.example\"\naws_region = \"file-region\"\n\
             aws_access_key_id = \"AKFILE\"\naws_secret_access_key = \"file-secret\"\n\
             aws_allow_http = true\n",
        )?;
        let s = Settings {
            config: Config::merge(&ServerArgs::default(), file.clone()),
            config_file: None,
            hs256_secret: None,
        };
        // Only the file.
        let o = s.s3_options_with(|_| None)?;
        assert_eq!(o.endpoint.as_deref(), Some("https://file.example"));
        assert_eq!(o.region.as_deref(), Some("file-region"));
        assert_eq!(o.secret_access_key.as_deref(), Some("file-secret"));
        assert!(o.allow_http);
        // The environment's variants win over the file.
        let env = |n: &str| match n {
            "AWS_ENDPOINT_URL_S3" => Some("https://env-s3.example".to_owned()),
            "AWS_DEFAULT_REGION" => Some("env-region".to_owned()),
            _ => None,
        };
        let o = s.s3_options_with(env)?;
        assert_eq!(o.endpoint.as_deref(), Some("https://env-s3.example"));
        assert_eq!(o.region.as_deref(), Some("env-region"));
        assert_eq!(o.access_key_id.as_deref(), Some("AKFILE"));
        // A flag wins over everything.
        let flags = ServerArgs {
            aws_endpoint_url: Some("https://flag.example".into()),
            ..ServerArgs::default()
        };
        let s = Settings {
            config: Config::merge(&flags, file),
            config_file: None,
            hs256_secret: None,
        };
        let o = s.s3_options_with(env)?;
        assert_eq!(o.endpoint.as_deref(), Some("https://flag.example"));
        Ok(())
    }

    /// Per-tenant caps are on by default (issue 15 finding 9); each queue's own setting wins
    /// over the deprecated `tenant_concurrency`, which wins over the defaults; `off` lifts one.
    #[test]
    fn tenant_caps_are_on_by_default() -> anyhow::Result<()> {
        let caps = |s: Settings| (s.tenant_caps().video, s.tenant_caps().ai);
        assert_eq!(caps(resolve(|_| {})?), (Some(2), Some(4)));
        assert_eq!(
            caps(resolve(|a| a.tenant_concurrency = Some(parse("3")))?),
            (Some(3), Some(3))
        );
        assert_eq!(
            caps(resolve(|a| {
                a.tenant_concurrency = Some(parse("3"));
                a.tenant_video_concurrency = Some(parse("off"));
            })?),
            (None, Some(3))
        );
        let file = parse_file("tenant_job_concurrency = 6\ntenant_video_concurrency = \"1\"\n")?;
        let s = Settings {
            config: Config::merge(&ServerArgs::default(), file),
            config_file: None,
            hs256_secret: None,
        };
        assert_eq!(caps(s), (Some(1), Some(6)));
        for bad in ["0", "-1", "many"] {
            assert!(bad.parse::<TenantCap>().is_err(), "{bad} must be refused");
        }
        assert!(parse_file("tenant_job_concurrency = 0\n").is_err());
        Ok(())
    }

    /// `job_input_retention`: 0 (the default: at once), a duration, or off.
    #[test]
    fn job_input_retention_may_be_zero() -> anyhow::Result<()> {
        assert_eq!(resolve(|_| {})?.job_input_retention.0, Some(Duration::ZERO));
        assert_eq!(parse::<KeepFor>("0").0, Some(Duration::ZERO));
        assert_eq!(parse::<KeepFor>("1h").0, Some(Duration::from_secs(3600)));
        assert_eq!(parse::<KeepFor>("off").0, None);
        for v in ["0", "1h", "off"] {
            let shown = parse::<KeepFor>(v).show();
            let back = parse_file(&format!("job_input_retention = {shown}\n"))?;
            assert_eq!(
                back.job_input_retention,
                Some(parse::<KeepFor>(v)),
                "{shown}"
            );
        }
        Ok(())
    }
}
