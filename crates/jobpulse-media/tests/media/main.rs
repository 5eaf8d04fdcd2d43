//! Integration tests of jobpulse-media against the real ffmpeg/ffprobe, a real local object
//! store and a real S3-compatible server (`scripts/s3-test-server`, started by `scripts/test`;
//! its URL in `JOBPULSE_TEST_S3_ENDPOINT`). A missing ffmpeg or S3 server fails these tests, it
//! does not skip them. Clips are generated per test (2–5 s, small sizes) and every S3 test has
//! its own bucket, so tests run in parallel.

mod helpers;

mod check;
mod direct_upload;
mod probe;
mod storage;
mod thumbnail;
mod toolchain;
mod transcode;
mod validate;
