//! The S3 side of [`crate::MediaStorage`]: the raw `object_store` client (for presigning and
//! the low-level multipart calls, which its prefixed `ObjectStore` view does not offer), the key
//! prefix, and the two bucket requests `object_store` does not make — reading the bucket's CORS
//! configuration (`GET ?cors`) and listing unfinished multipart uploads (`GET ?uploads`) — sent
//! as SigV4-presigned requests with `object_store`'s own signer.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use serde::Deserialize;
use url::Url;

use super::StorageError;
use super::client::S3Resolved;
use crate::keys::{KeyError, StorageKey};

/// How long the presigned bucket requests this module sends itself stay valid.
const INTERNAL_EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct S3Backend {
    pub s3: Arc<AmazonS3>,
    pub bucket: String,
    /// `""` or `prefix` (no slashes at the ends).
    pub prefix: String,
    pub resolved: S3Resolved,
    http: reqwest::Client,
}

impl S3Backend {
    pub fn new(s3: AmazonS3, bucket: String, prefix: String, resolved: S3Resolved) -> Self {
        Self {
            s3: Arc::new(s3),
            bucket,
            prefix,
            resolved,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The full object path of `key` in the bucket (prefix included).
    pub fn path(&self, key: &StorageKey) -> Result<ObjectPath, StorageError> {
        let full = if self.prefix.is_empty() {
            key.as_str().to_owned()
        } else {
            format!("{}/{}", self.prefix, key.as_str())
        };
        ObjectPath::parse(&full).map_err(|_| StorageError::Key(KeyError(key.to_string())))
    }

    /// The key of a full bucket path, when it lies under our prefix and is a valid key.
    pub fn key_of(&self, full: &str) -> Option<StorageKey> {
        let rel = if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        StorageKey::parse(rel).ok()
    }

    /// A presigned URL for `method` on `key`, with extra signed query parameters.
    pub async fn sign(
        &self,
        method: Method,
        key: &StorageKey,
        expires: Duration,
        query: &[(&str, &str)],
    ) -> Result<Url, StorageError> {
        let path = self.path(key)?;
        let opts = SignedUrlOptions::new().with_query(query.iter().copied());
        self.s3
            .signed_url_opts(method, &path, expires, &opts)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))
    }

    /// A presigned PUT of `key` whose signature covers `Content-Type: content_type`.
    pub async fn sign_with_content_type(
        &self,
        key: &StorageKey,
        expires: Duration,
        content_type: &str,
    ) -> Result<Url, StorageError> {
        let plain = !content_type.is_empty()
            && content_type.len() <= 200
            && content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
        let value = http::HeaderValue::from_str(content_type)
            .ok()
            .filter(|_| plain)
            .ok_or_else(|| {
                StorageError::Invalid(format!(
                    "content type {content_type:?} is not a plain header value"
                ))
            })?;
        let path = self.path(key)?;
        let opts = SignedUrlOptions::new().with_signed_header(http::header::CONTENT_TYPE, value);
        self.s3
            .signed_url_opts(Method::PUT, &path, expires, &opts)
            .await
            .map_err(|e| StorageError::backend(key.as_str(), e))
    }

    /// A presigned URL for a bucket-level request (`/?cors`, `/?uploads`, bucket creation).
    pub async fn sign_bucket(
        &self,
        method: Method,
        query: &[(&str, &str)],
    ) -> Result<Url, StorageError> {
        let opts = SignedUrlOptions::new().with_query(query.iter().copied());
        self.s3
            .signed_url_opts(method, &ObjectPath::default(), INTERNAL_EXPIRY, &opts)
            .await
            .map_err(StorageError::Backend)
    }

