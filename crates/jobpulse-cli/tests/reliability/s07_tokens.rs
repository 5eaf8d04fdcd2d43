//! Scenario 7 — the token matrix: forged, expired, misdirected and tampered tokens against every
//! route kind (progress, batch, SSE, ingest, media, jobs), on three servers: HS256 without
//! audience/issuer rules, HS256 requiring an audience and an issuer, and RS256 with a public key.
//!
//! Pass: every forged token is refused with 401 or 403 on every route (100 %), while the
//! matching valid tokens are accepted — so the matrix can fail.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::figure;
use crate::harness::http::Api;
use crate::harness::{Cluster, SECRET};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims of a valid browser token of tenant `t`.
fn claims(t: i64) -> Value {
    json!({"exp": now() + 3600, "iat": now(), "token_type": "access", "tenant_id": t,
           "user_id": "7", "role": "owner"})
}

fn with(mut base: Value, patch: Value) -> Value {
    let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
        return base;
    };
    for (k, v) in p {
        if v.is_null() {
            b.remove(k);
        } else {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("encodes")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("a non-empty secret"),
        claims,
    )
}

/// A token with an arbitrary header and payload and the given signature part.
fn raw(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// Replaces a signed token's payload, keeping its header and signature.
fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    )
}

/// What a route needs: method, path, body, and which audience it belongs to.
struct Route {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    worker: bool,
}

fn routes() -> Vec<Route> {
    let ingest = json!({"fence": {"generation": 1, "attempt": 1, "seq": 2},
                        "status": "PROCESSING", "percent": 10});
    vec![
        Route {
            name: "video progress",
            method: "GET",
            path: "/api/v1/media/videos/1/progress/",
            body: None,
            worker: false,
        },
        Route {
            name: "job progress",
            method: "GET",
            path: "/api/v1/jobs/abc/progress/",
            body: None,
            worker: false,
        },
        Route {
            name: "batch",
            method: "GET",
            path: "/api/v1/progress/?videos=1,2&jobs=abc",
            body: None,
            worker: false,
        },
        Route {
            name: "batch post",
            method: "POST",
            path: "/api/v1/progress/",
            body: Some(json!({"videos": [1]})),
            worker: false,
        },
        Route {
            name: "sse",
            method: "GET",
            path: "/api/v1/progress/stream?videos=1",
            body: None,
            worker: false,
        },
        Route {
            name: "media list",
            method: "GET",
            path: "/api/v1/media/videos/",
            body: None,
            worker: false,
        },
        Route {
            name: "media detail",
            method: "GET",
            path: "/api/v1/media/videos/1/",
            body: None,
            worker: false,
        },
        Route {
            name: "jobs list",
            method: "GET",
            path: "/api/v1/jobs/",
            body: None,
            worker: false,
        },
        Route {
            name: "job submit",
            method: "POST",
            path: "/api/v1/jobs/",
            body: Some(json!({"job_type": "nothing_known"})),
            worker: false,
        },
        Route {
            name: "lectures",
            method: "GET",
            path: "/api/v1/lectures/",
            body: None,
            worker: false,
        },
        Route {
            name: "ingest progress",
            method: "POST",
            path: "/internal/v1/videos/1/progress",
            body: Some(ingest.clone()),
            worker: true,
        },
        Route {
            name: "ingest transition",
            method: "POST",
            path: "/internal/v1/jobs/abc/transition",
            body: Some(
                json!({"fence": {"generation": 1, "attempt": 1, "seq": 2}, "status": "RUNNING", "job_type": "excel_parsing"}),
            ),
            worker: true,
        },
        Route {
            name: "ingest heartbeat",
            method: "POST",
            path: "/internal/v1/videos/1/heartbeat",
            body: Some(json!({"fence": {"generation": 1, "attempt": 1, "seq": 2}})),
            worker: true,
        },
    ]
}

