//! One ffmpeg run that turns a source into an HLS VOD ladder, with live progress and prompt
//! cancellation.
//!
//! # The command line ([`hls_args`])
//!
//! For a 1280x720 source with audio (ladder 720p + 480p) it is, line by line:
//!
//! ```text
//! ffmpeg -hide_banner -nostdin -y -loglevel warning -progress pipe:1 -nostats
//!   -format_whitelist <probe::INPUT_FORMATS> -protocol_whitelist file -i /abs/source.mp4
//!   -filter_complex [0:v:0]split=2[s0][s1];
//!                   [s0]scale=w=1280:h=720,setsar=1,format=yuv420p[v0];
//!                   [s1]scale=w=854:h=480,setsar=1,format=yuv420p[v1]
//!   -map [v0] -map 0:a:0 -map [v1] -map 0:a:0
//!   -c:v libx264 -preset veryfast -profile:v high -sc_threshold 0
//!   -force_key_frames expr:gte(t,n_forced*4)
//!   -b:v:0 2700k -maxrate:v:0 2970k -bufsize:v:0 5400k   (and :1 for the 480p stream)
//!   -c:a aac -b:a 128k -ac 2
//!   -map_metadata -1 -map_chapters -1 -max_muxing_queue_size 1024
//!   -f hls -hls_time 4 -hls_playlist_type vod -hls_flags independent_segments
//!   -hls_segment_type mpegts -hls_segment_filename /abs/out/%v/seg_%05d.ts
//!   -master_pl_name master.m3u8 -var_stream_map "v:0,a:0,name:720p v:1,a:1,name:480p"
//!   /abs/out/%v/index.m3u8
//! ```
//!
//! Why each part:
//! - one process decodes once and encodes every rendition (`split` + `scale`), instead of one
//!   decode per rendition; ffmpeg's autorotation runs before the filter graph, so the sizes are
//!   the display sizes the ladder computed from [`crate::ProbeInfo`];
//! - `setsar=1,format=yuv420p`: square pixels and 8-bit 4:2:0 so every browser can play it, even
//!   from 10-bit or 4:4:4 sources;
//! - keyframes forced every segment length on all renditions (and no extra scene-cut keyframes)
//!   so segments are ~4 s, start with a keyframe and line up across renditions for switching;
//! - `-b:v/-maxrate/-bufsize`: bounded bit rates, which also become each variant's `BANDWIDTH`
//!   in the master playlist, next to `CODECS` and `RESOLUTION`;
//! - audio is mapped and encoded (AAC stereo) only when the source has audio; without it ffmpeg
//!   would fail on `-map 0:a:0`, and with `0:a:0?` the `var_stream_map` would not match;
//! - `-map_metadata -1`: phone videos carry GPS tags; nothing of the source's metadata is copied;
//! - the whitelist and absolute paths: see [`crate::probe`] (untrusted input).
//!
//! Output layout in `out_dir`: `master.m3u8`, and per rendition `<name>/index.m3u8` plus
//! `<name>/seg_00000.ts`, … (`<name>` is the rendition name, e.g. `720p`).
//!
//! # Progress
//!
//! Delivered through a `tokio::sync::watch::Sender<TranscodeProgress>` the caller owns: the
//! transcode never waits for the consumer, and a consumer that samples slowly (e.g. publishing
//! to the read model once a second) always sees the latest value. Updates arrive about twice a
//! second; the fraction is monotonic (see [`crate::progress`]).
//!
//! # Cancellation and failure
//!
//! When the `CancellationToken` fires, ffmpeg's whole process group gets SIGKILL and is reaped
//! before [`Toolchain::transcode_hls`] returns [`MediaError::Cancelled`], so the output directory
//! can be removed right away. Dropping the future kills the group too. A non-zero exit becomes
//! [`MediaError::Failed`] with the last 20 lines of stderr, or [`MediaError::OutOfMemory`] when
//! ffmpeg ran under the toolchain's memory budget and reported a failed allocation.
//!
//! # Bounds
//!
//! - Time: the run gets [`TranscodeOptions::time_budget`] of wall-clock time (a multiple of the
//!   probed duration, with a floor and a hard cap); past it the process group is killed and the
//!   call returns [`MediaError::TimedOut`]. A source whose header under-states its length cannot
//!   keep a worker for longer than that.
//! - Memory: [`Toolchain::with_memory_limit`] (`RLIMIT_AS` on the child).
//! - Threads: [`TranscodeOptions::threads`] goes to the decoder, the filter graph and x264.
//!
//! The submodules: `options` (the request: [`HlsJob`], [`TranscodeOptions`], [`Preset`], and
//! the [`TranscodeOutcome`]), `args` (the command line) and `run` (the ffmpeg run itself).

mod args;
mod options;
mod run;
#[cfg(test)]
mod tests;

pub use self::args::hls_args;
pub use self::options::{
    BadPreset, HlsJob, MIN_TIME_BUDGET, Preset, TranscodeOptions, TranscodeOutcome,
};
#[cfg(doc)]
use crate::{MediaError, Toolchain};

/// File name of the master playlist inside the output directory.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// File name of each rendition's media playlist inside `<out_dir>/<rendition name>/`.
pub const VARIANT_PLAYLIST: &str = "index.m3u8";