    /// Sends a presigned bucket request; `Ok(None)` for a 404 whose S3 error code is
    /// `not_found_code`.
    async fn bucket_request(
        &self,
        method: Method,
        query: &[(&str, &str)],
        body: Option<RequestBody>,
        not_found_code: Option<&str>,
    ) -> Result<Option<String>, StorageError> {
        let url = self.sign_bucket(method.clone(), query).await?;
        let mut req = self.http.request(method, url);
        let (bytes, headers) = body.unwrap_or_default();
        for (name, value) in headers {
            req = req.header(name, value);
        }
        // S3 wants a length even on a bodiless PUT; hyper leaves `Content-Length: 0` out.
        req = req
            .header(http::header::CONTENT_LENGTH, bytes.len())
            .body(bytes);
        let what = query.first().map(|(k, _)| *k).unwrap_or("bucket");
        let resp = req.send().await.map_err(|e| {
            StorageError::S3(format!("{what} request to bucket {}: {e}", self.bucket))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(Some(text));
        }
        let code = error_code(&text);
        if status == reqwest::StatusCode::NOT_FOUND
            && not_found_code.is_some()
            && code.as_deref() == not_found_code
        {
            return Ok(None);
        }
        Err(StorageError::S3(format!(
            "{what} request to bucket {} answered {status}{}",
            self.bucket,
            code.map(|c| format!(" ({c})")).unwrap_or_default()
        )))
    }

    /// The bucket's CORS rules; `None` when it has no CORS configuration.
    pub async fn get_cors(&self) -> Result<Option<Vec<CorsRuleXml>>, StorageError> {
        let Some(xml) = self
            .bucket_request(
                Method::GET,
                &[("cors", "")],
                None,
                Some("NoSuchCORSConfiguration"),
            )
            .await?
        else {
            return Ok(None);
        };
        let parsed: CorsConfigurationXml = quick_xml::de::from_str(&xml).map_err(|e| {
            StorageError::S3(format!(
                "unreadable CORS configuration of {}: {e}",
                self.bucket
            ))
        })?;
        Ok(Some(parsed.rules))
    }

    /// Sets the bucket's CORS configuration (tests; operators use their provider's tools).
    #[cfg(feature = "testing")]
    pub async fn put_cors_xml(&self, xml: String) -> Result<(), StorageError> {
        use base64::Engine as _;
        use md5::Digest as _;
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(xml.as_bytes()));
        let headers = vec![
            ("content-md5", md5),
            ("content-type", "application/xml".to_owned()),
        ];
        self.bucket_request(
            Method::PUT,
            &[("cors", "")],
            Some((xml.into_bytes(), headers)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Creates the bucket (tests).
    #[cfg(feature = "testing")]
    pub async fn create_bucket(&self) -> Result<(), StorageError> {
        self.bucket_request(Method::PUT, &[], None, None)
            .await
            .map(|_| ())
    }

    /// Every unfinished multipart upload under our prefix: (full key, upload id, initiated).
    pub async fn list_uploads(&self) -> Result<Vec<UploadXml>, StorageError> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        let mut all = Vec::new();
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if !key_marker.is_empty() {
                query.push(("key-marker", key_marker.as_str()));
                query.push(("upload-id-marker", id_marker.as_str()));
            }
            let xml = self
                .bucket_request(Method::GET, &query, None, None)
                .await?
                .unwrap_or_default();
            let page: ListUploadsXml = quick_xml::de::from_str(&xml).map_err(|e| {
                StorageError::S3(format!("unreadable upload listing of {}: {e}", self.bucket))
            })?;
            all.extend(page.uploads);
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(i))
                    if !k.is_empty() && (k != key_marker || i != id_marker) =>
                {
                    key_marker = k;
                    id_marker = i;
                }
                _ => return Ok(all),
            }
        }
    }
}

/// A request body and the headers that describe it.
type RequestBody = (Vec<u8>, Vec<(&'static str, String)>);

fn error_code(xml: &str) -> Option<String> {
    let start = xml.find("<Code>")? + "<Code>".len();
    let end = xml[start..].find("</Code>")? + start;
    Some(xml[start..end].to_owned())
}

/// One `<CORSRule>` of a bucket's CORS configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CorsRuleXml {
    /// `AllowedOrigin`s (at most one `*` each).
    #[serde(rename = "AllowedOrigin", default)]
    pub allowed_origins: Vec<String>,
    /// `AllowedMethod`s.
    #[serde(rename = "AllowedMethod", default)]
    pub allowed_methods: Vec<String>,
    /// `AllowedHeader`s (may contain `*`).
    #[serde(rename = "AllowedHeader", default)]
    pub allowed_headers: Vec<String>,
    /// `ExposeHeader`s.
    #[serde(rename = "ExposeHeader", default)]
    pub expose_headers: Vec<String>,
    /// `MaxAgeSeconds`.
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CorsConfigurationXml {
    #[serde(rename = "CORSRule", default)]
    rules: Vec<CorsRuleXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UploadXml {
    pub key: String,
    pub upload_id: String,
    pub initiated: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsXml {
    #[serde(rename = "Upload", default)]
    uploads: Vec<UploadXml>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_s3_answers() {
        let cors = r#"<?xml version="1.0" encoding="UTF-8"?>
<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule><AllowedHeader>*</AllowedHeader><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedOrigin>https://app.example</AllowedOrigin><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>"#;
        let parsed: CorsConfigurationXml = quick_xml::de::from_str(cors).expect("cors");
        assert_eq!(parsed.rules.len(), 2);
        assert_eq!(parsed.rules[0].allowed_methods, ["PUT", "GET"]);
        assert_eq!(parsed.rules[0].expose_headers, ["ETag"]);
        assert_eq!(parsed.rules[0].max_age_seconds, Some(3600));
        assert_eq!(parsed.rules[1].allowed_origins, ["*"]);
        assert!(parsed.rules[1].allowed_headers.is_empty());

        let list = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>p/k2</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated><Upload><Key>p/k1</Key><UploadId>id1</UploadId><Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass><Initiated>2026-01-02T03:04:05.000Z</Initiated></Upload><Upload><Key>p/k2</Key><UploadId>id2</UploadId><Initiated>2026-01-02T03:04:06.000Z</Initiated></Upload></ListMultipartUploadsResult>"#;
        let parsed: ListUploadsXml = quick_xml::de::from_str(list).expect("list");
        assert_eq!(parsed.uploads.len(), 2);
        assert_eq!(parsed.uploads[1].upload_id, "id2");
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_key_marker.as_deref(), Some("p/k2"));
        let empty: ListUploadsXml = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .expect("empty");
        assert!(empty.uploads.is_empty());
        assert_eq!(
            error_code("<Error><Code>NoSuchCORSConfiguration</Code></Error>").as_deref(),
            Some("NoSuchCORSConfiguration")
        );
    }
}
