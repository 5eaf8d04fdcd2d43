//! Media storage through the `object_store` crate: [`MediaStorage`], on a local directory or an
//! S3-compatible bucket (AWS S3, Cloudflare R2, MinIO), chosen by a storage URL.
//!
//! # Opening
//!
//! - [`MediaStorage::from_url`]`("file:///var/lib/jobpulse/media")` or
//!   `("s3://bucket/prefix")` with the standard `AWS_*` variables ([`S3Options::from_env`]);
//!   [`MediaStorage::open`] takes the [`S3Options`] explicitly (tests, config files).
//!   A bad URL or unusable settings are a [`StorageError::Config`] naming the fix.
//! - [`MediaStorage::local`] is file storage at a directory; [`MediaStorage::new`] wraps any
//!   `Arc<dyn ObjectStore>` (in-memory in tests) and gets file storage's direct-upload variant.
//!
//! # Objects (every backend)
//!
//! [`MediaStorage::put_stream`] / [`MediaStorage::write`] stream a body into a multipart upload
//! part by part, checking the byte limit *before* each part is accepted: over the limit the
//! upload is aborted and nothing is visible under the key ([`StorageError::TooLarge`]). `write`
//! also returns the stored ETag (what the API's own upload URL answers on file storage).
//! [`MediaStorage::put_file`], [`MediaStorage::put_files`] (HLS output), reads that stream
//! ([`MediaStorage::get_stream`], [`MediaStorage::download_to`], [`MediaStorage::get_range`],
//! [`MediaStorage::get_stream_range`]),
//! [`MediaStorage::head`], [`MediaStorage::delete`], [`MediaStorage::delete_prefix`], and
//! [`MediaStorage::verify_upload`] (after a direct upload: exists, non-empty, within a limit).
//!
//! # Direct uploads (the browser sends the bytes to storage, not through the API)
//!
//! | step | S3 | file storage |
//! |---|---|---|
//! | single PUT URL | [`MediaStorage::presign_put`] | the API mints its own signed URL and streams the body with [`MediaStorage::write`] |
//! | multipart create | [`MediaStorage::create_multipart`] | same call: parts are staged under `multipart/{upload_id}/` |
//! | part URL | [`MediaStorage::presign_part`] | the API's own URL, body through [`MediaStorage::put_part`] (works on S3 too) |
//! | complete | [`MediaStorage::complete_multipart`] with the client's `{PartNumber, ETag}` in any order | same call: ETags checked first, parts assembled in order (file copies on a local directory), staging removed |
//! | abort | [`MediaStorage::abort_multipart`] | same call |
//! | clean up abandoned ones | [`MediaStorage::abort_stale_multipart`] | same call |
//!
//! [`MediaStorage::presigns`] tells which column applies. Keys are [`StorageKey`](crate::StorageKey)s built in
//! [`crate::keys`]; presigned URLs expire after 1 s … 7 days (S3's SigV4 limit).
//!
//! # Check ([`MediaStorage::check`])
//!
//! Writes, reads back and deletes a probe object, and on S3 reads the bucket's CORS
//! configuration and says whether the given browser origins may PUT/GET/HEAD with `ETag`
//! exposed, with the rule to set (`aws s3api put-bucket-cors` JSON) when not.

mod check;
mod client;
mod config;
mod error;
mod multipart;
mod objects;
mod presign;
mod s3;
mod staging;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

pub use check::{CorsCheck, StorageCheck, suggested_cors_rule};
pub use config::{S3Options, StorageUrl};
pub use error::StorageError;
pub use multipart::{CompletedPart, PendingUpload, UploadedPart};
pub use objects::{ObjectInfo, StoredObject, Written};
pub use presign::{MAX_PRESIGN_EXPIRY, MIN_PART_SIZE};
pub use s3::CorsRuleXml;

/// 32 random lower-case hex digits (upload ids on file storage, probe names).
pub(crate) fn random_token() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Default multipart part size: S3's minimum, and small enough to keep per-upload memory low.
pub const DEFAULT_PART_SIZE: usize = 5 * 1024 * 1024;

