//! Multipart helpers shared by the video upload and the job submit: spooling a file field to
//! disk under a size limit and mapping multipart errors. Upload keys are named by
//! `jobpulse_media::keys::upload_key`.

use axum::extract::multipart::{Field, MultipartError};
use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// Maps a multipart error to the client's fault, naming the limit when it was the size.
pub(crate) fn multipart_error(limit: u64) -> impl Fn(MultipartError) -> ApiError {
    move |e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the file is larger than {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
        }
    }
}

/// A file received into the spool: removed, and its bytes returned to the spool's budget, when
/// dropped. Derefs to its path.
#[derive(Debug)]
pub(crate) struct Spooled {
    pub path: tempfile::TempPath,
    pub bytes: u64,
    _reserved: crate::spool::Reservation,
}

impl std::ops::Deref for Spooled {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

/// Streams a file field to a new spool file (never whole in memory), refusing more than
/// `limit` bytes, an empty file, and what the spool's budget or disk cannot hold
/// ([`crate::spool`]).
pub(crate) async fn spool(
    field: &mut Field<'_>,
    state: &crate::state::AppState,
    limit: u64,
) -> Result<Spooled, ApiError> {
    let spool_dir = &state.spool_dir;
    tokio::fs::create_dir_all(spool_dir)
        .await
        .map_err(ApiError::internal)?;
    let path = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(spool_dir)
        .map_err(ApiError::internal)?
        .into_temp_path();
    let mut reserved = state.spool.reserve();
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(ApiError::internal)?;
    let bad = multipart_error(limit);
    let mut n: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(&bad)? {
        n += chunk.len() as u64;
        if n > limit {
            tracing::info!(limit, "upload refused: larger than the limit");
            return Err(ApiError::PayloadTooLarge(format!(
                "the file is larger than {limit} bytes"
            )));
        }
        state
            .spool
            .grow(&mut reserved, chunk.len() as u64, spool_dir)?;
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    if n == 0 {
        return Err(ApiError::Unprocessable("the file is empty".into()));
    }
    Ok(Spooled {
        path,
        bytes: n,
        _reserved: reserved,
    })
}
