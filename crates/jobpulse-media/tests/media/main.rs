//! Integration tests of jobpulse-media against the real ffmpeg/ffprobe and a real local
//! object store. ffmpeg must be installed: a missing ffmpeg fails these tests, it does not skip
//! them. Clips are generated per test (2–5 s, small sizes) so tests run in parallel.

mod helpers;
mod probe;
mod storage;
mod thumbnail;
mod toolchain;
mod transcode;
mod validate;
