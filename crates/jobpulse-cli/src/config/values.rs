//! The value types of the settings — how each parses (flag, environment, file: the same text)
//! and how `jobpulse config` shows it ([`Show`]).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::logging::LogFormat;

/// A value as `jobpulse config` prints it: a TOML literal.
pub trait Show {
    fn show(&self) -> String;
    /// [`Show::show`] with a URL's password hidden (only strings hold URLs).
    fn show_without_password(&self) -> String {
        self.show()
    }
}

pub(super) fn toml_str(s: &str) -> String {
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

pub use super::webhook_values::{DurList, WebhookAllow};
