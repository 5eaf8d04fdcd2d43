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

/// Streams a file field to a new spool file (never whole in memory), refusing more than
/// `limit` bytes and an empty file. The spool file is removed when the returned path drops.
pub(crate) async fn spool(
    field: &mut Field<'_>,
    spool_dir: &std::path::Path,
    limit: u64,
) -> Result<(tempfile::TempPath, u64), ApiError> {
    tokio::fs::create_dir_all(spool_dir)
        .await
        .map_err(ApiError::internal)?;
    let path = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(spool_dir)
        .map_err(ApiError::internal)?
        .into_temp_path();
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(ApiError::internal)?;
    let bad = multipart_error(limit);
    let mut n: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(&bad)? {
        n += chunk.len() as u64;
        if n > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the file is larger than {limit} bytes"
            )));
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    if n == 0 {
        return Err(ApiError::Unprocessable("the file is empty".into()));
    }
    Ok((path, n))
}
