//! Abandoned uploads: the periodic clean-up of uploads never completed within the retention.

use super::*;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// PENDING videos removed (object, multipart upload, row).
    pub videos: usize,
    /// Multipart uploads aborted that no video row knew of.
    pub orphan_multipart: usize,
}

/// Removes uploads started more than `retention` ago and never completed: each video's open
/// multipart upload, its object and its row (deleted, tombstoned in the read model), then
/// multipart uploads of the storage older than `retention` that no row knows of.
pub async fn sweep_abandoned(
    state: &AppState,
    retention: Duration,
) -> Result<SweepReport, ApiError> {
    let cutoff_ms = i64::try_from(
        SystemTime::now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0);
    let mut report = SweepReport::default();
    loop {
        let batch = state.db.abandoned_uploads(cutoff_ms, 100).await?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        for (video, up) in batch {
            if let Ok(key) = StorageKey::parse(&video.file_key) {
                if let Some(id) = &up.multipart_id {
                    state.storage.abort_multipart(&key, id).await?;
                }
                state.storage.delete(&key).await?;
            }
            if state.db.remove_abandoned_upload(&video).await? {
                report.videos += 1;
            }
        }
        if n < 100 {
            break;
        }
    }
    report.orphan_multipart = state.storage.abort_stale_multipart(retention).await?.len();
    Ok(report)
}

/// Runs [`sweep_abandoned`] every `every` until `shutdown` (failures are logged; the next
/// round tries again).
pub fn spawn_sweeper(
    state: AppState,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match sweep_abandoned(&state, retention).await {
                Ok(r) if r.videos > 0 || r.orphan_multipart > 0 => {
                    tracing::info!(
                        videos = r.videos,
                        multipart = r.orphan_multipart,
                        "abandoned uploads removed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cleaning up abandoned uploads failed"),
            }
        }
    })
}
