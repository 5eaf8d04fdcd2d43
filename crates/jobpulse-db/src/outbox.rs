//! The outbox table: read-model writes committed together with the state change they describe.
//!
//! Every state change inserts one row holding the exact [`Write`] (as JSON) in the same
//! transaction as the change itself; the relay (`jobpulse_sync::Relay`) applies rows to the read
//! model and deletes them through [`OutboxBatch`] and [`Db::outbox_rows`] / [`Db::delete_outbox`]. Rows are applied in id order, but the order does not matter for correctness:
//! each write is fenced, so an older write arriving late is answered `Stale`.

use jobpulse_domain::Write;

use crate::conn::{Conn, Dialect, RowExt, Tx, dual, now_ms};
use crate::webhooks::enqueue::{Event, enqueue};
use crate::{Db, DbError};

/// One outbox row: its id and the write it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub write: Write,
}

/// The result of a state-changing call, with the outbox rows it committed.
///
/// The relay publishes `outbox` on its own. A caller that must make the change visible before it
/// answers (the API returning a new id: a client's first poll must not be UNKNOWN) hands them to
/// `jobpulse_sync::Relay::publish_now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    pub value: T,
    pub outbox: Vec<OutboxEntry>,
}

impl<T> Committed<T> {
    pub(crate) fn new(value: T, outbox: Vec<OutboxEntry>) -> Self {
        Self { value, outbox }
    }

    pub(crate) fn one(value: T, entry: OutboxEntry) -> Self {
        Self {
            value,
            outbox: vec![entry],
        }
    }
}

/// Inserts `write` into the outbox (inside the caller's transaction).
/// A row whose every state change is checked, written as a compare-and-set on what was read,
/// and described by one outbox row in the same transaction: a video, an AI job. Its changes go
/// through [`apply_change`].
pub(crate) trait Tracked: Sized {
    /// The life-cycle rule for going from `cur` to `next` (the fence only grows).
    fn check(cur: &Self, next: &Self) -> Result<(), DbError>;

