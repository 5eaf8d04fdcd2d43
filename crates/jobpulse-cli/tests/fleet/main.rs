//! A fleet end to end (issue 14): `scripts/fleet` starts nginx in front of 3 `jobpulse serve`
//! replicas, 2 video workers and 2 AI workers, each with a data directory of its own, sharing
//! PostgreSQL, Redis (the test Redis Cluster when there is one and the binary supports it) and
//! the media storage (a bucket on the S3 test server, or a shared directory). Everything goes
//! through the load balancer.
//!
//! One fleet for the binary, one test in phases:
//!
//! 1. an upload → READY and an excel import → DONE; the polls land on every replica (each
//!    replica's `jobpulse_progress_requests_total`), the HLS URL one replica signed plays through
//!    the others;
//! 2. an SSE client watching the tenant (`all=true`: changes only, no snapshot on connect) loses
//!    its connection — the replica serving it is killed — while a video finishes; it reconnects
//!    through the balancer with `Last-Event-ID`, lands on another replica and gets the READY it
//!    missed;
//! 3. the video worker transcoding a video is killed (SIGKILL, with its ffmpeg: the host went
//!    away) mid-transcode; the other video worker takes the job over after the lease (5 s) and
//!    finishes it;
//! 4. the AI worker running a 1 500-student import is killed while enrolling; the other AI worker
//!    finishes it, every student enrolled once.
//!
//! Measured figures are printed as `FIGURE …` lines (`--no-capture`).

// The reliability suite's harness: processes, the API client, metrics parsing.
#[path = "../reliability/harness/mod.rs"]
mod harness;

mod fleet;
mod phases;
mod sse;