/// Media storage over any `object_store` backend. Cheap to clone.
#[derive(Clone)]
pub struct MediaStorage {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    /// Set on S3: presigning, native multipart, bucket requests.
    s3: Option<Arc<s3::S3Backend>>,
    /// Set on a local directory: multipart completion copies files directly.
    local_root: Option<PathBuf>,
    description: String,
}

impl fmt::Debug for MediaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaStorage")
            .field("location", &self.description)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl MediaStorage {
    /// Storage over an existing backend (in-memory, a custom store …). Direct uploads use file
    /// storage's variant (no presigned URLs).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let description = store.to_string();
        Self {
            store,
            part_size: DEFAULT_PART_SIZE,
            s3: None,
            local_root: None,
            description,
        }
    }

    /// Local file-system storage rooted at `dir`, created if missing. Deleting objects also
    /// removes directories left empty.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(StorageError::Backend)?
            .with_automatic_cleanup(true);
        let mut storage = Self::new(Arc::new(fs));
        storage.description = format!("file://{}", dir.display());
        storage.local_root = Some(dir.to_path_buf());
        Ok(storage)
    }

    /// Opens the storage a URL names (`file:///path` or `s3://bucket[/prefix]`), with S3
    /// settings from the standard `AWS_*` variables.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let url = StorageUrl::parse(url)?;
        let opts = match url {
            StorageUrl::S3 { .. } => S3Options::from_env()?,
            StorageUrl::File(_) => S3Options::default(),
        };
        Self::open(&url, &opts)
    }

    /// Opens the storage `url` names with explicit S3 settings. Nothing is contacted yet: use
    /// [`MediaStorage::check`] to verify access.
    pub fn open(url: &StorageUrl, s3: &S3Options) -> Result<Self, StorageError> {
        match url {
            StorageUrl::File(dir) => Self::local(dir),
            StorageUrl::S3 { bucket, prefix } => {
                let (client, resolved) = client::build_s3(bucket, s3)?;
                let backend = s3::S3Backend::new(client, bucket.clone(), prefix.clone(), resolved);
                let raw: Arc<dyn ObjectStore> = Arc::clone(&backend.s3) as Arc<dyn ObjectStore>;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    raw
                } else {
                    Arc::new(PrefixStore::new(Arc::clone(&backend.s3), prefix.as_str()))
                };
                Ok(Self {
                    store,
                    part_size: DEFAULT_PART_SIZE,
                    description: format!(
                        "{url} at {} (region {})",
                        backend.resolved.bucket_endpoint, backend.resolved.region
                    ),
                    s3: Some(Arc::new(backend)),
                    local_root: None,
                })
            }
        }
    }

    /// Uses parts of `bytes` for streamed uploads (at least 64 KiB; S3 requires 5 MiB).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(64 * 1024);
        self
    }

    /// The backend, for operations this type does not wrap. On S3 with a prefix, keys given to
    /// it are relative to the prefix.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// True on S3: the browser gets presigned URLs ([`MediaStorage::presign_put`],
    /// [`MediaStorage::presign_part`]). False on file storage: the API takes the bytes on its
    /// own signed URLs ([`MediaStorage::write`], [`MediaStorage::put_part`]).
    pub fn presigns(&self) -> bool {
        self.s3.is_some()
    }

    /// Where the media is, for logs and `storage check`, e.g.
    /// `s3://media/prod at https://acc.r2.cloudflarestorage.com/media` (no credentials).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Creates the bucket (the tests' S3 server starts empty).
    #[cfg(feature = "testing")]
    pub async fn create_bucket(&self) -> Result<(), StorageError> {
        match &self.s3 {
            Some(s3) => s3.create_bucket().await,
            None => Err(StorageError::Unsupported("file storage has no bucket")),
        }
    }

    /// Replaces the bucket's CORS configuration with `xml` (a `<CORSConfiguration>`; tests).
    #[cfg(feature = "testing")]
    pub async fn put_bucket_cors(&self, xml: &str) -> Result<(), StorageError> {
        match &self.s3 {
            Some(s3) => s3.put_cors_xml(xml.to_owned()).await,
            None => Err(StorageError::Unsupported("file storage has no bucket")),
        }
    }
}
