//! Reading records: the one pipeline behind `get` and `get_many`.
//!
//! `get` is one HMGET; `get_many` pipelines one HMGET per task (one round trip; all keys share the
//! tenant's slot). With `legacy_read`, each HMGET is followed by GETs of the two keys
//! [`legacy_keys`] names, in the same pipeline, used only when the record is missing (not for a
//! tombstone). Accepted: the status key holds exactly a contract status name of the task's kind;
//! the optional progress key a JSON object with optional `percent`, `step_index`, `step_total`,
//! `step_name`, `step_name_display`, `step_percent`, `remaining_seconds` (and `job_type`, which a
//! job needs). The snapshot gets fence `0.0.0` and revision 0; garbage is a miss (see
//! `legacy.rs`). On a cluster those keys are in other slots: the migration read is for the
//! single-node Redis the old system used.

use ::redis::Value;
use jobpulse_domain::keys::legacy_keys;
use jobpulse_domain::{TaskId, TaskKey, TenantId};

use super::errors::redis_error;
use super::{RedisStore, legacy, record};
use crate::{Snapshot, StoreError};

impl RedisStore {
    /// Reads many tasks of one tenant in one pipeline.
    pub(super) async fn read(
        &self,
        tenant: TenantId,
        tasks: &[TaskId],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let legacy = self.config.legacy_read;
        let keys: Vec<TaskKey> = tasks
            .iter()
            .map(|task| TaskKey {
                tenant,
                task: task.clone(),
            })
            .collect();
        let mut pipe = ::redis::pipe();
        for key in &keys {
            pipe.cmd("HMGET")
                .arg(self.ctx.keys.record(key))
                .arg(&record::FIELDS[..]);
            if legacy {
                let (status, progress) = legacy_keys(key);
                pipe.cmd("GET").arg(status).cmd("GET").arg(progress);
            }
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(redis_error)?;
        let per_task = if legacy { 3 } else { 1 };
        if replies.len() != keys.len() * per_task {
            return Err(StoreError::Protocol(
                "a read pipeline returned the wrong number of replies".into(),
            ));
        }
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            let found = record::decode(replies.next().unwrap_or_default())?;
            if !legacy {
                out.push(found.into_snapshot());
                continue;
            }
            let status = record::opt_text(&replies.next().unwrap_or_default())?;
            let progress = record::opt_text(&replies.next().unwrap_or_default())?;
            // Only a true miss falls back: a tombstone means the task was deleted.
            out.push(match found {
                record::Record::Missing => legacy::map(key, status.as_deref(), progress.as_deref()),
                other => other.into_snapshot(),
            });
        }
        Ok(out)
    }
}
