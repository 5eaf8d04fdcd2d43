//! jobpulse's source of truth: the database (PostgreSQL or SQLite) and the job queue that lives
//! in it. It knows nothing of the read model: projecting into it is `jobpulse-sync`'s work.
//!
//! The write path: every state change is one transaction that updates the row, checks the
//! domain's transition rule, stores the fence of the change in the row, and inserts an outbox
//! row holding the exact [`jobpulse_domain::Write`]. The relay (`jobpulse_sync::Relay`) applies
//! outbox rows to the read model and deletes them ([`OutboxBatch`]); repair
//! (`jobpulse_sync::repair`) can rebuild the read model from the rows at any time
//! ([`mod@projection`]), because each row carries the fence of its last change.
//! See `docs/architecture.md` for the whole picture and the failure cases.
//!
//! Times are BIGINT unix milliseconds in both dialects (one type, one meaning, shared SQL).
//! Queries are checked at run time (`sqlx::query` + `bind`): a fresh clone builds with no
//! database; every query is exercised by the integration tests on both backends.
//!
//! # Layout
//!
//! - [`db`]: [`Db`] — connect (`postgres://…` / `sqlite:…`), migrate, pools.
//! - `migrate`: the embedded migrations (`migrations/postgres`, `migrations/sqlite`).
//! - [`model`]: rows as domain types and the row → read-model state mapping.
//! - [`tenants`], [`videos`], [`ai_jobs`], [`students`]: the operations the API and the
//!   workers call.
//! - [`retention`], [`sealed`]: initial passwords sealed at rest, and purged after a retention.
//! - [`queue`]: claim / heartbeat / complete / fail / cancel / release / reap, wake-ups — each
//!   written once over the queue's task-table seam (video jobs, AI jobs).
//! - [`outbox`]: the outbox rows, taken in batches by the relay.
//! - [`webhooks`]: webhook endpoints, and the deliveries each state change enqueues in its own
//!   transaction.
//! - [`mod@projection`]: each row's current write, and the pages a full repair reads.
//! - `conn`, `notify`: running SQL on either backend; LISTEN/NOTIFY and in-process wake-ups.

mod conn;
mod error;
mod migrate;
mod notify;

pub mod ai_jobs;
pub mod db;

pub mod model;
pub mod outbox;
pub mod projection;
pub mod queue;
pub mod retention;
pub mod sealed;
pub mod stats;
pub mod students;
pub mod tenants;
pub mod uploads;
pub mod videos;
pub mod webhooks;

pub use ai_jobs::{AiJobFilter, NewAiJob, Submitted};
pub use conn::now_ms;
pub use db::{Db, DbKind, DbOptions};
pub use error::DbError;
pub use model::{AiJob, Lecture, Session, Tenant, TenantSeed, Video, VideoJob, VideoJobState};
pub use outbox::{Committed, OutboxBatch, OutboxEntry, PendingRow};
pub use queue::{
    AiOutcome, Backoff, CancelOutcome, Caps, Claim, ClaimedTask, FailOutcome, Heartbeat, Queue,
    QueueConfig, ReapReport, ReleaseOutcome, TenantCaps,
};
pub use sealed::{CredentialSeal, SealError};
pub use stats::{OpsStats, TENANTS_LISTED, TenantLoad};
pub use students::{EnrollTarget, ImportOutcome, ImportRow, NewCredentials, Student, StudentInput};
pub use tenants::{DEMO_TENANT_CODE, DEMO_TENANT_ID, LectureSessions};
pub use uploads::{UploadCompletion, VideoUpload};
pub use videos::VideoFilter;
pub use webhooks::{CreatedEndpoint, WebhookEndpoint, WebhookEvent};
