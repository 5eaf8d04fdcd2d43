//! Client-driven multipart uploads behind one API for both backends. On S3 they are S3's own
//! (`object_store`'s `MultipartStore`; the browser PUTs parts to [`MediaStorage::presign_part`]
//! URLs). On file storage, [`super::staging`] keeps the parts under `multipart/{upload_id}/` and
//! assembles them on completion. Either way the client's part list may come in any order: it is
//! sorted here, and must then be exactly parts 1..=n, each with the ETag its PUT answered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::{Attribute, Attributes, PutMultipartOptions, PutPayload};
use serde::Deserialize;

use super::objects::quoted;
use super::presign::{MAX_PART_NUMBER, check_part_number};
use super::{MediaStorage, ObjectInfo, StorageError};
use crate::keys::{StorageKey, content_type_for};

/// A part stored by [`MediaStorage::put_part`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// Its number, 1-based.
    pub part_number: u32,
    /// Its ETag, quoted as the `ETag` header of a part PUT answers it.
    pub e_tag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One entry of the client's part list for [`MediaStorage::complete_multipart`]. Deserializes
/// from the front end's `{"PartNumber": 1, "ETag": "\"…\""}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompletedPart {
    /// The part number, 1-based.
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    /// The ETag the part's PUT answered (quotes optional).
    #[serde(rename = "ETag")]
    pub e_tag: String,
}

/// An unfinished multipart upload ([`MediaStorage::list_multipart_uploads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object it would create.
    pub key: StorageKey,
    /// Its id.
    pub upload_id: String,
    /// When it was created, seconds since the Unix epoch.
    pub initiated_unix: i64,
}

/// Upload ids come back from clients: refuse anything no backend would have issued.
pub(super) fn check_upload_id(id: &str) -> Result<(), StorageError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'+' | b'/')
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::NoSuchUpload {
            upload_id: id.chars().take(64).collect(),
        })
    }
}

/// The ETag without its quotes, refusing anything that is not a plain token.
pub(super) fn bare_etag(tag: &str) -> Result<&str, StorageError> {
    let bare = tag.trim().trim_matches('"');
    let ok = !bare.is_empty()
        && bare.len() <= 256
        && bare.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        });
    if ok {
        Ok(bare)
    } else {
        Err(StorageError::InvalidParts(format!(
            "ETag {:?} is not one a part upload answers",
            tag.chars().take(64).collect::<String>()
        )))
    }
}

