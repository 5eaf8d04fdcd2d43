//! Integration tests of jobpulse-db against real databases: every scenario runs on PostgreSQL
//! (a fresh database per test, `JOBPULSE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and on SQLite (a temp-dir file per test), with
//! the same body. The read model is the real in-process `MemoryStore`, fed by the real relay.

mod helpers;

mod fairness;
mod jobs;
mod migrations;
mod notify;
mod outbox;
mod queue;
mod repair;
mod students;
mod tenants;
mod videos;
