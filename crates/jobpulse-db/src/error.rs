//! The database layer's error type.
//!
//! Callers match on the variants that carry meaning for them (`NotFound` → 404,
//! `IllegalTransition` / `Conflict` → 409, `LeaseLost` → a worker stops) and log the rest.

use jobpulse_domain::ProgressError;

/// Everything the database layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `postgres://…` nor `sqlite:…`.
    #[error("unsupported database url (expected postgres://… or sqlite://…)")]
    BadUrl,
    /// The message is whole (the database's own words, its SQLSTATE); the sqlx error is not
    /// also exposed as `source()`, so an error chain does not print it a second time.
    #[error("database error: {}", describe(.0))]
    Sqlx(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The row does not exist for this tenant (or is soft-deleted).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The domain's life cycle forbids this change; nothing was written.
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition {
        from: &'static str,
        to: &'static str,
    },
    /// The caller's claim is no longer the live lease (reclaimed after expiry, reaped, or ended);
    /// nothing was written. A worker that sees this must stop working on the task.
    #[error("the lease was lost: the job was reclaimed, reaped or ended")]
    LeaseLost,
    /// The task was cancelled or deleted while the worker ran; its result was discarded.
    #[error("the task was cancelled or deleted while it ran")]
    Cancelled,
    /// The request contradicts existing data (e.g. an idempotency key reused for another type).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A unique value (named) is already taken; the caller may retry with another value.
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    /// The caller passed something the database layer refuses (message safe to show).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A stored value could not be decoded into its domain type.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Progress(#[from] ProgressError),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sqlx(e)
    }
}

/// A sqlx error in an operator's words: the database's message and SQLSTATE, without sqlx's
/// "error returned from database:" and the server's C source line ("at line 948").
fn describe(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => match d.code() {
            Some(code) => format!("{} (SQLSTATE {code})", d.message()),
            None => d.message().to_owned(),
        },
        None => e.to_string(),
    }
}

impl DbError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// True for errors worth retrying later (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sqlx(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| {
                        // PostgreSQL serialization/deadlock/admin shutdown; SQLite BUSY/LOCKED.
                        matches!(&*c, "40001" | "40P01" | "57P01" | "57P03" | "5" | "6")
                    })
            }
            _ => false,
        }
    }
}
