//! A fresh bucket per test on the S3-compatible server `scripts/test` starts
//! (`scripts/s3-test-server`: moto, with the presigned-URL checks of real S3), found through
//! `JOBPULSE_TEST_S3_ENDPOINT`. A missing server fails the test with instructions; it does not
//! skip it.

use crate::{MediaStorage, S3Options, StorageUrl};

/// The variable naming the test server, e.g. `http://127.0.0.1:41234`.
pub const ENDPOINT_ENV: &str = "JOBPULSE_TEST_S3_ENDPOINT";

/// Connection settings for the test server (credentials from `JOBPULSE_TEST_S3_ACCESS_KEY` /
/// `JOBPULSE_TEST_S3_SECRET_KEY`, defaulting to the server's).
pub fn options() -> S3Options {
    let endpoint = std::env::var(ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{ENDPOINT_ENV} is not set: these tests need the S3 test server; run them through \
             scripts/test, or `eval $(scripts/s3-test-server start)` and export {ENDPOINT_ENV}"
            )
        });
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".to_owned()),
        access_key_id: Some(var("JOBPULSE_TEST_S3_ACCESS_KEY", "jobpulse-test")),
        secret_access_key: Some(var("JOBPULSE_TEST_S3_SECRET_KEY", "jobpulse-test-secret")),
        session_token: None,
        allow_http: true,
        virtual_hosted: Some(false),
    }
}

/// A new, empty bucket (`jpt-` + random hex); returns its name.
pub async fn fresh_bucket() -> String {
    let bucket = format!("jpt-{}", &crate::storage::random_token()[..20]);
    let storage = MediaStorage::open(
        &StorageUrl::S3 {
            bucket: bucket.clone(),
            prefix: String::new(),
        },
        &options(),
    )
    .expect("test S3 storage");
    storage
        .create_bucket()
        .await
        .expect("creating a test bucket");
    bucket
}

/// Storage on a new bucket, keys under `prefix` (`""` for none).
pub async fn fresh_storage(prefix: &str) -> MediaStorage {
    let bucket = fresh_bucket().await;
    MediaStorage::open(
        &StorageUrl::S3 {
            bucket,
            prefix: prefix.to_owned(),
        },
        &options(),
    )
    .expect("test S3 storage")
}
