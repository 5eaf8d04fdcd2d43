//! Object operations of [`MediaStorage`] on every backend: streamed uploads with a byte limit
//! (aborted, leaving nothing, when over it), streamed reads, range reads, metadata, deletion, and
//! the check of a directly uploaded object.
//!
//! If the caller drops an upload future mid-way (a client hung up), the local staging file is
//! removed; on S3 the incomplete upload is left for [`MediaStorage::abort_stale_multipart`] or
//! the bucket's abort-incomplete-multipart lifecycle rule.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

use super::{MediaStorage, StorageError};
use crate::keys::{KeyError, StorageKey, StoragePrefix, content_type_for};

/// Parts uploaded concurrently per upload.
const PART_CONCURRENCY: usize = 2;
/// Files uploaded concurrently by [`MediaStorage::put_files`].
const FILE_CONCURRENCY: usize = 4;

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, seconds since the Unix epoch.
    pub last_modified_unix: i64,
    /// The backend's entity tag, quoted (`"…"`), when it has one.
    pub e_tag: Option<String>,
    /// `Content-Type` by extension ([`content_type_for`]).
    pub content_type: &'static str,
}

/// A stored object being read: its metadata and a stream of its bytes.
pub struct StoredObject {
    /// Metadata.
    pub info: ObjectInfo,
    /// The bytes, in order.
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredObject")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What [`MediaStorage::write`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes stored.
    pub size: u64,
    /// The backend's entity tag of the new object, quoted as in an HTTP `ETag` header
    /// (`"…"`), when the backend gives one (local files and S3 do).
    pub e_tag: Option<String>,
}

impl MediaStorage {
    /// Streams `body` to `key` without buffering it whole, refusing more than `max_bytes`
    /// ([`StorageError::TooLarge`], nothing left behind). Returns the stored size.
    pub async fn put_stream<S, E>(
        &self,
        key: &StorageKey,
        body: S,
        max_bytes: u64,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Ok(self.write(key, body, max_bytes).await?.size)
    }

