//! jobpulse-media: the building blocks the video worker and the API use to store media and to
//! drive ffmpeg. No database and no read model here: callers decide what a step means for a job.
//!
//! # Layout
//!
//! - [`toolchain`]: [`Toolchain`], where ffmpeg/ffprobe are (`JOBPULSE_FFMPEG` /
//!   `JOBPULSE_FFPROBE` or `PATH`), `detect`, `version`, `verify`.
//! - [`probe`]: [`Toolchain::probe`] → [`ProbeInfo`] (display size honouring rotation, duration,
//!   audio, codecs), with errors a user can read.
//! - [`ladder`](mod@ladder): which HLS renditions and bit rates for a source size. Pure.
//! - [`transcode`]: the one ffmpeg invocation producing HLS VOD ([`Toolchain::transcode_hls`]),
//!   progress over a `watch` channel, cancellation that kills the whole process group.
//! - [`progress`]: the `-progress pipe:1` parser and the monotonic fraction tracker.
//! - [`thumbnail`]: [`Toolchain::thumbnail`], one JPEG frame, max 640 wide.
//! - [`hls`]: [`validate_hls`], checking an output directory before it is published.
//! - [`keys`]: storage key naming from validated domain ids, and `Content-Type` by extension.
//! - [`storage`]: [`MediaStorage`] over `object_store` (local directory by default), streaming
//!   uploads with a byte limit, downloads, range reads, prefix deletion.
//! - [`error`]: [`MediaError`] (ffmpeg side); storage has its own [`StorageError`].
//! - `testing` (feature `testing`): clip generators for tests.
//!
//! Every child process runs without a shell, in its own process group, with bounded output
//! capture (see `process`).

pub mod error;
pub mod hls;
pub mod keys;
pub mod ladder;
pub mod probe;
mod process;
pub mod progress;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod thumbnail;
pub mod toolchain;
pub mod transcode;

pub use error::MediaError;
pub use hls::{HlsSummary, VariantSummary, validate_hls};
pub use keys::{
    KeyError, StorageKey, StoragePrefix, content_type_for, hls_master_key, hls_prefix,
    job_input_key, job_output_key, job_prefix, raw_key, raw_prefix, thumbnail_key,
};
pub use ladder::{Rendition, ladder};
pub use probe::ProbeInfo;
pub use progress::{ProgressParser, ProgressTracker, TranscodeProgress};
pub use storage::{MediaStorage, ObjectInfo, StorageError, StoredObject};
pub use thumbnail::thumbnail_time;
pub use toolchain::Toolchain;
pub use transcode::{HlsJob, Preset, TranscodeOptions, TranscodeOutcome, hls_args};
