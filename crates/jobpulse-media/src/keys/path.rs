//! The key types: [`StorageKey`] and [`StoragePrefix`], plain `[A-Za-z0-9._-]` paths checked
//! when parsed or joined. The naming of keys is [`super`]'s.

use std::fmt;

/// A key or relative path that is not a plain `[A-Za-z0-9._-]` path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid storage path {0:?}")]
pub struct KeyError(pub String);

/// The key of one stored object, e.g. `tenants/3/video/hls/321/master.m3u8`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey(pub(super) String);

/// A key prefix ending in `/`, e.g. `tenants/3/video/hls/321/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoragePrefix(pub(super) String);

/// Longest key accepted.
const MAX_KEY: usize = 512;

fn valid_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

impl StorageKey {
    /// Accepts a key read back from the database (e.g. a video's `hls_path`): it must be a plain
    /// path under `tenants/`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if valid_path(s) && s.starts_with("tenants/") {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError(s.to_owned()))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment, e.g. `seg_00001.ts`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The lower-case extension of the last segment, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name();
        let (stem, ext) = name.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }

    /// The key a relative reference found in this object names, e.g. a playlist's
    /// `720p/index.m3u8` or `seg_00001.ts`: `relative` in this key's directory. Checked as
    /// [`StorageKey::parse`] checks a key (no `..`, no empty or absolute segments).
    pub fn resolve(&self, relative: &str) -> Result<StorageKey, KeyError> {
        let dir = self.0.rsplit_once('/').map_or("", |(d, _)| d);
        StorageKey::parse(&format!("{dir}/{relative}"))
    }
}

impl StoragePrefix {
    /// The prefix as text, with its trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `relative` under this prefix, e.g. `720p/seg_00001.ts`. Refuses anything but
    /// plain relative paths (no `..`, no empty or absolute segments), so a path taken from a
    /// request can never leave the prefix.
    pub fn join(&self, relative: &str) -> Result<StorageKey, KeyError> {
        let key = format!("{}{relative}", self.0);
        if valid_path(relative) && key.len() <= MAX_KEY {
            Ok(StorageKey(key))
        } else {
            Err(KeyError(relative.to_owned()))
        }
    }

    /// Whether `key` lies under this prefix.
    pub fn contains(&self, key: &StorageKey) -> bool {
        key.0.starts_with(&self.0)
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StoragePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
