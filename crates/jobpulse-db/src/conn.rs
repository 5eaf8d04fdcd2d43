//! Running one piece of SQL on either backend.
//!
//! sqlx's query functions are generic over the database, but a function generic over *both*
//! PostgreSQL and SQLite needs a wall of trait bounds. Instead, a leaf query is written once
//! inside [`dual!`], which expands it for each backend with concrete types; everything above the
//! leaves is ordinary Rust working with [`Conn`] and [`Tx`]. SQL is shared where the dialects
//! agree (both accept `$1` placeholders, `RETURNING`, `ON CONFLICT`, partial indexes) and picked
//! per [`Dialect`] where they do not (`FOR UPDATE SKIP LOCKED`, advisory locks).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Postgres, Row as _, Sqlite, Transaction};

use crate::DbError;

/// Which SQL dialect a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub(crate) fn pick(self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self {
            Dialect::Postgres => postgres,
            Dialect::Sqlite => sqlite,
        }
    }
}

/// A borrowed connection (plain or inside a transaction) of either backend.
#[derive(Debug)]
pub(crate) enum Conn<'a> {
    Pg(&'a mut PgConnection),
    Lite(&'a mut SqliteConnection),
}

impl Conn<'_> {
    /// A shorter-lived copy, so one connection serves several queries in a row.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Pg(c) => Conn::Pg(c),
            Conn::Lite(c) => Conn::Lite(c),
        }
    }
}

/// Expands `$body` once per backend with `$c` bound to the concrete connection and `$d` to its
/// [`Dialect`]. The body is ordinary async code; `?` returns from the enclosing function.
macro_rules! dual {
    ($conn:expr, |$c:ident, $d:ident| $body:expr) => {
        match $conn {
            $crate::conn::Conn::Pg($c) => {
                #[allow(unused_variables)]
                let $d = $crate::conn::Dialect::Postgres;
                $body
            }
            $crate::conn::Conn::Lite($c) => {
                #[allow(unused_variables)]
                let $d = $crate::conn::Dialect::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use dual;

/// An open write transaction. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Pg(t) => Conn::Pg(t),
            Tx::Lite(t) => Conn::Lite(t),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Pg(_) => Dialect::Postgres,
            Tx::Lite(_) => Dialect::Sqlite,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Pg(t) => t.commit().await?,
            Tx::Lite(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// A pooled connection for reads (autocommit).
#[derive(Debug)]
pub(crate) enum Pooled {
    Pg(PoolConnection<Postgres>),
    Lite(PoolConnection<Sqlite>),
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Pg(c) => Conn::Pg(c),
            Pooled::Lite(c) => Conn::Lite(c),
        }
    }
}

/// Typed column access that reads the same on both backends.
pub(crate) trait RowExt {
    fn int(&self, col: &str) -> Result<i64, DbError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, DbError>;
    fn text(&self, col: &str) -> Result<String, DbError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, DbError>;
    fn flag(&self, col: &str) -> Result<bool, DbError>;
}

impl RowExt for PgRow {
    fn int(&self, col: &str) -> Result<i64, DbError> {
        Ok(self.try_get::<i64, _>(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, DbError> {
        Ok(self.try_get::<Option<i64>, _>(col)?)
    }
    fn text(&self, col: &str) -> Result<String, DbError> {
        Ok(self.try_get::<String, _>(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, DbError> {
        Ok(self.try_get::<Option<String>, _>(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, DbError> {
        Ok(self.try_get::<bool, _>(col)?)
    }
}

impl RowExt for SqliteRow {
    fn int(&self, col: &str) -> Result<i64, DbError> {
        Ok(self.try_get::<i64, _>(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, DbError> {
        Ok(self.try_get::<Option<i64>, _>(col)?)
    }
    fn text(&self, col: &str) -> Result<String, DbError> {
        Ok(self.try_get::<String, _>(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, DbError> {
        Ok(self.try_get::<Option<String>, _>(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, DbError> {
        // Booleans are INTEGER 0/1 in the SQLite schema.
        Ok(self.try_get::<i64, _>(col)? != 0)
    }
}

/// A type read from one row ([`RowExt`]).
pub(crate) trait FromRow: Sized {
    fn from_row(r: &impl RowExt) -> Result<Self, DbError>;
}

/// A row's key, bound as one parameter on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowId<'a> {
    Int(i64),
    Text(&'a str),
}

/// The row `sql` (PostgreSQL, SQLite; `$1` the key) returns for `id`, if any: the one read of
/// a row by its key, e.g. locking it `FOR NO KEY UPDATE` on PostgreSQL.
pub(crate) async fn fetch_by_id<T: FromRow>(
    c: Conn<'_>,
    sql: (&'static str, &'static str),
    id: RowId<'_>,
) -> Result<Option<T>, DbError> {
    dual!(c, |c, d| {
        let q = sqlx::query(d.pick(sql.0, sql.1));
        let q = match id {
            RowId::Int(i) => q.bind(i),
            RowId::Text(t) => q.bind(t),
        };
        q.fetch_optional(&mut *c)
            .await?
            .map(|r| T::from_row(&r))
            .transpose()
    })
}

/// The application clock in unix milliseconds: every time column is written from it.
///
/// Lease expiry compares times written by different processes, so worker clocks must agree to
/// well within a lease (NTP does). Skew only changes *when* a lease counts as expired; it can
/// never let two workers commit for the same attempt (see `queue`).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Converts a stored BIGINT that the schema keeps non-negative and small into `u32`.
/// A list call's page size as bound: 1 to 200 rows, whatever was asked.
pub(crate) fn page_limit(requested: u32) -> i64 {
    i64::from(requested.clamp(1, 200))
}

pub(crate) fn to_u32(v: i64, what: &'static str) -> Result<u32, DbError> {
    u32::try_from(v).map_err(|_| DbError::corrupt(format!("{what} out of range: {v}")))
}

pub(crate) fn to_u64(v: i64, what: &'static str) -> Result<u64, DbError> {
    u64::try_from(v).map_err(|_| DbError::corrupt(format!("{what} out of range: {v}")))
}
