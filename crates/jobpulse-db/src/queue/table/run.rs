//! The statements every [`TaskTable`] shares, run over its SQL: the claim pick, the lease
//! extension and the expired-lease scan.

use super::{ClaimParams, Expired, TaskTable};
use crate::DbError;
use crate::conn::{Conn, Dialect, FromRow, RowExt, RowId, Tx, dual, ms};
use crate::queue::Claim;

fn cap(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

/// Runs `T`'s claim statement (on PostgreSQL its heads statement first, when it has one);
/// `None` when nothing is runnable.
pub(in crate::queue) async fn pick<T: TaskTable>(
    tx: &mut Tx,
    p: &ClaimParams<'_>,
) -> Result<Option<T::Picked>, DbError> {
    let statements = match (tx.dialect(), T::CLAIM_HEADS_SQL) {
        (Dialect::Postgres, Some(heads)) => [Some(heads), Some(T::CLAIM_SQL.0)],
        (Dialect::Postgres, None) => [Some(T::CLAIM_SQL.0), None],
        (Dialect::Sqlite, _) => [Some(T::CLAIM_SQL.1), None],
    };
    for sql in statements.into_iter().flatten() {
        let picked = dual!(tx.conn(), |c, d| {
            sqlx::query(sql)
                .bind(p.worker)
                .bind(p.now.saturating_add(ms(p.lease)))
                .bind(p.now)
                .bind(cap(p.caps.per_tenant))
                .bind(cap(p.caps.global))
                .fetch_optional(&mut *c)
                .await?
                .map(|r| T::Picked::from_row(&r))
                .transpose()
        })?;
        if picked.is_some() {
            return Ok(picked);
        }
    }
    Ok(None)
}

/// Extends the claim's lease to `until`: `Some(cancel_requested)`, `None` when the lease is gone.
pub(in crate::queue) async fn heartbeat<T: TaskTable>(
    c: Conn<'_>,
    claim: &Claim,
    now: i64,
    until: i64,
) -> Result<Option<bool>, DbError> {
    let id = T::row_id(claim)?;
    dual!(c, |c, d| {
        let q = sqlx::query(T::HEARTBEAT_SQL).bind(until).bind(now);
        let q = match id {
            RowId::Int(i) => q.bind(i),
            RowId::Text(t) => q.bind(t),
        };
        q.bind(i64::from(claim.attempt()))
            .bind(&claim.worker_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.flag("cancel_requested"))
            .transpose()
    })
}

/// Runs `T`'s expired-lease scan: up to `limit` jobs whose lease expired at `now`.
pub(in crate::queue) async fn scan<T: TaskTable>(
    tx: &mut Tx,
    now: i64,
    limit: i64,
) -> Result<Vec<Expired<T::Row>>, DbError> {
    dual!(tx.conn(), |c, d| {
        sqlx::query(d.pick(T::EXPIRED_SQL.0, T::EXPIRED_SQL.1))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| T::Row::from_row(r).map(T::expired))
            .collect()
    })
}
