//! File storage's multipart uploads (any non-S3 backend): the same contract as S3's, built
//! from plain objects under `multipart/{upload_id}/` ([`crate::keys::multipart_staging_prefix`]):
//!
//! - `upload.json` records the target key and the creation time; an upload id only works with
//!   the key it was created for.
//! - `part-00001` … hold the parts; each part's ETag is the quoted hex MD5 of its bytes (as on
//!   S3), so the client's list can be checked without storing ETags.
//! - Completing streams the parts in order into one upload of the target key, checking each
//!   part's MD5 against the client's ETag and the minimum part size on the way; a mismatch
//!   aborts that upload (nothing appears) and leaves the staged parts for a corrected retry.
//!   Afterwards the staging directory is removed, so a second completion finds no upload.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::multipart::{CompletedPart, PendingUpload, UploadedPart, bare_etag, now_unix};
use super::objects::object_path;
use super::presign::MIN_PART_SIZE;
use super::{MediaStorage, StorageError};
use crate::keys::{
    StorageKey, StoragePrefix, multipart_meta_key, multipart_part_key, multipart_staging_prefix,
    multipart_staging_root,
};

#[derive(Debug, Serialize, Deserialize)]
struct UploadRecord {
    key: String,
    created_unix: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl MediaStorage {
    pub(super) async fn staging_create(&self, key: &StorageKey) -> Result<String, StorageError> {
        let id = super::random_token();
        let staging = multipart_staging_prefix(&id)?;
        let record = serde_json::to_vec(&UploadRecord {
            key: key.to_string(),
            created_unix: now_unix(),
        })
        .map_err(|e| StorageError::Body(e.into()))?;
        let meta = multipart_meta_key(&staging);
        self.store
            .put(&object_path(&meta)?, record.into())
            .await
            .map_err(|e| StorageError::backend(meta.as_str(), e))?;
        Ok(id)
    }

    /// The staging prefix of `upload_id` when it exists and belongs to `key`.
    async fn staging_of(
        &self,
        key: &StorageKey,
        upload_id: &str,
    ) -> Result<(StoragePrefix, UploadRecord), StorageError> {
        let missing = || StorageError::NoSuchUpload {
            upload_id: upload_id.chars().take(64).collect(),
        };
        let staging = multipart_staging_prefix(upload_id).map_err(|_| missing())?;
        let record = self.read_record(&staging).await?.ok_or_else(missing)?;
        if record.key != key.as_str() {
            return Err(missing());
        }
        Ok((staging, record))
    }

    async fn read_record(
        &self,
        staging: &StoragePrefix,
    ) -> Result<Option<UploadRecord>, StorageError> {
        let meta = multipart_meta_key(staging);
        let bytes = match self.store.get(&object_path(&meta)?).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| StorageError::backend(meta.as_str(), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StorageError::Backend(e)),
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub(super) async fn staging_put_part(
        &self,
        key: &StorageKey,
        upload_id: &str,
        part_number: u32,
        body: impl Stream<Item = Result<Bytes, StorageError>> + Send,
        max_bytes: u64,
    ) -> Result<UploadedPart, StorageError> {
        let (staging, _) = self.staging_of(key, upload_id).await?;
        let mut hasher = Md5::new();
        let body = body.map(|chunk| {
            if let Ok(bytes) = &chunk {
                hasher.update(bytes);
            }
            chunk
        });
        let written = self
            .upload(&multipart_part_key(&staging, part_number), body, max_bytes)
            .await?;
        Ok(UploadedPart {
            part_number,
            e_tag: format!("\"{}\"", hex(&hasher.finalize())),
            size: written.size,
        })
    }

    pub(super) async fn staging_complete(
        &self,
        key: &StorageKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), StorageError> {
        let (staging, _) = self.staging_of(key, upload_id).await?;
        // One stream of every part's bytes in order; a part that is missing, too small or not
        // the bytes its ETag names ends the stream with an error, which aborts the upload.
        let body = assembled(Arc::clone(&self.store), staging.clone(), parts.to_vec());
        self.upload(key, body, u64::MAX).await?;
        self.delete_prefix(&staging).await?;
        Ok(())
    }

    pub(super) async fn staging_abort(
        &self,
        key: &StorageKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let (staging, _) = self.staging_of(key, upload_id).await?;
        self.delete_prefix(&staging).await?;
        Ok(())
    }

    pub(super) async fn staging_list(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let root = multipart_staging_root();
        let location = ObjectPath::parse(root.as_str().trim_end_matches('/'))
            .map_err(|e| StorageError::Backend(e.into()))?;
        let listing = match self.store.list_with_delimiter(Some(&location)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::Backend(e)),
        };
        let mut out = Vec::new();
        for dir in listing.common_prefixes {
            let Some(id) = dir.filename() else { continue };
            let Ok(staging) = multipart_staging_prefix(id) else {
                continue;
            };
            let Some(record) = self.read_record(&staging).await? else {
                continue;
            };
            let Ok(key) = StorageKey::parse(&record.key) else {
                continue;
            };
            out.push(PendingUpload {
                key,
                upload_id: id.to_owned(),
                initiated_unix: record.created_unix,
            });
        }
        Ok(out)
    }
}

/// The parts' bytes in order, each checked by [`open_part`] and [`checked_part`].
fn assembled(
    store: Arc<dyn ObjectStore>,
    staging: StoragePrefix,
    parts: Vec<CompletedPart>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let last = parts.len();
    futures::stream::iter(parts.into_iter().enumerate())
        .then(move |(i, part)| open_part(Arc::clone(&store), staging.clone(), part, i + 1 == last))
        .flat_map(|opened| match opened {
            Ok(stream) => stream,
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Opens a staged part for assembly: it must exist, and be at least [`MIN_PART_SIZE`] unless
/// it is the last.
async fn open_part(
    store: Arc<dyn ObjectStore>,
    staging: StoragePrefix,
    part: CompletedPart,
    is_last: bool,
) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
    let part_key = multipart_part_key(&staging, part.part_number);
    let got = store
        .get(&object_path(&part_key)?)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                StorageError::InvalidParts(format!("part {} was never uploaded", part.part_number))
            }
            e => StorageError::Backend(e),
        })?;
    if !is_last && got.meta.size < MIN_PART_SIZE {
        return Err(StorageError::InvalidParts(format!(
            "part {} has {} bytes; every part but the last needs at least {MIN_PART_SIZE}",
            part.part_number, got.meta.size
        )));
    }
    Ok(checked_part(part, got.into_stream()).boxed())
}

/// The part's bytes, then an error if their MD5 is not the ETag the client gave for it.
fn checked_part(
    part: CompletedPart,
    stream: BoxStream<'static, Result<Bytes, object_store::Error>>,
) -> impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static {
    let state = (Some(stream), Md5::new(), part);
    futures::stream::unfold(state, |(stream, mut hasher, part)| async move {
        let mut stream = stream?;
        match stream.next().await {
            Some(Ok(bytes)) => {
                hasher.update(&bytes);
                Some((Ok(bytes), (Some(stream), hasher, part)))
            }
            Some(Err(e)) => Some((Err(StorageError::Backend(e)), (None, hasher, part))),
            None => {
                let actual = hex(&hasher.clone().finalize());
                let given = bare_etag(&part.e_tag).unwrap_or_default();
                if actual == given {
                    None
                } else {
                    let err = StorageError::InvalidParts(format!(
                        "the ETag given for part {} does not match the part stored",
                        part.part_number
                    ));
                    Some((Err(err), (None, hasher, part)))
                }
            }
        }
    })
}
