//! The machinery of the one declaration: where a value came from ([`Source`]), how it is shown
//! ([`Redact`]), a declared key ([`Key`]) and the `settings!` macro that turns the table of
//! `table` into the flags, the file's keys, the merged [`super::Config`] and its report.

use super::values::{
    Bool, Dur, DurList, HeaderNames, KeepFor, Origins, Retention, Show, TenantCap, WebhookAllow,
    toml_str,
};
use crate::logging::LogFormat;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

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
pub(super) trait ShowMerged {
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
    HeaderNames,
    WebhookAllow,
    DurList
);

/// The one declaration of every setting; see the [`config`](super) module docs.
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
