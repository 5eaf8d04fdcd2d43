//! The storage check: access (a probe object written, read back and deleted) and, on S3, the
//! bucket's CORS rule for the front end's origins — read from the test server, which stores and
//! serves bucket CORS as S3 does.

use jobpulse_media::testing::s3::{fresh_storage, options};
use jobpulse_media::{CorsCheck, MediaStorage, StorageUrl};

use crate::helpers::Store;

const ORIGIN: &str = "https://app.example";

fn cors_xml(origin: &str, methods: &[&str], expose_etag: bool) -> String {
    let methods: String = methods
        .iter()
        .map(|m| format!("<AllowedMethod>{m}</AllowedMethod>"))
        .collect();
    let expose = if expose_etag {
        "<ExposeHeader>ETag</ExposeHeader>"
    } else {
        ""
    };
    format!(
        "<CORSConfiguration><CORSRule><AllowedOrigin>{origin}</AllowedOrigin>{methods}\
         <AllowedHeader>*</AllowedHeader>{expose}<MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule>\
         </CORSConfiguration>"
    )
}

#[tokio::test]
async fn file_storage_needs_no_cors_and_its_access_is_checked() {
    let store = Store::file();
    let report = store.storage.check(&[ORIGIN.to_owned()]).await;
    assert_eq!(report.access, Ok(()));
    assert_eq!(report.cors, CorsCheck::NotApplicable);
    assert!(report.is_ok());
    assert!(report.to_string().contains("access: ok"), "{report}");
    assert_eq!(
        store.files(),
        Vec::<std::path::PathBuf>::new(),
        "the probe is deleted"
    );
}

#[tokio::test]
async fn s3_without_a_cors_rule_gets_the_rule_to_set() {
    let storage = fresh_storage("").await;
    let report = storage.check(&[ORIGIN.to_owned()]).await;
    assert_eq!(report.access, Ok(()));
    let CorsCheck::Missing {
        problems,
        rule_json,
    } = &report.cors
    else {
        panic!("{report:?}");
    };
    assert_eq!(problems, &["the bucket has no CORS configuration"]);
    let rule: serde_json::Value = serde_json::from_str(rule_json).expect("json");
    assert_eq!(
        rule["CORSRules"][0]["AllowedOrigins"],
        serde_json::json!([ORIGIN])
    );
    assert!(!report.is_ok());
    let text = report.to_string();
    assert!(
        text.contains("put-bucket-cors") && text.contains("ExposeHeaders"),
        "{text}"
    );
    assert_eq!(storage.list_multipart_uploads().await.expect("list"), []);
}

#[tokio::test]
async fn s3_cors_rules_are_read_and_judged() {
    let storage = fresh_storage("media").await;
    storage
        .put_bucket_cors(&cors_xml(ORIGIN, &["GET", "PUT", "HEAD"], true))
        .await
        .expect("set cors");
    let report = storage.check(&[ORIGIN.to_owned()]).await;
    assert_eq!(
        (report.access.clone(), &report.cors),
        (Ok(()), &CorsCheck::Ok),
        "{report}"
    );
    assert!(report.is_ok());

    // Another origin, or the same one without ETag exposed or without PUT: missing.
    let other = storage.check(&["https://other.example".to_owned()]).await;
    assert!(
        matches!(other.cors, CorsCheck::Missing { ref problems, .. } if problems.len() == 3),
        "{other}"
    );
    storage
        .put_bucket_cors(&cors_xml(ORIGIN, &["GET", "PUT", "HEAD"], false))
        .await
        .expect("set cors");
    let report = storage.check(&[ORIGIN.to_owned()]).await;
    let CorsCheck::Missing { problems, .. } = &report.cors else {
        panic!("{report}");
    };
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("does not expose ETag"), "{problems:?}");
    storage
        .put_bucket_cors(&cors_xml(ORIGIN, &["GET", "HEAD"], true))
        .await
        .expect("set cors");
    let report = storage.check(&[ORIGIN.to_owned()]).await;
    assert!(
        matches!(&report.cors, CorsCheck::Missing { problems, .. } if problems[0].contains("PUT")),
        "{report}"
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_the_check_with_reasons() {
    let storage = MediaStorage::open(
        &StorageUrl::parse("s3://jpt-no-such-bucket-here").expect("url"),
        &options(),
    )
    .expect("open");
    let report = storage.check(&[]).await;
    assert!(report.access.is_err(), "{report}");
    assert!(matches!(report.cors, CorsCheck::Unreadable(_)), "{report}");
    assert!(!report.is_ok());
    assert!(report.to_string().contains("access: FAILED"), "{report}");
}
