//! Integration tests of jobpulse-sync against real databases: the relay and repair, each scenario
//! on PostgreSQL (`JOBPULSE_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and on SQLite, with the same body. The read model is the real in-process `MemoryStore`.
//!
//! The fixtures are jobpulse-db's own (one file, shared: a fresh database per test, the store fed
//! by the relay, a fault injector around the store).

#[path = "../../../jobpulse-db/tests/db/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod outbox;
mod repair;
mod unreplicated;
