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
//! - [`limits`]: [`MediaLimits`], the largest video accepted (duration, size, frame rate),
//!   checked against a probe with human messages. Pure.
//! - [`transcode`]: the one ffmpeg invocation producing HLS VOD ([`Toolchain::transcode_hls`]),
//!   progress over a `watch` channel, cancellation that kills the whole process group.
//! - [`progress`]: the `-progress pipe:1` parser and the monotonic fraction tracker.
//! - [`thumbnail`]: [`Toolchain::thumbnail`], one JPEG frame, max 640 wide.
//! - [`hls`]: [`validate_hls`], checking an output directory before it is published.
//! - [`keys`]: storage key naming from validated domain ids, and `Content-Type` by extension.
//! - [`storage`]: [`MediaStorage`] over `object_store`, opened from a storage URL
//!   (`file:///path` or `s3://bucket[/prefix]` with the standard `AWS_*` variables): streaming
//!   uploads with a byte limit, downloads, range reads, prefix deletion; direct uploads from the
//!   browser (presigned PUT and multipart part URLs on S3, the same multipart contract staged on
//!   file storage), upload verification, stale-upload cleanup, and the storage check (access and
//!   the bucket's CORS rule). See docs/storage.md.
//! - [`error`]: [`MediaError`] (ffmpeg side); storage has its own [`StorageError`].
//! - `testing` (feature `testing`): clip generators for tests.
//!
//! Every child process runs without a shell, in its own process group, with bounded output
//! capture and, when configured, an address-space budget (see `process` and
//! [`Toolchain::with_memory_limit`]).

pub mod error;
pub mod hls;
pub mod keys;
pub mod ladder;
pub mod limits;
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
    job_output_key, job_prefix, storage_probe_key, thumbnail_key,
};
#[cfg(feature = "testing")]
pub use keys::{raw_key, raw_prefix};
pub use ladder::{Rendition, ladder};
pub use limits::{LimitViolation, MediaLimits};
pub use probe::ProbeInfo;
pub use progress::{ProgressParser, ProgressTracker, TranscodeProgress};
pub use storage::{
    CompletedPart, CorsCheck, MAX_PRESIGN_EXPIRY, MIN_PART_SIZE, MediaStorage, ObjectInfo,
    PendingUpload, S3Options, StorageCheck, StorageError, StorageUrl, StoredObject, UploadedPart,
    Written,
};
pub use thumbnail::thumbnail_time;
pub use toolchain::Toolchain;
pub use transcode::{HlsJob, Preset, TranscodeOptions, TranscodeOutcome, hls_args};
