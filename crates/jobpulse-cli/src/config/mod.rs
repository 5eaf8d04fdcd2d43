//! Configuration, declared once.
//!
//! Every setting is one line of the `settings!` table (in `table`): its file key (the field name),
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
//!
//! The submodules: [`values`] (the value types and how each is parsed and shown), `declare`
//! (the machinery of the declaration), `table` (the declaration itself and the defaults),
//! [`Settings`] (`settings`: the resolved settings and what is derived from them), `validate`,
//! `s3` (the S3 options) and `file` (the config file, the data dir, the generated secret).

#[macro_use]
mod declare;
mod file;
mod s3;
mod settings;
mod table;
mod validate;
pub mod values;
mod webhook_values;

pub use declare::{Key, Redact, Source};
pub use file::{ensure_dir, parse_file};
pub use settings::Settings;
pub use table::{
    Config, DEFAULT_FFMPEG_MEMORY_LIMIT, DEFAULT_UPLOAD_RETENTION, FileConfig, KEYS, ServerArgs,
    default_ffmpeg_threads,
};
pub use values::{Bool, Dur, HeaderNames, KeepFor, Origins, PublicUrl, Retention, Show, TenantCap};

#[cfg(test)]
mod tests;
