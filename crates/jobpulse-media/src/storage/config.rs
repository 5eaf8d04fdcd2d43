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
use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::{AmazonS3, AmazonS3Builder};

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

/// What [`build_s3`] settled on, for signing and for messages.
#[derive(Debug, Clone)]
pub(crate) struct S3Resolved {
    pub region: String,
    /// The endpoint requests go to, bucket included for virtual-hosted addressing.
    pub bucket_endpoint: String,
}

/// Builds the `object_store` S3 client for `bucket` from `opts`, refusing settings that could
/// only fail later (an `http://` endpoint without `AWS_ALLOW_HTTP`, half a key pair, an endpoint
/// without keys).
pub(crate) fn build_s3(
    bucket: &str,
    opts: &S3Options,
) -> Result<(AmazonS3, S3Resolved), StorageError> {
    let endpoint = match &opts.endpoint {
        None => None,
        Some(raw) => {
            let url = url::Url::parse(raw).map_err(|e| {
                StorageError::config(format!("AWS_ENDPOINT_URL={raw:?} is not a URL: {e}"))
            })?;
            match url.scheme() {
                "https" => {}
                "http" if opts.allow_http => {}
                "http" => {
                    return Err(StorageError::config(format!(
                        "AWS_ENDPOINT_URL={raw:?} is plain http; set AWS_ALLOW_HTTP=true to allow it"
                    )));
                }
                other => {
                    return Err(StorageError::config(format!(
                        "AWS_ENDPOINT_URL={raw:?}: unsupported scheme {other:?}"
                    )));
                }
            }
            if url.host_str().is_none() || url.query().is_some() {
                return Err(StorageError::config(format!(
                    "AWS_ENDPOINT_URL={raw:?} needs a host and no query"
                )));
            }
            Some(url)
        }
    };
    let r2 = endpoint
        .as_ref()
        .and_then(|u| u.host_str())
        .is_some_and(|h| h.ends_with(".r2.cloudflarestorage.com"));
    let region = opts
        .region
        .clone()
        .unwrap_or_else(|| if r2 { "auto" } else { "us-east-1" }.to_owned());
    let virtual_hosted = opts
        .virtual_hosted
        .unwrap_or(endpoint.is_none() && !bucket.contains('.'));

    let keys = (&opts.access_key_id, &opts.secret_access_key);
    let mut builder = match keys {
        (Some(id), Some(secret)) => {
            let b = AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            match &opts.session_token {
                Some(token) => b.with_token(token),
                None => b,
            }
        }
        (None, None) if endpoint.is_some() => {
            return Err(StorageError::config(
                "an S3-compatible endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        // On AWS without keys: whatever else the environment offers (web identity, container
        // or instance credentials), as the AWS tools do.
        (None, None) => AmazonS3Builder::from_env(),
        _ => {
            return Err(StorageError::config(
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
            ));
        }
    };
    builder = builder
        .with_bucket_name(bucket)
        .with_region(&region)
        .with_allow_http(opts.allow_http)
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(opts.allow_http)
                .with_connect_timeout(Duration::from_secs(10))
                // Parts of 100 MiB on a slow link: generous, but bounded.
                .with_timeout(Duration::from_secs(600)),
        );
    let bucket_endpoint = match (&endpoint, virtual_hosted) {
        (Some(url), false) => format!("{}/{bucket}", url.as_str().trim_end_matches('/')),
        (Some(url), true) => {
            // object_store expects the bucket already in a virtual-hosted endpoint.
            let mut url = url.clone();
            let host = url.host_str().unwrap_or_default().to_owned();
            if !host.starts_with(&format!("{bucket}.")) {
                url.set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|e| {
                        StorageError::config(format!("virtual-hosted endpoint for {bucket}: {e}"))
                    })?;
            }
            url.as_str().trim_end_matches('/').to_owned()
        }
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    if let Some(url) = &endpoint {
        let configured = if virtual_hosted {
            bucket_endpoint.clone()
        } else {
            url.as_str().trim_end_matches('/').to_owned()
        };
        builder = builder.with_endpoint(configured);
    }
    let s3 = builder
        .build()
        .map_err(|e| StorageError::config(format!("S3 client for bucket {bucket}: {e}")))?;
    Ok((
        s3,
        S3Resolved {
            region,
            bucket_endpoint,
        },
    ))
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

    fn env(pairs: &[(&str, &str)]) -> Result<S3Options, StorageError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3Options::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn environment_and_addressing() {
        let o = env(&[
            ("AWS_ENDPOINT_URL", "https://acc.r2.cloudflarestorage.com"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ])
        .expect("env");
        assert!(!format!("{o:?}").contains("secret\""), "{o:?}");
        let (_, r) = build_s3("media", &o).expect("r2");
        assert_eq!(r.region, "auto");
        assert_eq!(
            r.bucket_endpoint,
            "https://acc.r2.cloudflarestorage.com/media"
        );

        let o = env(&[
            ("AWS_ENDPOINT_URL", "https://minio.example:9000"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-1"),
        ])
        .expect("env");
        let (_, r) = build_s3("media", &o).expect("virtual hosted");
        assert_eq!(r.bucket_endpoint, "https://media.minio.example:9000");
        assert_eq!(r.region, "eu-1");

        let o = env(&[("AWS_REGION", "ap-northeast-2")]).expect("env");
        let (_, r) = build_s3("media", &o).expect("aws");
        assert_eq!(
            r.bucket_endpoint,
            "https://media.s3.ap-northeast-2.amazonaws.com"
        );
        let (_, r) = build_s3("my.media", &o).expect("aws, dotted");
        assert_eq!(
            r.bucket_endpoint,
            "https://s3.ap-northeast-2.amazonaws.com/my.media"
        );
    }

    #[test]
    fn unusable_settings_are_refused_up_front() {
        let keys = [("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "s")];
        let http = [&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")][..], &keys].concat();
        let err = build_s3("media", &env(&http).expect("env")).expect_err("http");
        assert!(err.to_string().contains("AWS_ALLOW_HTTP=true"), "{err}");
        let allowed = [&http[..], &[("AWS_ALLOW_HTTP", "true")]].concat();
        let (_, r) = build_s3("media", &env(&allowed).expect("env")).expect("allowed");
        assert_eq!(r.bucket_endpoint, "http://127.0.0.1:9000/media");

        let err = build_s3(
            "media",
            &env(&[("AWS_ENDPOINT_URL", "https://x.example")]).expect("env"),
        )
        .expect_err("no keys");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let err = build_s3("media", &env(&[("AWS_ACCESS_KEY_ID", "id")]).expect("env"))
            .expect_err("half a key pair");
        assert!(err.to_string().contains("both"), "{err}");
        let err = env(&[("AWS_ALLOW_HTTP", "yes please")]).expect_err("bad flag");
        assert!(err.to_string().contains("AWS_ALLOW_HTTP"), "{err}");
    }
}
