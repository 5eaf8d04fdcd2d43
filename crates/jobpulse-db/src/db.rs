//! [`Db`]: the handle to the source of truth, on PostgreSQL or SQLite.
//!
//! A `Db` is cheap to clone (an `Arc`). It owns the pool, the queue settings, and the wake-up
//! signals (the private `notify` module) that let idle workers and relays sleep until something happens.
//!
//! SQLite settings: WAL journal (readers never block the writer), `busy_timeout` (writers wait
//! for each other instead of failing), foreign keys on, `synchronous=NORMAL` (safe in WAL mode; a
//! power loss may drop the last commits, never corrupt the file). Every SQLite write transaction
//! starts with `BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that
//! reads and then writes can fail with `SQLITE_BUSY` without waiting when another writer
//! committed in between.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::DbError;
use crate::conn::{Dialect, Pooled, Tx};
use crate::migrate::migrator;
use crate::notify::Signals;
use crate::queue::QueueConfig;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Pool size. One PostgreSQL connection of it is kept by the LISTEN task once started.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock.
    pub busy_timeout: Duration,
    /// Retry backoff and defaults of the job queue.
    pub queue: QueueConfig,
    /// PostgreSQL: a session that stays idle inside a transaction this long is ended by the
    /// server (`idle_in_transaction_session_timeout`), which rolls the transaction back and
    /// frees its locks. Every transaction here runs its statements back to back, so only a
    /// client that went silent — a partitioned or frozen worker — is ever ended. Without it such
    /// a worker's open transaction (a foreign key's `FOR KEY SHARE` lock on its job row is
    /// enough) hides the job from the reaper's `SKIP LOCKED` until the server notices the
    /// client is gone, which can take hours. `None` leaves the server's setting.
    pub idle_in_transaction_timeout: Option<Duration>,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
            queue: QueueConfig::default(),
            idle_in_transaction_timeout: Some(Duration::from_secs(5)),
        }
    }
}

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    options: DbOptions,
    signals: Arc<Signals>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The LISTEN task holds its own pool handle; stop it with the last `Db` clone.
        self.signals.stop_listener();
    }
}

