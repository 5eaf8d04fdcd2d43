//! Presigned URLs on S3 (SigV4 query signing by `object_store`'s `Signer`): a single-object PUT,
//! a GET (playback, downloads), and a multipart `UploadPart` PUT whose `partNumber` and
//! `uploadId` are part of the signature. File storage has none of these: the API mints its own
//! signed URLs there ([`StorageError::Unsupported`] says so).

use std::time::Duration;

use http::Method;
use url::Url;

use super::{MediaStorage, StorageError};
use crate::keys::StorageKey;

/// The longest a presigned URL may live: SigV4's limit (7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The smallest part of a multipart upload, except the last (S3's rule, kept on file storage
/// too so both behave alike).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Part numbers run from 1 to this (S3's limit).
pub const MAX_PART_NUMBER: u32 = 10_000;

const NO_PRESIGN: &str =
    "file storage has no presigned URLs; the API serves its own signed upload URLs";

pub(super) fn check_expiry(expires: Duration) -> Result<(), StorageError> {
    if expires < Duration::from_secs(1) || expires > MAX_PRESIGN_EXPIRY {
        return Err(StorageError::Invalid(format!(
            "{} s; presigned URLs live 1 s to 7 days",
            expires.as_secs()
        )));
    }
    Ok(())
}

pub(super) fn check_part_number(part_number: u32) -> Result<(), StorageError> {
    if !(1..=MAX_PART_NUMBER).contains(&part_number) {
        return Err(StorageError::InvalidParts(format!(
            "part number {part_number} is outside 1..={MAX_PART_NUMBER}"
        )));
    }
    Ok(())
}

impl MediaStorage {
    /// A URL the browser PUTs the whole object to, valid for `expires`. With `content_type`,
    /// the `Content-Type` header is part of the signature: the PUT must send exactly that value
    /// (the front end sends the init's `content_type`), so nobody can store the object as, say,
    /// `text/html`. Without it any `Content-Type` is accepted.
    pub async fn presign_put(
        &self,
        key: &StorageKey,
        expires: Duration,
        content_type: Option<&str>,
    ) -> Result<Url, StorageError> {
        check_expiry(expires)?;
        let s3 = self
            .s3
            .as_ref()
            .ok_or(StorageError::Unsupported(NO_PRESIGN))?;
        match content_type {
            None => s3.sign(Method::PUT, key, expires, &[]).await,
            Some(ct) => s3.sign_with_content_type(key, expires, ct).await,
        }
    }

    /// A URL that GETs the object, valid for `expires` (a GET signature does not cover HEAD);
    /// `Range` requests work as on any S3 GET.
    pub async fn presign_get(
        &self,
        key: &StorageKey,
        expires: Duration,
    ) -> Result<Url, StorageError> {
        check_expiry(expires)?;
        let s3 = self
            .s3
            .as_ref()
            .ok_or(StorageError::Unsupported(NO_PRESIGN))?;
        s3.sign(Method::GET, key, expires, &[]).await
    }

    /// The origin (`scheme://host[:port]`) presigned URLs point at, for a page's
    /// Content-Security-Policy (a player on it fetches segments there); `None` on file storage.
    pub async fn presign_origin(&self) -> Option<String> {
        let s3 = self.s3.as_ref()?;
        let key = crate::keys::storage_probe_key("origin");
        let url = s3
            .sign(Method::GET, &key, Duration::from_secs(60), &[])
            .await
            .ok()?;
        Some(url.origin().ascii_serialization())
    }

    /// The URL the browser PUTs part `part_number` (1-based) of multipart upload `upload_id` to,
    /// without a `Content-Type`; S3 answers with the part's `ETag`, which the browser hands back
    /// to [`MediaStorage::complete_multipart`].
    pub async fn presign_part(
        &self,
        key: &StorageKey,
        upload_id: &str,
        part_number: u32,
        expires: Duration,
    ) -> Result<Url, StorageError> {
        check_expiry(expires)?;
        check_part_number(part_number)?;
        super::multipart::check_upload_id(upload_id)?;
        let s3 = self
            .s3
            .as_ref()
            .ok_or(StorageError::Unsupported(NO_PRESIGN))?;
        let n = part_number.to_string();
        s3.sign(
            Method::PUT,
            key,
            expires,
            &[("partNumber", n.as_str()), ("uploadId", upload_id)],
        )
        .await
    }
}