/// Sorts the client's list and checks it is exactly parts 1..=n with usable ETags.
pub(super) fn sorted_parts(
    mut parts: Vec<CompletedPart>,
) -> Result<Vec<CompletedPart>, StorageError> {
    if parts.is_empty() {
        return Err(StorageError::InvalidParts("no parts given".into()));
    }
    if parts.len() > MAX_PART_NUMBER as usize {
        return Err(StorageError::InvalidParts(format!(
            "{} parts; at most {MAX_PART_NUMBER}",
            parts.len()
        )));
    }
    parts.sort_by_key(|p| p.part_number);
    for (i, part) in parts.iter().enumerate() {
        check_part_number(part.part_number)?;
        bare_etag(&part.e_tag)?;
        let want = i as u32 + 1;
        if part.part_number != want {
            return Err(StorageError::InvalidParts(if part.part_number < want {
                format!("part {} is listed twice", part.part_number)
            } else {
                format!("part {want} is missing")
            }));
        }
    }
    Ok(parts)
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// S3's error codes for a part list it refuses, as they appear in `object_store`'s messages.
const PART_ERRORS: &[&str] = &[
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "MalformedXML",
];

impl MediaStorage {
    pub(super) fn multipart_options(&self, key: &StorageKey) -> PutMultipartOptions {
        let mut opts = PutMultipartOptions::default();
        // Local files have no attributes (object_store refuses them); S3 serves this type.
        if self.s3.is_some() {
            let mut attributes = Attributes::new();
            attributes.insert(
                Attribute::ContentType,
                content_type_for(key.as_str()).into(),
            );
            opts.attributes = attributes;
        }
        opts
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart(&self, key: &StorageKey) -> Result<String, StorageError> {
        match &self.s3 {
            Some(s3) => s3
                .s3
                .create_multipart_opts(&s3.path(key)?, self.multipart_options(key))
                .await
                .map_err(|e| StorageError::backend(key.as_str(), e)),
            None => self.staging_create(key).await,
        }
    }

    /// Stores part `part_number` of upload `upload_id` from `body` (at most `max_bytes`,
    /// [`StorageError::TooLarge`] otherwise). Re-sending a part replaces it. On file storage this
    /// is what the API's own part URL calls; on S3 it holds the part in memory and sends it
    /// (browsers PUT to [`MediaStorage::presign_part`] URLs instead).
    pub async fn put_part<S, E>(
        &self,
        key: &StorageKey,
        upload_id: &str,
        part_number: u32,
        body: S,
        max_bytes: u64,
    ) -> Result<UploadedPart, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        check_upload_id(upload_id)?;
        check_part_number(part_number)?;
        let body = body.map_err(|e| StorageError::Body(e.into()));
        let Some(s3) = &self.s3 else {
            return self
                .staging_put_part(key, upload_id, part_number, body, max_bytes)
                .await;
        };
        let mut body = std::pin::pin!(body);
        let (mut chunks, mut size) = (Vec::new(), 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(StorageError::TooLarge { limit: max_bytes });
            }
            chunks.push(chunk);
        }
        let id = upload_id.to_owned();
        let part = s3
            .s3
            .put_part(
                &s3.path(key)?,
                &id,
                part_number as usize - 1,
                PutPayload::from_iter(chunks),
            )
            .await
            .map_err(|e| upload_error(upload_id, key, e))?;
        Ok(UploadedPart {
            part_number,
            e_tag: quoted(&part.content_id),
            size,
        })
    }

    /// Completes upload `upload_id` of `key` from the client's part list (any order; sorted
    /// here; it must be exactly parts 1..=n with the ETags their PUTs answered). The object
    /// appears whole or not at all. Completing a completed upload changes nothing: S3 answers
    /// it with the object again (`CompleteMultipartUpload` is idempotent there), file storage
    /// with [`StorageError::NoSuchUpload`]; callers keep their own "completed" state (the
    /// video row) to answer repeats. A bad list answers [`StorageError::InvalidParts`] and the
    /// upload stays open, so the client may fix the list or abort.
    pub async fn complete_multipart(
        &self,
        key: &StorageKey,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectInfo, StorageError> {
        check_upload_id(upload_id)?;
        let parts = sorted_parts(parts)?;
        match &self.s3 {
            None => self.staging_complete(key, upload_id, &parts).await?,
            Some(s3) => {
                let ids = parts
                    .iter()
                    .map(|p| {
                        Ok(PartId {
                            content_id: quoted(bare_etag(&p.e_tag)?),
                        })
                    })
                    .collect::<Result<Vec<_>, StorageError>>()?;
                s3.s3
                    .complete_multipart(&s3.path(key)?, &upload_id.to_owned(), ids)
                    .await
                    .map_err(|e| upload_error(upload_id, key, e))?;
            }
        }
        self.head(key).await
    }

    /// Abandons upload `upload_id` of `key` and frees its parts. Aborting an upload that is
    /// already gone (completed, aborted, unknown) is not an error.
    pub async fn abort_multipart(
        &self,
        key: &StorageKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        if check_upload_id(upload_id).is_err() {
            return Ok(());
        }
        let result = match &self.s3 {
            None => self.staging_abort(key, upload_id).await,
            Some(s3) => s3
                .s3
                .abort_multipart(&s3.path(key)?, &upload_id.to_owned())
                .await
                .map_err(|e| upload_error(upload_id, key, e)),
        };
        match result {
            Err(StorageError::NoSuchUpload { .. }) => Ok(()),
            other => other,
        }
    }

    /// Every unfinished multipart upload of this storage (on S3: under its prefix, of keys this
    /// crate builds; other objects in the bucket are not ours to list).
    pub async fn list_multipart_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let Some(s3) = &self.s3 else {
            return self.staging_list().await;
        };
        let mut out = Vec::new();
        for u in s3.list_uploads().await? {
            let Some(key) = s3.key_of(&u.key) else {
                continue;
            };
            let initiated_unix = chrono::DateTime::parse_from_rfc3339(&u.initiated)
                .map(|t| t.timestamp())
                .map_err(|e| {
                    StorageError::S3(format!(
                        "upload {} initiated at {:?}: {e}",
                        u.upload_id, u.initiated
                    ))
                })?;
            out.push(PendingUpload {
                key,
                upload_id: u.upload_id,
                initiated_unix,
            });
        }
        Ok(out)
    }

    /// Aborts every multipart upload started more than `older_than` ago (the abandoned-PENDING
    /// cleanup); returns the ones aborted.
    pub async fn abort_stale_multipart(
        &self,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>, StorageError> {
        let cutoff = now_unix().saturating_sub(older_than.as_secs().min(i64::MAX as u64) as i64);
        let stale: Vec<PendingUpload> = self
            .list_multipart_uploads()
            .await?
            .into_iter()
            .filter(|u| u.initiated_unix < cutoff)
            .collect();
        for u in &stale {
            self.abort_multipart(&u.key, &u.upload_id).await?;
        }
        Ok(stale)
    }
}

/// Maps a multipart call's failure: a missing upload is [`StorageError::NoSuchUpload`], a part
/// list S3 refused is [`StorageError::InvalidParts`].
fn upload_error(upload_id: &str, key: &StorageKey, e: object_store::Error) -> StorageError {
    if matches!(e, object_store::Error::NotFound { .. }) {
        return StorageError::NoSuchUpload {
            upload_id: upload_id.to_owned(),
        };
    }
    let text = e.to_string();
    if let Some(code) = PART_ERRORS
        .iter()
        .find(|c| text.contains(&format!("<Code>{c}</Code>")) || text.contains(*c))
    {
        return StorageError::InvalidParts(format!("storage refused the part list ({code})"));
    }
    if text.contains("NoSuchUpload") {
        return StorageError::NoSuchUpload {
            upload_id: upload_id.to_owned(),
        };
    }
    StorageError::backend(key.as_str(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32, tag: &str) -> CompletedPart {
        CompletedPart {
            part_number: n,
            e_tag: tag.into(),
        }
    }

    #[test]
    fn part_lists_are_sorted_and_checked() {
        let sorted = sorted_parts(vec![p(3, "\"c\""), p(1, "a"), p(2, "\"b\"")]).expect("ok");
        assert_eq!(
            sorted.iter().map(|x| x.part_number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        for (parts, want) in [
            (vec![], "no parts"),
            (vec![p(1, "a"), p(1, "b")], "listed twice"),
            (vec![p(1, "a"), p(3, "b")], "part 2 is missing"),
            (vec![p(2, "a")], "part 1 is missing"),
            (vec![p(0, "a")], "outside"),
            (vec![p(1, "<x>")], "ETag"),
            (vec![p(1, "\"\"")], "ETag"),
        ] {
            let err = sorted_parts(parts).expect_err(want);
            assert!(err.to_string().contains(want), "{err}");
        }
        let parsed: Vec<CompletedPart> = serde_json::from_str(
            r#"[{"ETag":"\"e2\"","PartNumber":2},{"PartNumber":1,"ETag":"e1"}]"#,
        )
        .expect("front end shape");
        assert_eq!(parsed[0], p(2, "\"e2\""));
    }

    #[test]
    fn upload_ids_from_clients_are_checked() {
        assert!(
            check_upload_id("VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA").is_ok()
        );
        assert!(check_upload_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "a b", "x\n", "a&b", "<x>", &"x".repeat(1025)] {
            assert!(
                matches!(check_upload_id(bad), Err(StorageError::NoSuchUpload { .. })),
                "{bad:?}"
            );
        }
    }
}