    /// Writes `next` over `cur` as a compare-and-set on what `cur` says; the row as it now is.
    async fn update(c: Conn<'_>, cur: &Self, next: &Self) -> Result<Self, DbError>;

    /// The read-model write describing the row as it is.
    fn write(&self) -> Result<Write, DbError>;

    /// The webhook event the change from `cur` to `now` announces, if any
    /// ([`crate::webhooks`]).
    fn event(cur: &Self, now: &Self) -> Option<Event>;
}

/// Writes a checked change of a [`Tracked`] row and its outbox row (inside the caller's
/// transaction): the one path every video and AI job state change goes through. The webhook
/// deliveries the change announces are enqueued here too, so they commit with it.
pub(crate) async fn apply_change<T: Tracked>(
    mut c: Conn<'_>,
    cur: &T,
    next: &T,
) -> Result<(T, OutboxEntry), DbError> {
    T::check(cur, next)?;
    let updated = T::update(c.reborrow(), cur, next).await?;
    let entry = insert(c.reborrow(), &updated.write()?).await?;
    if let Some(event) = T::event(cur, &updated) {
        enqueue(c, &event).await?;
    }
    Ok((updated, entry))
}

pub(crate) async fn insert(c: Conn<'_>, write: &Write) -> Result<OutboxEntry, DbError> {
    let json = serde_json::to_string(write).map_err(DbError::corrupt)?;
    let tenant = write.key.tenant.get();
    let id = dual!(c, |c, d| {
        let row = sqlx::query(
            "INSERT INTO outbox (tenant_id, write_json, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(tenant)
        .bind(&json)
        .bind(now_ms())
        .fetch_one(&mut *c)
        .await?;
        row.int("id")?
    });
    Ok(OutboxEntry {
        id,
        write: write.clone(),
    })
}

/// A row as the relay reads it: the write, or why it could not be decoded.
#[derive(Debug)]
pub struct PendingRow {
    pub id: i64,
    pub write: Result<Write, String>,
    /// When the row was committed (milliseconds since the Unix epoch).
    pub created_at_ms: i64,
}

impl PendingRow {
    /// A row just committed (a caller publishing its own rows right after the commit).
    pub fn committed(entry: &OutboxEntry) -> Self {
        Self {
            id: entry.id,
            write: Ok(entry.write.clone()),
            created_at_ms: now_ms(),
        }
    }

    /// How long ago the row was committed, by this process's clock.
    pub fn age(&self) -> std::time::Duration {
        let ms = now_ms().saturating_sub(self.created_at_ms);
        std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

fn pending_from(r: &impl RowExt) -> Result<PendingRow, DbError> {
    let json = r.text("write_json")?;
    Ok(PendingRow {
        id: r.int("id")?,
        write: serde_json::from_str(&json).map_err(|e| e.to_string()),
        created_at_ms: r.int("created_at")?,
    })
}

/// The oldest `limit` rows, rows that failed fewer times first; on PostgreSQL locked
/// `FOR UPDATE SKIP LOCKED` so concurrent relays take different rows (the caller holds the
/// transaction while it publishes). Fewest attempts first: rows the relay keeps (a write no
/// replica acknowledged yet, a store error) must not hold back newer rows for as long as they
/// are retried. Order between them does not matter for correctness: every write is fenced.
async fn fetch(c: Conn<'_>, limit: usize) -> Result<Vec<PendingRow>, DbError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    dual!(c, |c, d| {
        let sql = d.pick(
            "SELECT id, write_json, created_at FROM outbox ORDER BY attempts, id LIMIT $1 \
             FOR UPDATE SKIP LOCKED",
            "SELECT id, write_json, created_at FROM outbox ORDER BY attempts, id LIMIT $1",
        );
        let rows = sqlx::query(sql).bind(limit).fetch_all(&mut *c).await?;
        rows.iter().map(pending_from).collect()
    })
}

/// Rows by id (for publishing a caller's own rows right after commit).
async fn fetch_ids(c: Conn<'_>, ids: &[i64]) -> Result<Vec<PendingRow>, DbError> {
    // Arrays bind only on PostgreSQL; SQLite reads the ids from a JSON array.
    match c {
        Conn::Pg(c) => {
            let rows = sqlx::query(
                "SELECT id, write_json, created_at FROM outbox WHERE id = ANY($1::BIGINT[]) ORDER BY id",
            )
            .bind(ids.to_vec())
            .fetch_all(&mut *c)
            .await?;
            rows.iter().map(pending_from).collect()
        }
        Conn::Lite(c) => {
            let rows = sqlx::query(
                "SELECT id, write_json, created_at FROM outbox \
                 WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
            )
            .bind(ids_json(ids))
            .fetch_all(&mut *c)
            .await?;
            rows.iter().map(pending_from).collect()
        }
    }
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

/// Deletes rows by id.
async fn delete(c: Conn<'_>, ids: &[i64]) -> Result<u64, DbError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = match c {
        Conn::Pg(c) => sqlx::query("DELETE FROM outbox WHERE id = ANY($1::BIGINT[])")
            .bind(ids.to_vec())
            .execute(&mut *c)
            .await?
            .rows_affected(),
        Conn::Lite(c) => {
            sqlx::query("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each($1))")
                .bind(ids_json(ids))
                .execute(&mut *c)
                .await?
                .rows_affected()
        }
    };
    Ok(done)
}

/// Records a failed publishing attempt on rows that stay.
async fn mark_failed(c: Conn<'_>, ids: &[i64], error: &str) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let error = crate::model::clean_message(error);
    match c {
        Conn::Pg(c) => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 \
                 WHERE id = ANY($1::BIGINT[])",
            )
            .bind(ids.to_vec())
            .bind(&error)
            .execute(&mut *c)
            .await?;
        }
        Conn::Lite(c) => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 \
                 WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(ids_json(ids))
            .bind(&error)
            .execute(&mut *c)
            .await?;
        }
    }
    Ok(())
}

