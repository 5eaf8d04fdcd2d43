//! [`MediaStorage::check`], behind `jobpulse storage check`: can we write, read and delete, and
//! on S3, does the bucket's CORS configuration let the front end's origins upload and play?
//!
//! The CORS rules are evaluated as S3 evaluates a browser request: for each origin and each of
//! `PUT` (with a `Content-Type` header), `GET` and `HEAD`, the first rule whose origin pattern
//! and method match (and, for `PUT`, whose allowed headers cover `Content-Type`) decides; the
//! rule deciding `PUT` must expose `ETag` (the front end reads each part's ETag). When anything
//! is missing the report carries the rule to set, as JSON for
//! `aws s3api put-bucket-cors --bucket B --cors-configuration file://cors.json` (R2 and MinIO
//! take the same rule through their S3 API or dashboards).

use std::fmt;

use bytes::Bytes;
use futures::StreamExt;

use super::s3::CorsRuleXml;
use super::{MediaStorage, StorageError};
use crate::keys::storage_probe_key;

/// The outcome of [`MediaStorage::check`].
#[derive(Debug)]
pub struct StorageCheck {
    /// [`MediaStorage::describe`].
    pub location: String,
    /// Writing, reading back and deleting a probe object: `Err` says which step failed.
    pub access: Result<(), String>,
    /// The bucket's CORS configuration against the origins given.
    pub cors: CorsCheck,
}

/// The CORS part of a [`StorageCheck`].
#[derive(Debug, PartialEq, Eq)]
pub enum CorsCheck {
    /// File storage: the browser talks to jobpulse itself, whose CORS is configured there.
    NotApplicable,
    /// Every origin may PUT, GET and HEAD, with `ETag` exposed.
    Ok,
    /// Something is missing: what, and the rule to set (JSON).
    Missing {
        /// One line per gap, e.g. `no rule allows PUT from https://app.example`.
        problems: Vec<String>,
        /// [`suggested_cors_rule`] for the origins checked.
        rule_json: String,
    },
    /// The configuration could not be read (permissions, network).
    Unreadable(String),
}

impl StorageCheck {
    /// True when access works and CORS is fine or not applicable.
    pub fn is_ok(&self) -> bool {
        self.access.is_ok() && matches!(self.cors, CorsCheck::Ok | CorsCheck::NotApplicable)
    }
}

impl fmt::Display for StorageCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "storage: {}", self.location)?;
        match &self.access {
            Ok(()) => writeln!(
                f,
                "access: ok (wrote, read back and deleted a probe object)"
            )?,
            Err(e) => writeln!(f, "access: FAILED: {e}")?,
        }
        match &self.cors {
            CorsCheck::NotApplicable => {
                writeln!(
                    f,
                    "cors: not needed (file storage: browsers upload to jobpulse itself)"
                )
            }
            CorsCheck::Ok => writeln!(f, "cors: ok (PUT, GET, HEAD allowed, ETag exposed)"),
            CorsCheck::Unreadable(e) => writeln!(
                f,
                "cors: could not read the bucket's CORS configuration: {e}"
            ),
            CorsCheck::Missing {
                problems,
                rule_json,
            } => {
                writeln!(f, "cors: MISSING")?;
                for p in problems {
                    writeln!(f, "  - {p}")?;
                }
                writeln!(
                    f,
                    "set this rule (aws s3api put-bucket-cors --bucket BUCKET --cors-configuration file://cors.json):"
                )?;
                writeln!(f, "{rule_json}")
            }
        }
    }
}