/// Sends `token` (and extra headers) to a route; the status.
async fn call(api: &Api, r: &Route, token: &str, headers: &[(&str, &str)]) -> anyhow::Result<u16> {
    let url = api.url(r.path);
    let mut req = match r.method {
        "GET" => api.client.get(&url),
        _ => api.client.post(&url),
    };
    req = req.header("Authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = &r.body {
        req = req.json(b);
    }
    // SSE answers stream forever when accepted: only the status matters.
    let res = req
        .send()
        .await
        .with_context(|| format!("{} {}", r.method, r.path))?;
    Ok(res.status().as_u16())
}

struct Tally {
    sent: usize,
    refused: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            sent: 0,
            refused: 0,
            failures: Vec::new(),
        }
    }

    /// Every route must refuse `token` (401 or 403).
    async fn refuse_everywhere(
        &mut self,
        api: &Api,
        case: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        for r in routes() {
            self.refuse(api, case, &r, token, headers).await?;
        }
        Ok(())
    }

    async fn refuse(
        &mut self,
        api: &Api,
        case: &str,
        r: &Route,
        token: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let status = call(api, r, token, headers).await?;
        self.sent += 1;
        if status == 401 || status == 403 {
            self.refused += 1;
        } else {
            self.failures
                .push(format!("{case} on {}: {status}", r.name));
        }
        Ok(())
    }
}

/// Valid tokens are accepted on their own routes (the control of the matrix).
async fn accepted(api: &Api, browser: &str, worker: &str) -> anyhow::Result<()> {
    for r in routes() {
        let token = if r.worker { worker } else { browser };
        let status = call(api, &r, token, &[]).await?;
        // Past authentication: anything but 401/403, and never a 5xx (a stale ingest write is
        // 409, a heartbeat for an unknown record 422, an unknown job type 422, a missing video
        // 404).
        let ok = status != 401 && status != 403 && status < 500;
        anyhow::ensure!(ok, "valid token refused on {}: {status}", r.name);
    }
    Ok(())
}