    /// [`MediaStorage::put_stream`] returning the new object's ETag as well: what the API's own
    /// upload URL answers on file storage (`ETag` header of the PUT).
    pub async fn write<S, E>(
        &self,
        key: &StorageKey,
        body: S,
        max_bytes: u64,
    ) -> Result<Written, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.upload(
            key,
            body.map_err(|e| StorageError::Body(e.into())),
            max_bytes,
        )
        .await
    }

    /// Uploads a local file to `key`, streaming. Returns its size.
    pub async fn put_file(&self, key: &StorageKey, path: &Path) -> Result<u64, StorageError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        let shown = path.display().to_string();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map_err(move |e| StorageError::io(format!("reading {shown}"), e));
        Ok(self.upload(key, body, u64::MAX).await?.size)
    }

    /// Uploads `files` (paths relative to `dir`, `/`-separated, as in
    /// [`crate::HlsSummary::files`]) under `prefix`, a few at a time. `on_file(done, total)` is
    /// called after each file. Returns the bytes uploaded.
    pub async fn put_files(
        &self,
        prefix: &StoragePrefix,
        dir: &Path,
        files: &[String],
        mut on_file: impl FnMut(usize, usize),
    ) -> Result<u64, StorageError> {
        let jobs = files
            .iter()
            .map(|rel| Ok::<_, StorageError>((prefix.join(rel)?, dir.join(rel))))
            .collect::<Result<Vec<_>, _>>()?;
        let total = jobs.len();
        let mut uploads = futures::stream::iter(jobs)
            .map(|(key, path)| async move { self.put_file(&key, &path).await })
            .buffer_unordered(FILE_CONCURRENCY);
        let (mut done, mut bytes) = (0, 0);
        while let Some(size) = uploads.next().await {
            bytes += size?;
            done += 1;
            on_file(done, total);
        }
        Ok(bytes)
    }

    pub(super) async fn upload(
        &self,
        key: &StorageKey,
        body: impl Stream<Item = Result<Bytes, StorageError>> + Send,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        let location = object_path(key)?;
        // On S3 the object carries its Content-Type: presigned GETs (playback segments) are
        // answered by the bucket with it, and native HLS players refuse `binary/octet-stream`
        // segments. Local files have no attributes (the API serves them by extension).
        let upload = if self.s3.is_some() {
            let mut attributes = object_store::Attributes::new();
            attributes.insert(
                object_store::Attribute::ContentType,
                content_type_for(key.as_str()).into(),
            );
            let opts = object_store::PutMultipartOptions {
                attributes,
                ..Default::default()
            };
            self.store.put_multipart_opts(&location, opts).await
        } else {
            self.store.put_multipart(&location).await
        }
        .map_err(|e| StorageError::backend(key.as_str(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut body = std::pin::pin!(body);
        let mut size: u64 = 0;
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(e),
                Some(Ok(chunk)) => chunk,
            };
            size = size.saturating_add(chunk.len() as u64);
            if size > max_bytes {
                break Some(StorageError::TooLarge { limit: max_bytes });
            }
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                break Some(StorageError::backend(key.as_str(), e));
            }
            writer.put(chunk);
        };
        if let Some(e) = failure {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(storage.key = %key, error = %abort, "aborting an upload failed");
            }
            return Err(e);
        }
        let put = writer
            .finish()
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))?;
        Ok(Written {
            size,
            e_tag: put.e_tag.map(|t| quoted(&t)),
        })
    }

    /// Streams the object at `key` into the local file `path` (parent directories created),
    /// via a `.part` file renamed into place so a failed download never looks complete.
    /// Returns the size.
    pub async fn download_to(&self, key: &StorageKey, path: &Path) -> Result<u64, StorageError> {
        let mut object = self.get_stream(key).await?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StorageError::io(format!("creating {}", parent.display()), e))?;
        }
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let result = async {
            let mut file = tokio::fs::File::create(&part)
                .await
                .map_err(|e| StorageError::io(format!("creating {}", part.display()), e))?;
            let mut size = 0u64;
            while let Some(chunk) = object.stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| StorageError::io(format!("writing {}", part.display()), e))?;
            }
            file.flush()
                .await
                .map_err(|e| StorageError::io(format!("writing {}", part.display()), e))?;
            tokio::fs::rename(&part, path)
                .await
                .map_err(|e| StorageError::io(format!("renaming to {}", path.display()), e))?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    /// Opens the object at `key` for streaming.
    pub async fn get_stream(&self, key: &StorageKey) -> Result<StoredObject, StorageError> {
        let location = object_path(key)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))?;
        let info = info_of(key, &result.meta);
        let k = key.as_str().to_owned();
        let stream = result
            .into_stream()
            .map_err(move |e| StorageError::backend(&k, e))
            .boxed();
        Ok(StoredObject { info, stream })
    }

    /// Opens the bytes `range` of the object at `key` for streaming (an HTTP `Range` answer
    /// without holding the range in memory); `info` describes the whole object. Check the range
    /// against [`MediaStorage::head`]'s size first: a range past the end is an error.
    pub async fn get_stream_range(
        &self,
        key: &StorageKey,
        range: Range<u64>,
    ) -> Result<StoredObject, StorageError> {
        let location = object_path(key)?;
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&location, options)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))?;
        let info = info_of(key, &result.meta);
        let k = key.as_str().to_owned();
        let stream = result
            .into_stream()
            .map_err(move |e| StorageError::backend(&k, e))
            .boxed();
        Ok(StoredObject { info, stream })
    }

    /// The bytes `range` of the object at `key` (for HTTP `Range` requests; check the range
    /// against [`MediaStorage::head`]'s size first, a range past the end is an error).
    pub async fn get_range(
        &self,
        key: &StorageKey,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let location = object_path(key)?;
        self.store
            .get_range(&location, range)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))
    }

    /// Metadata of the object at `key`.
    pub async fn head(&self, key: &StorageKey) -> Result<ObjectInfo, StorageError> {
        let location = object_path(key)?;
        let meta = self
            .store
            .head(&location)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))?;
        Ok(info_of(key, &meta))
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &StorageKey) -> Result<bool, StorageError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks an object a client uploaded directly: it exists, is not empty and is at most
    /// `max_bytes`. [`StorageError::NotFound`] / [`StorageError::Empty`] are the API's
    /// `source_not_found_or_empty`; [`StorageError::TooLarge`] means the client sent more than
    /// it announced (delete it). Readability by ffprobe is the worker's check, not this one.
    pub async fn verify_upload(
        &self,
        key: &StorageKey,
        max_bytes: u64,
    ) -> Result<ObjectInfo, StorageError> {
        let info = self.head(key).await?;
        if info.size == 0 {
            return Err(StorageError::Empty {
                key: key.to_string(),
            });
        }
        if info.size > max_bytes {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        Ok(info)
    }

    /// Deletes the object at `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &StorageKey) -> Result<(), StorageError> {
        let location = object_path(key)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Backend(e)),
        }
    }

    /// Deletes every object under `prefix` (e.g. a video's HLS output before a re-transcode).
    /// Prefixes match whole segments: `…/hls/32/` never touches `…/hls/321/`. Returns how many
    /// objects were deleted.
    pub async fn delete_prefix(&self, prefix: &StoragePrefix) -> Result<u64, StorageError> {
        let location = ObjectPath::parse(prefix.as_str().trim_end_matches('/'))
            .map_err(|_| KeyError(prefix.as_str().to_owned()))?;
        let locations = self
            .store
            .list(Some(&location))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        let mut count = 0;
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) => count += 1,
                // Deleted concurrently by someone else: the goal is reached either way.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StorageError::Backend(e)),
            }
        }
        Ok(count)
    }
}

/// `t` as an HTTP entity tag: wrapped in double quotes unless it already is.
pub(super) fn quoted(t: &str) -> String {
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

pub(super) fn object_path(key: &StorageKey) -> Result<ObjectPath, StorageError> {
    ObjectPath::parse(key.as_str()).map_err(|_| StorageError::Key(KeyError(key.to_string())))
}

fn info_of(key: &StorageKey, meta: &object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        size: meta.size,
        last_modified_unix: meta.last_modified.timestamp(),
        e_tag: meta.e_tag.as_deref().map(quoted),
        content_type: content_type_for(key.as_str()),
    }
}