/// The oldest outbox rows, taken for publishing (see [`Db::outbox_batch`]). On PostgreSQL the
/// rows stay locked (`FOR UPDATE SKIP LOCKED`) until [`OutboxBatch::ack`] or
/// [`OutboxBatch::fail`], so concurrent relays take different rows; on SQLite they were read
/// without a transaction, so publishing never holds the write lock. Dropping a batch releases
/// its locks and changes nothing.
#[derive(Debug)]
pub struct OutboxBatch {
    db: Db,
    held: Option<Tx>,
    rows: Vec<PendingRow>,
}

impl OutboxBatch {
    /// The rows, oldest first.
    pub fn rows(&self) -> &[PendingRow] {
        &self.rows
    }

    /// The rows were published: deletes them (an empty batch only ends its transaction).
    pub async fn ack(self) -> Result<(), DbError> {
        let ids: Vec<i64> = self.rows.iter().map(|r| r.id).collect();
        if ids.is_empty() {
            if let Some(tx) = self.held {
                tx.commit().await?;
            }
            return Ok(());
        }
        let mut tx = match self.held {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        delete(tx.conn(), &ids).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishing went through for some rows only: deletes every row but the `kept` ones, which
    /// stay with the attempt and `error` recorded (the relay sends them again later).
    pub async fn settle(self, kept: &[i64], error: &str) -> Result<(), DbError> {
        if kept.is_empty() {
            return self.ack().await;
        }
        let done: Vec<i64> = self
            .rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !kept.contains(id))
            .collect();
        let mut tx = match self.held {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        if !done.is_empty() {
            delete(tx.conn(), &done).await?;
        }
        mark_failed(tx.conn(), kept, error).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishing failed: the rows stay, each with the attempt and `error` recorded.
    pub async fn fail(self, error: &str) -> Result<(), DbError> {
        let ids: Vec<i64> = self.rows.iter().map(|r| r.id).collect();
        let mut tx = match self.held {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        mark_failed(tx.conn(), &ids, error).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Db {
    /// Takes the oldest `limit` outbox rows for publishing (see [`OutboxBatch`]).
    pub async fn outbox_batch(&self, limit: usize) -> Result<OutboxBatch, DbError> {
        let mut held = match self.dialect() {
            Dialect::Postgres => Some(self.begin().await?),
            Dialect::Sqlite => None,
        };
        let rows = match &mut held {
            Some(tx) => fetch(tx.conn(), limit).await?,
            None => {
                let mut conn = self.read().await?;
                fetch(conn.conn(), limit).await?
            }
        };
        Ok(OutboxBatch {
            db: self.clone(),
            held,
            rows,
        })
    }

    /// Outbox rows by id (for callers that publish their own rows right after commit).
    pub async fn outbox_rows(&self, ids: &[i64]) -> Result<Vec<PendingRow>, DbError> {
        let mut conn = self.read().await?;
        fetch_ids(conn.conn(), ids).await
    }

    /// Deletes outbox rows by id (they were published).
    pub async fn delete_outbox(&self, ids: &[i64]) -> Result<u64, DbError> {
        let mut tx = self.begin().await?;
        let n = delete(tx.conn(), ids).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Returns when a commit wrote outbox rows (in this process, or in any process through
    /// PostgreSQL NOTIFY once [`Db::ensure_listener`] ran), or at once if one did since the
    /// last wake-up.
    pub async fn outbox_written(&self) {
        self.signals().outbox.notified().await;
    }

    /// Rows waiting to be published (the `jobpulse_outbox_pending` gauge).
    pub async fn outbox_pending(&self) -> Result<u64, DbError> {
        let mut conn = self.read().await?;
        let n = dual!(conn.conn(), |c, d| {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
                .fetch_one(&mut *c)
                .await?;
            row.int("n")?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every pending outbox row, oldest first (operations and tests: replaying the outbox).
    pub async fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>, DbError> {
        let mut conn = self.read().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = dual!(conn.conn(), |c, d| {
            let rows =
                sqlx::query("SELECT id, write_json, created_at FROM outbox ORDER BY id LIMIT $1")
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?;
            rows.iter()
                .map(pending_from)
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(|r| {
                Ok(OutboxEntry {
                    id: r.id,
                    write: r.write.map_err(DbError::Corrupt)?,
                })
            })
            .collect()
    }
}