/// The source of truth. See the module docs.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl Db {
    /// Connects with default options; see [`Db::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// Connects to `postgres://…` (or `postgresql://…`) or `sqlite:…` / `sqlite://…`. A missing
    /// SQLite file (and its directory) is created. Does not migrate: call [`Db::migrate`].
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Self, DbError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?;
            if let Some(t) = options.idle_in_transaction_timeout {
                let ms = t.as_millis().max(1).to_string();
                opts = opts.options([("idle_in_transaction_session_timeout", ms.as_str())]);
            }
            // One direct connection first: a refused connection, an unknown host or a wrong
            // password is reported as such, at once — the pool would retry until its acquire
            // timeout and then report only that it timed out.
            match tokio::time::timeout(
                options.acquire_timeout,
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = sqlx::Connection::close(conn).await;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {} // the pool reports the timeout below
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(opts)
                .await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.busy_timeout)
                .foreign_keys(true);
            let file = opts.get_filename().to_owned();
            let in_memory = file.as_os_str() == ":memory:";
            let mut pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout);
            if in_memory {
                // Each connection to `:memory:` is its own database: keep exactly one, forever.
                pool = pool
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| DbError::Sqlx(sqlx::Error::Io(e)))?;
                }
                create_private(&file).await?;
            }
            Backend::Sqlite(pool.connect_with(opts).await?)
        } else {
            return Err(DbError::BadUrl);
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                options,
                signals: Arc::new(Signals::default()),
            }),
        })
    }

    /// Applies the embedded migrations that are not applied yet (idempotent; safe to run from
    /// several processes at once on PostgreSQL).
    pub async fn migrate(&self) -> Result<(), DbError> {
        match &self.inner.backend {
            Backend::Postgres(p) => migrator(Dialect::Postgres).run(p).await?,
            Backend::Sqlite(p) => migrator(Dialect::Sqlite).run(p).await?,
        }
        Ok(())
    }

    pub fn kind(&self) -> DbKind {
        match &self.inner.backend {
            Backend::Postgres(_) => DbKind::Postgres,
            Backend::Sqlite(_) => DbKind::Sqlite,
        }
    }

    /// Cheap reachability check for `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        match &self.inner.backend {
            Backend::Postgres(p) => {
                sqlx::query("SELECT 1").execute(p).await?;
            }
            Backend::Sqlite(p) => {
                sqlx::query("SELECT 1").execute(p).await?;
            }
        }
        Ok(())
    }

    /// Whether this connection may write: a statement that needs a write transaction but changes
    /// no row (a read-only PostgreSQL transaction or standby, a SQLite file opened read-only or
    /// without write permission fail it). `migrate` runs it after migrating, because migrating a
    /// schema that is already up to date writes nothing and would succeed on a read-only database.
    pub async fn check_writable(&self) -> Result<(), DbError> {
        const Q: &str = "UPDATE _sqlx_migrations SET version = version WHERE 1 = 0";
        match &self.inner.backend {
            Backend::Postgres(p) => {
                sqlx::query(Q).execute(p).await?;
            }
            Backend::Sqlite(p) => {
                sqlx::query(Q).execute(p).await?;
            }
        }
        Ok(())
    }

    /// Closes the pool (and stops the LISTEN task), waiting for connections to be returned.
    pub async fn close(&self) {
        self.inner.signals.stop_listener();
        match &self.inner.backend {
            Backend::Postgres(p) => p.close().await,
            Backend::Sqlite(p) => p.close().await,
        }
    }

    pub fn options(&self) -> &DbOptions {
        &self.inner.options
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match &self.inner.backend {
            Backend::Postgres(_) => Dialect::Postgres,
            Backend::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub(crate) fn signals(&self) -> &Arc<Signals> {
        &self.inner.signals
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, see the module docs).
    pub(crate) async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match &self.inner.backend {
            Backend::Postgres(p) => Tx::Pg(p.begin().await?),
            Backend::Sqlite(p) => Tx::Lite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Commits `tx` and wakes the relay when it wrote outbox rows.
    pub(crate) async fn commit(&self, tx: Tx, wrote_outbox: bool) -> Result<(), DbError> {
        tx.commit().await?;
        if wrote_outbox {
            self.signals().outbox.notify_one();
        }
        Ok(())
    }

    /// A pooled connection for reads.
    pub(crate) async fn read(&self) -> Result<Pooled, DbError> {
        Ok(match &self.inner.backend {
            Backend::Postgres(p) => Pooled::Pg(p.acquire().await?),
            Backend::Sqlite(p) => Pooled::Lite(p.acquire().await?),
        })
    }

    /// Makes sure wake-ups from other processes arrive (PostgreSQL LISTEN); a no-op on SQLite.
    pub fn ensure_listener(&self) {
        if let Backend::Postgres(pool) = &self.inner.backend {
            self.inner.signals.start_listener(pool);
        }
    }
}

/// Creates a missing SQLite file readable by its owner only (`0600`) before SQLite opens it:
/// SQLite gives the `-wal` and `-shm` files it creates the database file's mode, so they are
/// private too (the database holds students' names and phone numbers). An existing file is
/// left as it is (`jobpulse` tightens its data dir at start).
async fn create_private(file: &std::path::Path) -> Result<(), DbError> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    match opts.open(file).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbError::Sqlx(sqlx::Error::Io(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's sessions carry the timeout: a transaction left idle past it is ended by the
    /// server (against the test PostgreSQL, `JOBPULSE_TEST_DATABASE_URL`).
    #[tokio::test]
    async fn postgres_ends_a_transaction_left_idle() -> Result<(), DbError> {
        let url = std::env::var("JOBPULSE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let options = DbOptions {
            idle_in_transaction_timeout: Some(Duration::from_millis(300)),
            ..DbOptions::default()
        };
        let db = Db::connect_with(&url, options).await?;
        let one = |mut tx: Tx| async move {
            let r = crate::conn::dual!(tx.conn(), |c, d| {
                sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| ())
            });
            (tx, r)
        };
        // Statements back to back are not idle.
        let (tx, r) = one(db.begin().await?).await;
        r?;
        let (tx, r) = one(tx).await;
        r?;
        tx.commit().await?;
        // Silent for longer than the timeout: the server ended the session and the transaction.
        let (tx, r) = one(db.begin().await?).await;
        r?;
        tokio::time::sleep(Duration::from_millis(900)).await;
        let (_tx, r) = one(tx).await;
        assert!(r.is_err(), "the transaction outlived the timeout");
        Ok(())
    }
}
