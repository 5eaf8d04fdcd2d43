//! The value types of the webhook settings (`webhook_allow_hosts`, `webhook_retry_schedule`):
//! parsed from the same text as a flag, the environment or the file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Dur, Show, toml_str};

/// `Deserialize` through `FromStr`, shown as a TOML string (as `values`' own types).
macro_rules! from_text {
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

/// Comma-separated networks (`127.0.0.0/8`, `10.1.2.3`) and host names that webhook endpoints
/// may use despite the SSRF rule (see `jobpulse_webhooks::guard`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookAllow(pub Vec<String>);

impl WebhookAllow {
    /// The parsed list (checked when the setting was read).
    pub fn list(&self) -> jobpulse_webhooks::AllowList {
        jobpulse_webhooks::AllowList::parse(&self.0).unwrap_or_default()
    }
}

impl FromStr for WebhookAllow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let entries: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        jobpulse_webhooks::AllowList::parse(&entries)?;
        Ok(WebhookAllow(entries))
    }
}

impl fmt::Display for WebhookAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}
from_text!(WebhookAllow);

/// Comma-separated durations, e.g. `5s,5m,30m,2h,5h,10h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurList(pub Vec<Duration>);

impl FromStr for DurList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let list = s
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse::<Dur>().map(|d| d.0))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(format!("{s:?}: give at least one duration"));
        }
        Ok(DurList(list))
    }
}

impl fmt::Display for DurList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        f.write_str(&parts.join(","))
    }
}
from_text!(DurList);
