//! Where media lives, by configuration: [`StorageUrl`] (`file:///path` or `s3://bucket[/prefix]`)
//! and [`S3Options`], the standard `AWS_*` variables, turned into an `object_store` S3 client.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AWS_ENDPOINT_URL` (`AWS_ENDPOINT_URL_S3` wins) | an S3-compatible endpoint (R2, MinIO, …) | AWS |
//! | `AWS_REGION` (or `AWS_DEFAULT_REGION`) | the signing region | `auto` for R2 endpoints, else `us-east-1` |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | credentials | required with an endpoint; on AWS the instance/role credentials |
//! | `AWS_ALLOW_HTTP` | allow an `http://` endpoint | `false` |
//! | `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` | `https://bucket.host/key` instead of `https://host/bucket/key` | `true` on AWS (bucket without dots), `false` with an endpoint |

use std::fmt;
use std::path::PathBuf;

use super::StorageError;

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// `file:///absolute/path`: a local directory.
    File(PathBuf),
    /// `s3://bucket[/prefix]`: a bucket, optionally a key prefix inside it (no trailing `/`).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The prefix every key is stored under, `""` for none.
        prefix: String,
    },
}

impl StorageUrl {
    /// Parses `file:///path` or `s3://bucket[/prefix]`; anything else is a
    /// [`StorageError::Config`] saying what is accepted.
    pub fn parse(input: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| {
            StorageError::config(format!(
                "{input:?} is not a storage URL ({why}); use file:///absolute/path or s3://bucket[/prefix]"
            ))
        };
        let url = url::Url::parse(input.trim()).map_err(|e| bad(&e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment allowed"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
            return Err(bad(
                "no user, password or port allowed; credentials come from AWS_* variables",
            ));
        }
        match url.scheme() {
            "file" => {
                if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
                    return Err(bad("a file URL needs an absolute path: file:///path"));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("a file URL needs an absolute path: file:///path"))?;
                Ok(StorageUrl::File(path))
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_owned();
                if !valid_bucket(&bucket) {
                    return Err(bad(
                        "bucket names are 3-63 characters of a-z, 0-9, '.' and '-'",
                    ));
                }
                // The URL parser resolves `..`; the raw text must not have it in the first place.
                let raw_path = input.trim().splitn(4, '/').nth(3).unwrap_or_default();
                if raw_path.split('/').any(|seg| seg == "." || seg == "..") {
                    return Err(bad("no '.' or '..' segments in the prefix"));
                }
                let prefix = url.path().trim_matches('/').to_owned();
                let ok = prefix.is_empty()
                    || prefix.split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
                            })
                    });
                if !ok || prefix.len() > 200 {
                    return Err(bad(
                        "the prefix must be plain path segments of A-Z, a-z, 0-9, '.', '_' and '-'",
                    ));
                }
                Ok(StorageUrl::S3 { bucket, prefix })
            }
            other => Err(bad(&format!("unsupported scheme {other:?}"))),
        }
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::File(path) => write!(f, "file://{}", path.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
}

/// S3 connection settings, normally from the standard `AWS_*` variables
/// ([`S3Options::from_env`]); tests fill them in directly.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`: an S3-compatible endpoint; `None` is AWS.
    pub endpoint: Option<String>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// `AWS_ALLOW_HTTP`: allow an `http://` endpoint.
    pub allow_http: bool,
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`; `None` picks the default (see the module docs).
    pub virtual_hosted: Option<bool>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted", &self.virtual_hosted)
            .finish()
    }
}

impl S3Options {
    /// Reads the standard variables from the process environment.
    pub fn from_env() -> Result<Self, StorageError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the standard variables through `get` (a name → value lookup); empty values count
    /// as unset. A boolean that is not `true`/`false`/`1`/`0` is a [`StorageError::Config`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, StorageError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &str| -> Result<Option<bool>, StorageError> {
            match var(name).map(|v| v.to_ascii_lowercase()) {
                None => Ok(None),
                Some(v) if v == "true" || v == "1" => Ok(Some(true)),
                Some(v) if v == "false" || v == "0" => Ok(Some(false)),
                Some(v) => Err(StorageError::config(format!(
                    "{name}={v:?}: expected true or false"
                ))),
            }
        };
        Ok(Self {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            allow_http: flag("AWS_ALLOW_HTTP")?.unwrap_or(false),
            virtual_hosted: flag("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls() {
        assert_eq!(
            StorageUrl::parse("file:///var/lib/jobpulse/media").expect("valid"),
            StorageUrl::File(PathBuf::from("/var/lib/jobpulse/media"))
        );
        assert_eq!(
            StorageUrl::parse("s3://media-bucket/prod/jp/").expect("valid"),
            StorageUrl::S3 {
                bucket: "media-bucket".into(),
                prefix: "prod/jp".into()
            }
        );
        assert_eq!(
            StorageUrl::parse("s3://media-bucket")
                .expect("valid")
                .to_string(),
            "s3://media-bucket"
        );
        for bad in [
            "",
            "media",
            "/var/media",
            "file://relative/dir",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://bucket/../x",
            "s3://bucket/a b",
            "s3://key:secret@bucket",
            "s3://bucket?region=x",
            "gs://bucket",
            "https://bucket.s3.amazonaws.com",
        ] {
            let err = StorageUrl::parse(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .contains("file:///absolute/path or s3://bucket"),
                "{bad}: {err}"
            );
        }
    }
}
