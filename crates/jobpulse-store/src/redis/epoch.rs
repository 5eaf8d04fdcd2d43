//! The data-loss sentinel: a key every store writes once and checks now and then; when it is
//! gone the Redis behind it restarted empty or was flushed, and the read model must be repaired
//! from the database (`StatusStore::check_epoch`).

use ::redis::Value;

use super::errors::redis_error;
use super::{RedisConn, RedisStore, record};
use crate::{Epoch, StoreError};

impl RedisStore {
    /// Reads the sentinel, writing a new one (`SET NX`) when it is missing.
    pub(super) async fn sentinel_epoch(&self) -> Result<Epoch, StoreError> {
        {
            let key = self.ctx.keys.sentinel();
            let mut conn = self.conn.clone();
            let get = |mut conn: RedisConn| {
                let key = key.clone();
                async move {
                    let v: Value = ::redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(redis_error)?;
                    record::opt_text(&v)
                }
            };
            if let Some(epoch) = get(conn.clone()).await? {
                return Ok(Epoch::Intact(epoch));
            }
            let fresh = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            let set: Value = ::redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            if matches!(set, Value::Okay) {
                return Ok(Epoch::Lost(fresh));
            }
            // Another process noticed the loss at the same moment and wrote its epoch first.
            let theirs = get(conn).await?.unwrap_or(fresh);
            Ok(Epoch::Lost(theirs))
        }
    }
}
