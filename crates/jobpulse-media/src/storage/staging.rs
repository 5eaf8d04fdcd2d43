//! File storage's multipart uploads (any non-S3 backend): the same contract as S3's, built
//! from plain objects under `multipart/{upload_id}/` ([`crate::keys::multipart_staging_prefix`]):
//!
//! - `upload.json` records the target key and the creation time; an upload id only works with
//!   the key it was created for.
//! - `part-00001` … hold the parts. A part's ETag is the entity tag the store gives the part
//!   object (on local files: inode, modification time and size), so it changes whenever the part
//!   is sent again, and checking the client's list needs neither hashing nor stored ETags.
//! - Completing checks every listed part (present, its current ETag, the minimum size but for
//!   the last) before anything is written, then assembles them in order into the target key:
//!   on a local directory with kernel-side file copies into a temporary file renamed into place,
//!   elsewhere by streaming them into one upload. Either way the object appears whole or not at
//!   all. Afterwards the staging directory is removed, so a second completion finds no upload;
//!   a refused list leaves everything for a corrected retry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
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
        let written = self
            .upload(&multipart_part_key(&staging, part_number), body, max_bytes)
            .await?;
        let e_tag = written.e_tag.ok_or(StorageError::Unsupported(
            "this store gives objects no ETag; multipart uploads need one",
        ))?;
        Ok(UploadedPart {
            part_number,
            e_tag,
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
        let mut keys = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part_key = multipart_part_key(&staging, part.part_number);
            let info = self.head(&part_key).await.map_err(|e| match e {
                StorageError::NotFound { .. } => StorageError::InvalidParts(format!(
                    "part {} was never uploaded",
                    part.part_number
                )),
                e => e,
            })?;
            let current = info.e_tag.as_deref().map(|t| t.trim_matches('"'));
            if current != Some(bare_etag(&part.e_tag)?) {
                return Err(StorageError::InvalidParts(format!(
                    "the ETag given for part {} is not the part's (sent again since?)",
                    part.part_number
                )));
            }
            if i + 1 < parts.len() && info.size < MIN_PART_SIZE {
                return Err(StorageError::InvalidParts(format!(
                    "part {} has {} bytes; every part but the last needs at least {MIN_PART_SIZE}",
                    part.part_number, info.size
                )));
            }
            keys.push(part_key);
        }
        match &self.local_root {
            Some(root) => assemble_files(root, &staging, &keys, key).await?,
            None => {
                let body = concatenated(Arc::clone(&self.store), keys);
                self.upload(key, body, u64::MAX).await?;
            }
        }
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

/// The objects at `keys`, one after the other.
fn concatenated(
    store: Arc<dyn ObjectStore>,
    keys: Vec<StorageKey>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    futures::stream::iter(keys)
        .then(move |k| open(Arc::clone(&store), k))
        .try_flatten()
        .boxed()
}

async fn open(
    store: Arc<dyn ObjectStore>,
    key: StorageKey,
) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
    let got = store
        .get(&object_path(&key)?)
        .await
        .map_err(|e| StorageError::backend(key.as_str(), e))?;
    Ok(got
        .into_stream()
        .map_err(move |e| StorageError::backend(key.as_str(), e))
        .boxed())
}

/// Concatenates the part files into `staging/assembled` (kernel-side copies), then renames it
/// to the target's path: the object appears whole or not at all.
async fn assemble_files(
    root: &Path,
    staging: &StoragePrefix,
    parts: &[StorageKey],
    target: &StorageKey,
) -> Result<(), StorageError> {
    let tmp = root.join(staging.as_str()).join("assembled");
    let sources: Vec<PathBuf> = parts.iter().map(|k| root.join(k.as_str())).collect();
    let dest = root.join(target.as_str());
    let done = tokio::task::spawn_blocking(move || {
        let result = (|| {
            let mut out = std::fs::File::create(&tmp)
                .map_err(|e| StorageError::io(format!("creating {}", tmp.display()), e))?;
            for src in &sources {
                let mut part = std::fs::File::open(src)
                    .map_err(|e| StorageError::io(format!("opening {}", src.display()), e))?;
                std::io::copy(&mut part, &mut out)
                    .map_err(|e| StorageError::io(format!("copying {}", src.display()), e))?;
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StorageError::io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::rename(&tmp, &dest)
                .map_err(|e| StorageError::io(format!("renaming to {}", dest.display()), e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })
    .await;
    done.map_err(|e| StorageError::io("assembling a multipart upload", std::io::Error::other(e)))?
}
