//! Reliability under faults (issue 9): the real `jobpulse` binary, run as child processes
//! against a PostgreSQL database and a redis-server of each test's own, attacked from outside —
//! killed and paused processes, a restarted or unreachable Redis, a "restarted" PostgreSQL (a
//! proxy that resets and blackholes connections), hostile input, forged tokens, cross-tenant
//! probes, slow clients and a Redis out of memory.
//!
//! The suite lives in the CLI crate because only there cargo builds the binary for the tests
//! and tells them where it is (`CARGO_BIN_EXE_jobpulse`). Each scenario is one module; its pass
//! criterion is asserted and its figures are printed as `FIGURE …` lines (see
//! docs/reliability.md). `JOBPULSE_RELIABILITY_FULL=1` runs the full counts.
//!
//! # Layout
//!
//! - `harness`: processes, own redis-servers, the fault proxy, an API client, figures;
//! - `s01_zombies` … `s10_memory`: the ten scenarios of issue 9;
//! - `s11_pg_real_restart` …: issue 15's (hostile input and limits, round 2);
//! - `s14_redis_failover`: issue 14's (a Redis Cluster master killed).
//! - `s15_liveness`: issue 18's (a paused worker shows stalled; a retried video holds its bar).

mod harness;

mod s01_zombies;
mod s02_redis_restart;
mod s03_redis_blackhole;
mod s04_pg_restart;
mod s05_worker_crash;
mod s06_hostile;
mod s07_tokens;
mod s08_cross_tenant;
mod s09_slow_clients;
mod s10_memory;
mod s11_pg_real_restart;
mod s12_ingest_owner;
mod s13_import_memory;
mod s14_redis_failover;
mod s15_liveness;
