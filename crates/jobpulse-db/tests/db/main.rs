//! Integration tests of jobpulse-db against real databases: every scenario runs on PostgreSQL
//! (a fresh database per test, `JOBPULSE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and on SQLite (a temp-dir file per test), with
//! the same body. The read model is the real in-process `MemoryStore`, fed by the real relay
//! (`jobpulse-sync`; its own tests cover the relay and repair).

// Shared with jobpulse-sync's tests (`tests/sync/main.rs`); each uses a part of it.
#[allow(dead_code)]
mod helpers;

mod claim_race;
mod fairness;
mod jobs;
mod migrations;
mod notify;
mod queue;
mod students;
mod tenants;
mod videos;
mod webhooks;
