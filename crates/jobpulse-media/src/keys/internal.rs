//! Keys of storage's own bookkeeping, outside `tenants/`: file storage's staged multipart
//! uploads and the storage check's probe object. Built from ids this crate issued, never from a
//! client's text unchecked.

use super::{KeyError, StorageKey, StoragePrefix};

/// Where file storage stages multipart upload `upload_id` (32 lower-case hex digits, as
/// [`crate::MediaStorage::create_multipart`] issues them there): `multipart/{upload_id}/`,
/// outside `tenants/` so no tenant listing or deletion ever sees half an upload. Any other id is
/// refused, so a client's id can never name another directory.
pub fn multipart_staging_prefix(upload_id: &str) -> Result<StoragePrefix, KeyError> {
    let ok = upload_id.len() == 32
        && upload_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(StoragePrefix(format!("multipart/{upload_id}/")))
    } else {
        Err(KeyError(upload_id.chars().take(64).collect()))
    }
}

/// The root of all staged multipart uploads: `multipart/`.
pub fn multipart_staging_root() -> StoragePrefix {
    StoragePrefix("multipart/".to_owned())
}

/// Part `n` of a staged upload: `multipart/{upload_id}/part-00001` (zero-padded so parts list
/// in order).
pub fn multipart_part_key(staging: &StoragePrefix, n: u32) -> StorageKey {
    StorageKey(format!("{}part-{n:05}", staging.0))
}

/// The record of a staged upload (target key, creation time):
/// `multipart/{upload_id}/upload.json`.
pub fn multipart_meta_key(staging: &StoragePrefix) -> StorageKey {
    StorageKey(format!("{}upload.json", staging.0))
}

/// The storage check's probe: `jobpulse-check/probe-{token}.txt`; `token` is reduced to
/// `[a-z0-9]`, at most 40 characters.
pub fn storage_probe_key(token: &str) -> StorageKey {
    let token: String = token
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(40)
        .collect();
    StorageKey(format!("jobpulse-check/probe-{token}.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys() {
        let id = "0123456789abcdef0123456789abcdef";
        let staging = multipart_staging_prefix(id).expect("valid");
        assert_eq!(staging.as_str(), format!("multipart/{id}/"));
        assert_eq!(
            multipart_part_key(&staging, 7).as_str(),
            format!("multipart/{id}/part-00007")
        );
        assert_eq!(
            multipart_meta_key(&staging).as_str(),
            format!("multipart/{id}/upload.json")
        );
        assert!(multipart_staging_root().contains(&multipart_meta_key(&staging)));
        let upper = id.to_uppercase();
        let long = format!("{id}0");
        for bad in [
            "",
            "../../tenants/3/video",
            upper.as_str(),
            long.as_str(),
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(multipart_staging_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            storage_probe_key("AbC12/../x").as_str(),
            "jobpulse-check/probe-b12x.txt"
        );
    }
}
