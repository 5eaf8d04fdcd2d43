//! [`StorageError`]: everything a storage call can fail with, worded for the operator (a bad
//! storage URL) or mapped by the API to a client answer (a missing object, a bad part list).

use crate::keys::KeyError;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under this key.
    #[error("object {key} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The upload (or the stored object, for [`crate::MediaStorage::verify_upload`]) is over its
    /// byte limit; an upload over the limit was aborted.
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The object exists but has no bytes ([`crate::MediaStorage::verify_upload`]).
    #[error("object {key} is empty")]
    Empty {
        /// The key checked.
        key: String,
    },
    /// The body stream given to an upload failed (e.g. the client hung up).
    #[error("reading the upload failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A key or relative path was refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The storage URL or the `AWS_*` settings are unusable; the message says what to change.
    #[error("storage configuration: {0}")]
    Config(String),
    /// The operation does not exist on this backend (e.g. presigned URLs on file storage: the
    /// API mints its own signed URLs there).
    #[error("{0}")]
    Unsupported(&'static str),
    /// No multipart upload with this id for this key: never created, completed or aborted.
    #[error("no multipart upload {upload_id:?} for this object (completed, aborted or unknown)")]
    NoSuchUpload {
        /// The id given.
        upload_id: String,
    },
    /// The part list given to complete a multipart upload, or a part number, was refused: empty,
    /// a duplicate or missing number, an ETag that does not match the stored part, a part under
    /// the minimum size.
    #[error("invalid multipart parts: {0}")]
    InvalidParts(String),
    /// An argument no backend would take: a presign expiry outside 1 s … 7 days, a
    /// `Content-Type` that is not a plain header value.
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// Local file I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The backend failed (disk, network, permissions).
    #[error("storage error: {0}")]
    Backend(#[source] object_store::Error),
    /// An S3 request this crate makes itself (bucket CORS, upload listing) failed.
    #[error("S3 request failed: {0}")]
    S3(String),
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn backend(key: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                key: key.to_owned(),
            },
            other => StorageError::Backend(other),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        StorageError::Config(message.into())
    }

    /// True when the object (or upload) is missing — the client's fault or a race, not an
    /// outage.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::NotFound { .. } | StorageError::NoSuchUpload { .. }
        )
    }
}