/// The CORS configuration jobpulse needs for `origins` (`["*"]` when empty), as
/// `aws s3api put-bucket-cors` takes it.
pub fn suggested_cors_rule(origins: &[String]) -> String {
    let origins: Vec<&str> = if origins.is_empty() {
        vec!["*"]
    } else {
        origins.iter().map(String::as_str).collect()
    };
    let rule = serde_json::json!({
        "CORSRules": [{
            "AllowedOrigins": origins,
            "AllowedMethods": ["GET", "HEAD", "PUT"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3600
        }]
    });
    serde_json::to_string_pretty(&rule).unwrap_or_default()
}

/// `pattern` (at most one `*`, case-sensitive as S3 compares origins) matches `value`.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

fn allows_header(rule: &CorsRuleXml, header: &str) -> bool {
    rule.allowed_headers
        .iter()
        .any(|h| wildcard(&h.to_ascii_lowercase(), header))
}

/// The gaps in `rules` for `origins` (`*` stands for "any origin" when `origins` is empty).
pub(super) fn cors_problems(rules: &[CorsRuleXml], origins: &[String]) -> Vec<String> {
    let any = ["*".to_owned()];
    let origins = if origins.is_empty() {
        &any[..]
    } else {
        origins
    };
    let mut problems = Vec::new();
    for origin in origins {
        for method in ["PUT", "GET", "HEAD"] {
            let rule = rules.iter().find(|r| {
                r.allowed_origins.iter().any(|o| {
                    if origin == "*" {
                        o == "*"
                    } else {
                        wildcard(o, origin)
                    }
                }) && r.allowed_methods.iter().any(|m| m == method)
                    && (method != "PUT" || allows_header(r, "content-type"))
            });
            match rule {
                None if method == "PUT" => problems.push(format!(
                    "no rule allows PUT with a Content-Type header from {origin}"
                )),
                None => problems.push(format!("no rule allows {method} from {origin}")),
                Some(r) if method == "PUT" && !r.expose_headers.iter().any(|h| h.eq_ignore_ascii_case("etag")) => {
                    problems.push(format!(
                        "the rule allowing PUT from {origin} does not expose ETag (the front end reads it after each part)"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

impl MediaStorage {
    /// Verifies access (write, read back, delete a probe object under `jobpulse-check/`) and,
    /// on S3, the bucket's CORS rules for the browser `origins` (empty: any origin). Never
    /// fails: every problem is in the report.
    pub async fn check(&self, origins: &[String]) -> StorageCheck {
        let access = self.probe().await;
        let cors = match &self.s3 {
            None => CorsCheck::NotApplicable,
            Some(s3) => match s3.get_cors().await {
                Err(e) => CorsCheck::Unreadable(e.to_string()),
                Ok(rules) => {
                    let problems = match rules {
                        None => vec!["the bucket has no CORS configuration".to_owned()],
                        Some(rules) => cors_problems(&rules, origins),
                    };
                    if problems.is_empty() {
                        CorsCheck::Ok
                    } else {
                        CorsCheck::Missing {
                            problems,
                            rule_json: suggested_cors_rule(origins),
                        }
                    }
                }
            },
        };
        StorageCheck {
            location: self.describe().to_owned(),
            access,
            cors,
        }
    }

    async fn probe(&self) -> Result<(), String> {
        let token = super::random_token();
        let key = storage_probe_key(&token);
        let payload = Bytes::from(format!("jobpulse storage check {token}\n"));
        let body = futures::stream::iter([Ok::<_, std::io::Error>(payload.clone())]);
        self.put_stream(&key, body, 1024)
            .await
            .map_err(|e| format!("writing {key}: {e}"))?;
        let read = async {
            let mut object = self.get_stream(&key).await?;
            let mut got = Vec::new();
            while let Some(chunk) = object.stream.next().await {
                got.extend_from_slice(&chunk?);
            }
            Ok::<_, StorageError>(got)
        }
        .await;
        let deleted = self.delete(&key).await;
        match read {
            Err(e) => return Err(format!("reading {key} back: {e}")),
            Ok(got) if got != payload.as_ref() => {
                return Err(format!("reading {key} back gave other bytes"));
            }
            Ok(_) => {}
        }
        deleted.map_err(|e| format!("deleting {key}: {e}"))?;
        match self.exists(&key).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(format!("{key} is still there after deleting it")),
            Err(e) => Err(format!("checking {key} is gone: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str], expose: &[&str]) -> CorsRuleXml {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        CorsRuleXml {
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
            expose_headers: v(expose),
            max_age_seconds: None,
        }
    }

    #[test]
    fn cors_rules_are_evaluated_like_s3() {
        let app = vec!["https://app.example".to_owned()];
        let good = rule(
            &["https://app.example"],
            &["GET", "PUT", "HEAD"],
            &["*"],
            &["ETag"],
        );
        assert!(cors_problems(std::slice::from_ref(&good), &app).is_empty());
        let wild = rule(
            &["https://*.example"],
            &["GET", "PUT", "HEAD"],
            &["Content-Type"],
            &["etag"],
        );
        assert!(cors_problems(&[wild], &app).is_empty());
        // Any origin needs a "*" rule.
        assert_eq!(cors_problems(std::slice::from_ref(&good), &[]).len(), 3);
        assert!(
            cors_problems(
                &[rule(&["*"], &["GET", "PUT", "HEAD"], &["*"], &["ETag"])],
                &[]
            )
            .is_empty()
        );

        let no_expose = rule(
            &["https://app.example"],
            &["GET", "PUT", "HEAD"],
            &["*"],
            &[],
        );
        let p = cors_problems(&[no_expose], &app);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("does not expose ETag"));

        let no_headers = rule(
            &["https://app.example"],
            &["GET", "PUT", "HEAD"],
            &[],
            &["ETag"],
        );
        let p = cors_problems(&[no_headers], &app);
        assert_eq!(
            p,
            ["no rule allows PUT with a Content-Type header from https://app.example"]
        );

        let get_only = rule(&["https://app.example"], &["GET"], &["*"], &["ETag"]);
        let p = cors_problems(&[get_only], &app);
        assert_eq!(p.len(), 2, "{p:?}");
        // The first matching rule decides, as on S3.
        let first = rule(&["https://app.example"], &["PUT"], &["*"], &[]);
        let p = cors_problems(&[first, good], &app);
        assert!(p[0].contains("does not expose ETag"), "{p:?}");

        let other = rule(
            &["https://other.example"],
            &["GET", "PUT", "HEAD"],
            &["*"],
            &["ETag"],
        );
        assert_eq!(cors_problems(&[other], &app).len(), 3);

        let json: serde_json::Value =
            serde_json::from_str(&suggested_cors_rule(&app)).expect("json");
        assert_eq!(
            json["CORSRules"][0]["AllowedOrigins"][0],
            "https://app.example"
        );
        assert_eq!(json["CORSRules"][0]["ExposeHeaders"][0], "ETag");
    }
}
