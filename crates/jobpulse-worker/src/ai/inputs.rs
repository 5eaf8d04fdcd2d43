//! Deleting the uploaded inputs of ended jobs (issue 15 finding 11): an import's spreadsheet
//! holds students' names and phone numbers and is needed only while an attempt may still run.
//!
//! Every AI worker runs `purge_inputs`: a pass right after each attempt of its own ends and
//! one every [`AiWorkerConfig::input_purge_every`](super::AiWorkerConfig) (jobs ended elsewhere:
//! by the reaper, by a cancel, by another worker that stopped). A pass deletes the input objects
//! of jobs that ended more than `job_input_retention` ago (0 by default: at once) and then clears
//! their `input_file_key` ([`jobpulse_db::retention`]); each deletion is a log line. Several
//! workers doing it is harmless: deleting a missing object succeeds, clearing the key twice
//! changes nothing.

use std::sync::Arc;
use std::time::Duration;

use jobpulse_db::Db;
use jobpulse_db::retention::ExpiredInput;
use jobpulse_media::{MediaStorage, StorageKey};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Inputs looked at per query.
const BATCH: u32 = 100;

/// Runs passes until `shutdown`: every `every`, and whenever `due` is notified.
pub(super) async fn purge_inputs(
    db: Db,
    storage: MediaStorage,
    keep: Duration,
    every: Duration,
    due: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = purge_inputs_once(&db, &storage, keep).await {
            tracing::warn!(error = %e, "deleting the inputs of ended jobs failed; next pass retries");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = due.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One pass: deletes the inputs of jobs that ended more than `keep` ago; returns how many.
pub async fn purge_inputs_once(
    db: &Db,
    storage: &MediaStorage,
    keep: Duration,
) -> Result<u64, jobpulse_db::DbError> {
    let mut deleted = 0u64;
    loop {
        let inputs = db.expired_job_inputs(keep, BATCH).await?;
        let full = inputs.len() >= BATCH as usize;
        let mut progress = false;
        for input in &inputs {
            if delete_one(db, storage, input).await? {
                deleted += 1;
                progress = true;
            }
        }
        if !full || !progress {
            return Ok(deleted);
        }
    }
}

/// Deletes one input object, then forgets its key; `Ok(false)` when the object could not be
/// deleted (logged, retried by a later pass) or another worker was first.
async fn delete_one(
    db: &Db,
    storage: &MediaStorage,
    input: &ExpiredInput,
) -> Result<bool, jobpulse_db::DbError> {
    // A key that is not ours to delete (not under `tenants/`, or another tenant's) is only
    // forgotten: the API builds input keys, so this is a damaged row, not a file to remove.
    let ours = StorageKey::parse(&input.key).ok().filter(|k| {
        k.as_str()
            .starts_with(&format!("tenants/{}/", input.tenant))
    });
    match &ours {
        Some(key) => {
            if let Err(e) = storage.delete(key).await {
                tracing::warn!(
                    tenant.id = %input.tenant, job.id = %input.job_id, key = %input.key,
                    error = %e, "deleting an ended job's input failed; next pass retries"
                );
                return Ok(false);
            }
        }
        None => tracing::warn!(
            tenant.id = %input.tenant, job.id = %input.job_id, key = %input.key,
            "an ended job's input key is not under its tenant; forgetting it without deleting"
        ),
    }
    let forgotten = db.forget_job_input(input).await?;
    if forgotten && ours.is_some() {
        metrics::counter!("jobpulse_job_inputs_deleted_total").increment(1);
        tracing::info!(
            tenant.id = %input.tenant, job.id = %input.job_id, key = %input.key,
            "deleted the input of an ended job (job_input_retention)"
        );
    }
    Ok(forgotten)
}
