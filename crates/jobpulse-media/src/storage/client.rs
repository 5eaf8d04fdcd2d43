//! Building the `object_store` S3 client from [`S3Options`]: region and addressing defaults
//! (R2 → `auto`; virtual-hosted on AWS, path style with an endpoint), and refusing up front the
//! settings that could only fail later.

use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::{AmazonS3, AmazonS3Builder};

use super::StorageError;
use super::config::S3Options;

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
    use crate::storage::StorageError;
    use crate::storage::config::S3Options;

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