fn rsa_keys(dir: &std::path::Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let private = dir.join("rsa.pem");
    let public = dir.join("rsa.pub.pem");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        vec!["pkey", "-pubout", "-in"],
    ] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(&args);
        if args[0] == "genpkey" {
            cmd.arg(&private);
        } else {
            cmd.arg(&private).arg("-out").arg(&public);
        }
        let out = cmd
            .output()
            .context("openssl is needed to make an RSA key pair")?;
        anyhow::ensure!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((std::fs::read(&private)?, std::fs::read(&public)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_everywhere() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let t = c.tenant("acme").await?.tenant_id;
    let tid = t.get();
    let other = c.tenant("other").await?.tenant_id;
    let plain = c.serve(&[]).await?;
    let strict = c
        .serve(&[
            ("JOBPULSE_JWT_AUDIENCE", "academy"),
            ("JOBPULSE_JWT_ISSUER", "https://issuer.example"),
        ])
        .await?;
    let (private_pem, public_pem) = rsa_keys(c.dir.path())?;
    let pub_file = c.dir.path().join("rsa.pub.pem");
    let pub_path = pub_file.to_str().context("utf-8 path")?;
    let rsa = c
        .serve(&[
            ("JOBPULSE_JWT_PUBLIC_KEY", pub_path),
            ("JOBPULSE_JWT_ALGORITHM", "RS256"),
        ])
        .await?;
    let rs_key = EncodingKey::from_rsa_pem(&private_pem)?;

    // Controls: what each server accepts.
    let worker_claims = with(claims(tid), json!({"aud": "worker"}));
    accepted(&plain.api, &hs(&claims(tid)), &hs(&worker_claims)).await?;
    let strict_claims = with(
        claims(tid),
        json!({"aud": "academy", "iss": "https://issuer.example"}),
    );
    let strict_worker = with(
        worker_claims.clone(),
        json!({"iss": "https://issuer.example"}),
    );
    accepted(&strict.api, &hs(&strict_claims), &hs(&strict_worker)).await?;
    accepted(
        &rsa.api,
        &sign(Algorithm::RS256, &rs_key, &claims(tid)),
        &sign(Algorithm::RS256, &rs_key, &worker_claims),
    )
    .await?;

    let mut tally = Tally::new();
    let valid = hs(&claims(tid));
    let none_header = json!({"alg": "none", "typ": "JWT"});
    let mut cases: Vec<(String, &Api, String)> = vec![
        (
            "alg none, empty signature".into(),
            &plain.api,
            raw(&none_header, &claims(tid), ""),
        ),
        (
            "alg none, garbage signature".into(),
            &plain.api,
            raw(&none_header, &claims(tid), "AAAA"),
        ),
        (
            "alg None (case)".into(),
            &plain.api,
            raw(&json!({"alg": "None"}), &claims(tid), ""),
        ),
        (
            "HS256 signed with the RS256 public key".into(),
            &rsa.api,
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&public_pem).expect("a non-empty secret"),
                &claims(tid),
            ),
        ),
        (
            "HS256 token on the RS256 server".into(),
            &rsa.api,
            valid.clone(),
        ),
        (
            "RS256 token on the HS256 server".into(),
            &plain.api,
            sign(Algorithm::RS256, &rs_key, &claims(tid)),
        ),
        (
            "HS512 with the right secret".into(),
            &plain.api,
            sign(
                Algorithm::HS512,
                &EncodingKey::from_secret(SECRET.as_bytes()).expect("a non-empty secret"),
                &claims(tid),
            ),
        ),
        (
            "wrong secret".into(),
            &plain.api,
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-of-enough-length-000000")
                    .expect("a non-empty secret"),
                &claims(tid),
            ),
        ),
        (
            "expired an hour ago".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"exp": now() - 3600}))),
        ),
        (
            "expired beyond the leeway".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"exp": now() - 45}))),
        ),
        (
            "not valid for an hour".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"nbf": now() + 3600}))),
        ),
        (
            "no exp".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"exp": null}))),
        ),
        (
            "exp as a string".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"exp": "9999999999"}))),
        ),
        (
            "token_type refresh".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"token_type": "refresh"}))),
        ),
        (
            "no token_type".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"token_type": null}))),
        ),
        (
            "no tenant_id".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"tenant_id": null}))),
        ),
        (
            "tenant_id 0".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"tenant_id": 0}))),
        ),
        (
            "tenant_id -1".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"tenant_id": -1}))),
        ),
        (
            "tenant_id as a string".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"tenant_id": tid.to_string()}))),
        ),
        (
            "tenant_id beyond i64".into(),
            &plain.api,
            hs(&with(claims(tid), json!({"tenant_id": 1e30}))),
        ),
        (
            "tampered tenant".into(),
            &plain.api,
            tampered(
                &valid,
                &with(claims(tid), json!({"tenant_id": other.get()})),
            ),
        ),
        (
            "tampered role".into(),
            &plain.api,
            tampered(
                &valid,
                &with(claims(tid), json!({"role": "admin", "user_id": "8"})),
            ),
        ),
        (
            "tampered exp".into(),
            &plain.api,
            tampered(
                &hs(&with(claims(tid), json!({"exp": now() - 3600}))),
                &claims(tid),
            ),
        ),
        (
            "wrong audience".into(),
            &strict.api,
            hs(&with(strict_claims.clone(), json!({"aud": "another-app"}))),
        ),
        (
            "no audience".into(),
            &strict.api,
            hs(&with(strict_claims.clone(), json!({"aud": null}))),
        ),
        (
            "wrong issuer".into(),
            &strict.api,
            hs(&with(
                strict_claims.clone(),
                json!({"iss": "https://evil.example"}),
            )),
        ),
        (
            "no issuer".into(),
            &strict.api,
            hs(&with(strict_claims.clone(), json!({"iss": null}))),
        ),
        (
            "worker token with a wrong issuer".into(),
            &strict.api,
            hs(&with(
                strict_worker.clone(),
                json!({"iss": "https://evil.example"}),
            )),
        ),
        ("RS256 by another key".into(), &rsa.api, {
            let other_dir = c.dir.path().join("other-key");
            std::fs::create_dir_all(&other_dir)?;
            let (other_private, _) = rsa_keys(&other_dir)?;
            sign(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(&other_private)?,
                &claims(tid),
            )
        }),
        ("header kid/jku injection".into(), &plain.api, {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("../../dev/null".into());
            h.jku = Some("https://evil.example/jwks.json".into());
            // jsonwebtoken 12 refuses an empty secret: then a malformed token stands in.
            EncodingKey::from_secret(b"")
                .and_then(|k| jsonwebtoken::encode(&h, &claims(tid), &k))
                .unwrap_or_else(|_| "x.y.z".into())
        }),
        (
            "two segments".into(),
            &plain.api,
            valid
                .rsplit_once('.')
                .map(|(a, _)| a.to_owned())
                .unwrap_or_default(),
        ),
        ("four segments".into(), &plain.api, format!("{valid}.AAAA")),
        ("not base64".into(), &plain.api, "!!!.###.$$$".into()),
        (
            "payload not JSON".into(),
            &plain.api,
            format!(
                "{}.{}.AAAA",
                B64.encode(r#"{"alg":"HS256"}"#),
                B64.encode("not json")
            ),
        ),
        (
            "oversized (16 KB)".into(),
            &plain.api,
            "a".repeat(16 * 1024),
        ),
    ];
    // Ingest routes with browser tokens and browser routes with worker tokens: 403 each.
    for (api, browser, worker) in [
        (&plain.api, hs(&claims(tid)), hs(&worker_claims)),
        (&strict.api, hs(&strict_claims), hs(&strict_worker)),
    ] {
        for r in routes() {
            let token = if r.worker { &browser } else { &worker };
            tally
                .refuse(api, "wrong audience for the route", &r, token, &[])
                .await?;
        }
    }
    for (case, api, token) in cases.drain(..) {
        tally.refuse_everywhere(api, &case, &token, &[]).await?;
    }
    // X-Tenant-Code disagreeing with the token's tenant_code.
    let coded = hs(&with(claims(tid), json!({"tenant_code": "acme"})));
    for r in routes().into_iter().filter(|r| !r.worker) {
        tally
            .refuse(
                &plain.api,
                "X-Tenant-Code mismatch",
                &r,
                &coded,
                &[("X-Tenant-Code", "other")],
            )
            .await?;
    }
    // Authorization headers that are not a bearer token at all.
    for (case, value) in [
        ("Basic", "Basic dXNlcjpwYXNz"),
        ("empty bearer", "Bearer "),
        ("no scheme", valid.as_str()),
    ] {
        for r in routes() {
            let mut req = plain
                .api
                .client
                .get(plain.api.url(r.path))
                .header("Authorization", value);
            if r.method == "POST" {
                req = plain
                    .api
                    .client
                    .post(plain.api.url(r.path))
                    .header("Authorization", value);
            }
            let status = req.send().await?.status().as_u16();
            tally.sent += 1;
            if status == 401 || status == 403 {
                tally.refused += 1;
            } else {
                tally
                    .failures
                    .push(format!("{case} on {}: {status}", r.name));
            }
        }
    }
    figure!(
        "s07 token matrix: {} forged requests, {} refused with 401/403 ({:.1} %)",
        tally.sent,
        tally.refused,
        100.0 * tally.refused as f64 / tally.sent as f64
    );
    anyhow::ensure!(
        tally.failures.is_empty(),
        "accepted or mis-answered forged tokens:\n{}",
        tally.failures.join("\n")
    );
    for s in [&plain, &strict, &rsa] {
        anyhow::ensure!(
            !s.proc.log().contains("panicked"),
            "a server panicked\n{}",
            s.proc.log_tail(40)
        );
    }
    Ok(())
}
